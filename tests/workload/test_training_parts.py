"""The training step's parts one at a time: plan -> EP all-to-all times -> chunk times -> execute -> metrics.
Each part is checked against an identity it must satisfy, and the parts compose to ``simulate_training``."""

from __future__ import annotations

import pytest

from dsv3sim.cost.memory import training_state_bytes
from dsv3sim.parallel import execute
from dsv3sim.results import Infeasible, TrainingResult
from dsv3sim.workload import training as TR
from dsv3sim.workload import training_metrics as TM


@pytest.fixture(scope="module")
def parts(small_training):
    sp = TR.plan_step(small_training)
    ep = TR.ep_times(sp)
    chunks = TR.ChunkTimes(sp, ep)
    ex = execute(sp.sched, lambda rank, a: chunks(rank, a).time_s, p2p_latency=0.0)
    return sp, ep, chunks, ex


def test_plan_memory_rows_are_cost_memorys_training_states(parts):
    """Rank memory = BF16 weights + FP32 grads + ZeRO-1 sharded FP32 master and BF16 moments (cost.memory)."""
    sp, *_ = parts
    p, w = sp.scn.parallel, sp.scn.workload
    for row in sp.mem_rows:
        states = row["weights_bytes"] / 2.0  # parameters held on the rank
        assert row["gradients_bytes"] == pytest.approx(4.0 * states)
        assert row["total_bytes"] == pytest.approx(row["weights_bytes"] + row["gradients_bytes"]
                                                   + row["master_weights_bytes"] + row["optimizer_moments_bytes"]
                                                   + row["activations_bytes"])
        assert row["master_weights_bytes"] == row["optimizer_moments_bytes"]
        assert row["master_weights_bytes"] < training_state_bytes(states, 1, w.zero1).master_weights  # sharded
    assert p.dp > 1


def test_plan_is_infeasible_before_simulating_when_memory_does_not_fit(small_training):
    r = TR.plan_step(small_training.with_(name="big-batch", parallel={"pp": 1, "dp": 32, "ep": 16},
                                    workload={"micro_batch_sequences": 64, "seq_len": 4096, "schedule": "1f1b",
                                              "global_batch_sequences": 2048}))
    assert isinstance(r, Infeasible) and "does not fit in HBM" in r.reason


def test_ep_times_have_the_four_all_to_all_slices(parts):
    _sp, ep, *_ = parts
    assert set(ep.comm) == {"dispatch(F)", "combine(F)", "combine(B)", "dispatch(B)"}
    assert all(t > 0 for t in ep.comm.values())
    assert ep.comm_by_r[0] == ep.comm  # one routing: every MoE layer runs routing 0's times
    assert ep.rows > 0 and ep.local_experts(16) == 64 // 16


def test_chunk_times_reuse_runs_of_identical_stages(parts):
    sp, _ep, chunks, _ex = parts
    a = sp.sched.actions[0][0]
    assert chunks(0, a) is chunks(0, a)
    assert 0 < len(chunks.table()) <= len(chunks.runs)  # rank 0 (recorded) and the others share a row
    assert all(t > 0 for t in chunks.table().values())


def test_parts_compose_to_simulate_training(parts, small_training):
    sp, ep, chunks, ex = parts
    r = TR.training_result(sp, ep, chunks, ex, t_wall=0.0)
    whole = TR.simulate_training(small_training)
    assert isinstance(r, TrainingResult) and isinstance(whole, TrainingResult)
    assert r.step_time_s <= whole.step_time_s  # the whole step adds the PP p2p latency between stages
    assert r.memory_per_gpu == whole.memory_per_gpu and r.comm == whole.comm


def test_moe_passes_count_every_forward_and_backward(parts):
    sp, *_ = parts
    moe = TM._moe_layers_per_stage(sp)
    n_f, n_b = TM._moe_passes(sp.sched, moe)
    mbs = sp.sched.microbatches
    # DualPipe: every rank runs both directions' stages, each micro-batch forward and backward once
    assert sum(n_f.values()) == sum(n_b.values()) == mbs * sum(moe.values())
