"""The step model over a measured component table (workload/measured_step.py) against closed forms."""

from __future__ import annotations

import json

import pytest
import yaml

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload
from dsv3sim.workload import simulate
from dsv3sim.workload.deepep_overheads import expected_max_normal
from dsv3sim.workload.measured_step import _hands_off
from dsv3sim.workload.measured_table import FORMAT, VERSION

MS = 1e-3


def _rank(attn=(1, 2), mlp=(1, 2), cv=0.0, grad_sync=0.0, expert=((0.0, 1e-5), (0.0, 2e-5)), glue=(0.0, 0.0)):
    return {"components": {"attn": [attn[0] * MS, attn[1] * MS], "mlp_dense": [mlp[0] * MS, mlp[1] * MS],
                           "embed": [0, 0], "head": [0, 0], "gate": [0, 0], "shared": [0, 0],
                           "glue": [glue[0] * MS, glue[1] * MS]},
            "expert": {"fwd": list(expert[0]), "bwd": list(expert[1])}, "bwd_start_s": 0.0, "optim_s": 0.0,
            "grad_sync_s": grad_sync, "cv": cv}


def _write(tmp_path, *, pp=1, ep=1, dp=1, nmb=1, ranks=None, stages=None, routing=None, a2a=None, p2p_us=0.0):
    table = {"format": FORMAT, "version": VERSION, "pp": pp, "ep": ep, "dp": dp, "schedule": "1f1b",
             "microbatches": nmb, "tokens_per_microbatch": 8, "hidden": 16, "elt_bytes": 4, "fp8_compute": False,
             "row_bytes": {"fp8": 20, "bf16": 32, "native": 64}, "stages": stages or {"0": [0]},
             "routing": routing or {}, "ranks": {str(r): v for r, v in (ranks or {0: _rank()}).items()}}
    (tmp_path / "t.json").write_text(json.dumps(table))
    topo = {"name": "t", "gpu": "cpu", "n_nodes": 1, "gpus_per_node": max(pp * ep * dp, 2),
            "scale_up": {"kind": "shm", "bandwidth_GBps": 1e6, "latency_us": p2p_us / 2},
            "collectives": a2a or {"all_to_all": {"latency_us": 0.0, "bandwidth_GBps": 1e6}}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    return Scenario(name="t", model="tiny", topology=str(tmp_path / "t.yaml"),
                    parallel=ParallelDims(pp=pp, dp=dp * ep, ep=ep),
                    workload=TrainingWorkload(global_batch_sequences=nmb * dp * ep, seq_len=8, micro_batch_sequences=1,
                                              schedule="1f1b", gemm_dtype="bf16", dispatch_dtype="bf16",
                                              node_limit=None, zero1=False, component_table=str(tmp_path / "t.json")))


def test_1f1b_closed_form_with_p2p(tmp_path):
    """Two stages of one dense layer, forward 2 ms and backward 4 ms per stage: 1F1B over m micro-batches
    takes (m + pp - 1) * (F + B) without hops (Narayanan et al. SC'21 §2.2); p2p hops add at least one
    forward and one backward hop and at most one of each per micro-batch."""
    m, hop = 4, 0.5 * MS
    kw = {"pp": 2, "nmb": m, "stages": {"0": [0], "1": [1]}, "ranks": {0: _rank(), 1: _rank()}}
    r0 = simulate(_write(tmp_path, **kw))
    assert r0.step_time_s == pytest.approx((m + 1) * 6 * MS, rel=1e-9)
    # idle per rank until its own end: rank 0 waits (pp - 1)(F + B) = 6 ms for the last stage's backwards,
    # rank 1 one forward (2 ms) for its first input; mean 4 ms
    assert r0.breakdown_s["p2p_wait"] == pytest.approx(4 * MS, rel=1e-9)
    r = simulate(_write(tmp_path, p2p_us=hop * 1e6, **kw))
    assert r0.step_time_s + 2 * hop - 1e-12 <= r.step_time_s <= r0.step_time_s + 2 * m * hop + 1e-12


def test_a_hand_off_to_another_rank_pays_the_isend_call(tmp_path):
    """The table's ``p2p_isend_s``: 1F1B on two stages, four micro-batches: stage 0 sends four activations, stage 1
    four gradients, so each rank's framework time grows by 4 calls; DualPipeV's turn (stages P-1 and P on one
    rank) sends nothing."""
    kw = {"pp": 2, "nmb": 4, "stages": {"0": [0], "1": [1]}, "ranks": {0: _rank(), 1: _rank()}}
    scn = _write(tmp_path, **kw)
    base = simulate(scn)
    t = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps(dict(t, p2p_isend_s=0.25 * MS)))
    paid = simulate(scn)
    assert paid.breakdown_s["framework"] == pytest.approx(base.breakdown_s["framework"] + 4 * 0.25 * MS)
    v = {"stages": {str(i): [i] for i in range(4)}, "schedule": "dualpipev", "p2p_isend_s": 1e-4}
    assert [_hands_off(v, s, "F") for s in range(4)] == [True, False, True, False]
    assert [_hands_off(v, s, "B") for s in range(4)] == [False, True, False, True]


def test_ep_lockstep_waits_for_the_slowest_and_expected_lateness(tmp_path):
    """EP=2, one MoE layer: every all-to-all waits for the slower rank; with cv > 0 it also waits
    cv x sqrt(sum of squared component times since the last meeting) x E[max of 2 N(0,1)]."""
    routing = {"0": [{"send_rows": [[0, 0], [0, 0]], "expert_rows": [100, 100]}]}
    fast, slow = _rank(attn=(1, 1)), _rank(attn=(3, 1))
    scn = _write(tmp_path, ep=2, ranks={0: fast, 1: slow}, routing=routing)
    r0 = simulate(scn)
    # forward: attn (max 3 ms) | layout | dispatch | experts 1 ms | combine ; backward: experts 2 ms, attn 1 ms
    assert r0.step_time_s == pytest.approx(3 * MS + 1 * MS + 2 * MS + 1 * MS, rel=1e-9)
    assert r0.breakdown_s["layout(F)"] == pytest.approx(1 * MS, rel=1e-9)  # rank 0 waited 2 ms: mean 1 ms
    cv = 0.2
    r1 = simulate(_write(tmp_path, ep=2, ranks={0: dict(fast, cv=cv), 1: dict(slow, cv=cv)}, routing=routing))
    e = expected_max_normal(2)
    # before layout: attention 1 or 3 ms (mean square 5), combine(F): experts 1 ms, dispatch(B): experts 2 ms,
    # the gradient all-reduce the two EP ranks meet in after the backward's attention: 1 ms
    late = cv * e * (5 ** 0.5 + 1 + 2 + 1) * MS
    assert r1.step_time_s == pytest.approx(r0.step_time_s + late, rel=1e-9)


def test_all_to_all_fit_follows_the_compute_gap(tmp_path):
    """The all-to-all after a compute gap g: linear between the calibrated gaps; the dispatch right after
    the layout exchange pays the no-gap fit."""
    routing = {"0": [{"send_rows": [[0, 0], [0, 0]], "expert_rows": [0, 0]}]}
    a2a = {"all_to_all@0": {"latency_us": 100.0, "bandwidth_GBps": 1e6},
           "all_to_all@2000": {"latency_us": 2100.0, "bandwidth_GBps": 1e6},
           "all_to_all": {"latency_us": 2100.0, "bandwidth_GBps": 1e6}}
    r = _rank(attn=(1, 0))
    res = simulate(_write(tmp_path, ep=2, ranks={0: r, 1: r}, routing=routing, a2a=a2a))
    # layout: after 1 ms of attention -> 1100 us, then the ids and the gate weights right after -> 100 us each;
    # dispatch -> 100 us; combine(F) after 0 ms of experts -> 100 us; backward: combine(B), dispatch(B) and the
    # gate weights' gradient (layout(B)) after 0 compute -> 100 us each
    assert res.breakdown_s["layout(F)"] == pytest.approx(1.3 * MS, rel=1e-9)
    assert res.breakdown_s["dispatch(F)"] == pytest.approx(0.1 * MS, rel=1e-9)
    assert res.breakdown_s["layout(B)"] == pytest.approx(0.1 * MS, rel=1e-9)
    assert res.step_time_s == pytest.approx(1 * MS + 1.3 * MS + 5 * 0.1 * MS, rel=1e-9)


def test_dp_allreduce_waits_for_the_late_replica(tmp_path):
    """Two DP replicas never meet before the gradient all-reduce: each is late by the spread of its whole
    step's compute, cv x sqrt(sum of squared component times) (attention 1 + 2 ms, FFN 1 + 2 ms)."""
    cv, gs = 0.1, 0.5 * MS
    scn = _write(tmp_path, dp=2, ranks={0: _rank(cv=cv, grad_sync=gs), 1: _rank(cv=cv, grad_sync=gs)})
    r = simulate(scn)
    pipe = 6 * MS
    sigma = cv * (1 + 4 + 1 + 4) ** 0.5 * MS
    assert r.step_time_s == pytest.approx(pipe + sigma * expected_max_normal(2) + gs, rel=1e-9)
    assert r.breakdown_s["allreduce_wait"] == pytest.approx(sigma * expected_max_normal(2), rel=1e-9)
    assert r.breakdown_s["allreduce"] == pytest.approx(gs)


def test_framework_glue_per_layer_and_pass(tmp_path):
    scn = _write(tmp_path, ranks={0: _rank(glue=(0.25, 0.5))}, stages={"0": [0, 1]})
    r = simulate(scn)
    assert r.breakdown_s["framework"] == pytest.approx(2 * 0.75 * MS)
    assert r.step_time_s == pytest.approx(2 * 6 * MS + 1.5 * MS)


def test_mismatched_layout_is_infeasible_and_bad_table_is_refused(tmp_path):
    scn = _write(tmp_path)
    other = scn.with_(parallel={"pp": 1, "dp": 2, "ep": 1}, workload={"global_batch_sequences": 2})
    assert "not the calibrated one" in simulate(other).reason
    good = json.loads((tmp_path / "t.json").read_text())
    for k, bad in (("p2p_notify_s", "fast"), ("p2p_hop_s", -1.0), ("cores", float("nan"))):
        (tmp_path / "t.json").write_text(json.dumps(dict(good, **{k: bad})))
        with pytest.raises(ValueError, match=k):
            simulate(scn)
    (tmp_path / "t.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="component_table"):
        simulate(scn)


def test_all_to_all_spans_hold_the_payload_encoding(tmp_path):
    """Each all-to-all span of the run encodes the rows sent and decodes those received (FP8 quantisation for
    an FP8 dispatch): the table's codec fit t = a + b * rows is charged to the span, at the mean of the rows a
    rank sends and receives."""
    routing = {"0": [{"send_rows": [[3, 1], [1, 3]], "expert_rows": [4, 4]}]}
    r = dict(_rank(attn=(0, 0)), codec={"native": [1e-3, 1e-4]})
    res = simulate(_write(tmp_path, ep=2, ranks={0: r, 1: r}, routing=routing))
    # 4 rows sent, 4 received per rank: 1 ms + 0.4 ms in each of dispatch(F), combine(F), combine(B), dispatch(B)
    for k in ("dispatch(F)", "combine(F)", "combine(B)", "dispatch(B)"):
        assert res.breakdown_s[k] == pytest.approx(1.4 * MS, rel=1e-6), k


def test_layout_host_work_between_the_exchanges(tmp_path):
    """The table's ``layout_host_s`` (host work on the counts before the ids and the gate weights go out) is
    part of ``layout(F)`` and is the compute gap the ids' all-to-all follows."""
    routing = {"0": [{"send_rows": [[0, 0], [0, 0]], "expert_rows": [0, 0]}]}
    a2a = {"all_to_all@0": {"latency_us": 100.0, "bandwidth_GBps": 1e6},
           "all_to_all@2000": {"latency_us": 2100.0, "bandwidth_GBps": 1e6},
           "all_to_all": {"latency_us": 2100.0, "bandwidth_GBps": 1e6}}
    r = dict(_rank(attn=(1, 0)), layout_host_s=1e-3)
    res = simulate(_write(tmp_path, ep=2, ranks={0: r, 1: r}, routing=routing, a2a=a2a))
    # counts after 1 ms of attention: 1100 us; 1 ms of host work; the ids after it: 1100 us; the weights: 100 us
    assert res.breakdown_s["layout(F)"] == pytest.approx(3.3 * MS, rel=1e-9)
    assert res.step_time_s == pytest.approx(1 * MS + 3.3 * MS + 5 * 0.1 * MS, rel=1e-9)


def test_ep_exchanges_measured_in_the_stage(tmp_path):
    """A table with the EP glue stage's exchange walls (``comm_in_stage_s``, per MoE layer): each exchange costs
    the ranks' mean of them past the latest rank; the codec and the layout's host work are inside them, and the
    gate weights' backward exchange (``layout(B)``) keeps the all-to-all fit unless the table has its wall."""
    routing = {"0": [{"send_rows": [[3, 1], [1, 3]], "expert_rows": [0, 0]}]}
    walls = {"layout(F)": 1.0, "dispatch(F)": 0.5, "combine(F)": 0.25, "combine(B)": 0.3, "dispatch(B)": 0.2}
    r0 = dict(_rank(attn=(1, 0)), codec={"native": [1e-3, 0.0]}, layout_host_s=5e-3,
              comm_in_stage_s={k: v * MS for k, v in walls.items()})
    r1 = dict(_rank(attn=(3, 0)), codec={"native": [1e-3, 0.0]}, layout_host_s=5e-3,
              comm_in_stage_s={k: 3 * v * MS for k, v in walls.items()})
    a2a = {"all_to_all": {"latency_us": 100.0, "bandwidth_GBps": 1e6}}
    res = simulate(_write(tmp_path, ep=2, ranks={0: r0, 1: r1}, routing=routing, a2a=a2a))
    # attention: 1 or 3 ms, rank 0 waits 2 ms at the layout; then 2 x each wall; layout(B) 100 us
    assert res.breakdown_s["layout(F)"] == pytest.approx((2 / 2 + 2.0) * MS, rel=1e-9)
    assert res.breakdown_s["dispatch(B)"] == pytest.approx(0.4 * MS, rel=1e-9)
    assert res.step_time_s == pytest.approx((3 + 2 * sum(walls.values()) + 0.1) * MS, rel=1e-9)
    for r, k in ((r0, 1), (r1, 3)):  # the gate weights' backward exchange measured in the stage too: its wall
        r["comm_in_stage_s"]["layout(B)"] = k * 0.7 * MS
    both = simulate(_write(tmp_path, ep=2, ranks={0: r0, 1: r1}, routing=routing, a2a=a2a))
    assert both.breakdown_s["layout(B)"] == pytest.approx(2 * 0.7 * MS, rel=1e-9)
    assert both.step_time_s == pytest.approx(res.step_time_s - 0.1 * MS + 1.4 * MS, rel=1e-9)
    r0.pop("comm_in_stage_s")  # one rank without them: the fits and the codec for every exchange
    assert simulate(_write(tmp_path, ep=2, ranks={0: r0, 1: r1}, routing=routing, a2a=a2a)).step_time_s > \
        res.step_time_s


def test_compute_between_in_stage_exchanges_runs_at_the_stages_pace(tmp_path):
    """EP ranks with in-stage exchange walls and a measured pace (``in_stage_wall_per_cpu``: the stage pass's
    compute span wall over CPU, per direction): each compute span and the framework time between them cost their
    CPU seconds x the pace; CPU seconds stay table time x share. Attention 1 ms forward and glue 0.2 ms forward,
    0.4 ms backward at share 0.5, pace F 1.5, B 1.25."""
    routing = {"0": [{"send_rows": [[3, 1], [1, 3]], "expert_rows": [0, 0]}]}
    walls = dict.fromkeys(("layout(F)", "dispatch(F)", "combine(F)", "combine(B)", "dispatch(B)"), 0.1 * MS)
    ranks = {i: dict(_rank(attn=(1, 0), mlp=(0, 0), glue=(0.2, 0.4)), comm_in_stage_s=walls, share=0.5)
             for i in (0, 1)}
    base = simulate(_write(tmp_path, ep=2, ranks=ranks, routing=routing))
    for r in ranks.values():
        r["in_stage_wall_per_cpu"] = {"F": 1.5, "B": 1.25}
    paced = simulate(_write(tmp_path, ep=2, ranks=ranks, routing=routing))
    assert paced.breakdown_s["attn(F)"] == pytest.approx(1.5 * 0.5 * MS)  # per rank: CPU 0.5 ms x the pace
    assert paced.breakdown_cpu_s["attn(F)"] == pytest.approx(base.breakdown_cpu_s["attn(F)"])
    # the glue: 0.1 ms CPU forward x 1.5, 0.2 ms CPU backward x 1.25 per rank
    assert paced.breakdown_s["framework"] == pytest.approx((0.1 * 1.5 + 0.2 * 1.25) * MS)
    assert base.breakdown_s["framework"] == pytest.approx(0.6 * MS)  # unpaced: table time, CPU / share


def test_cpu_seconds_of_the_compute_are_its_time_times_the_share(tmp_path):
    """A CPU table's component times are CPU seconds over the rank's share: without preemption slices the
    step model's ``breakdown_cpu_s`` is each compute component x the share (attention 1 + 2 ms, share 0.5)."""
    rank = dict(_rank(), share=0.5)
    r = simulate(_write(tmp_path, ranks={0: rank}))
    assert r.breakdown_cpu_s["attn(F)"] == pytest.approx(0.5 * r.breakdown_s["attn(F)"])
    assert r.breakdown_cpu_s["attn(B)"] == pytest.approx(0.5 * 2 * MS)
    assert "optim" not in r.breakdown_cpu_s  # measured whole, not a lane's compute


def test_backward_ends_measured_in_a_stage_replace_the_standalone_head_and_embedding(tmp_path):
    """One stage (first and last): its backward starts with B_last instead of the autograd start-up + the head's
    standalone backward, and ends with B_first instead of the embedding's (``boundary_s`` of the table)."""
    plain = simulate(_write(tmp_path))
    rank = dict(_rank(), boundary_s={"B_last": 0.7 * MS, "B_first": 0.4 * MS})
    r = simulate(_write(tmp_path, ranks={0: rank}))
    assert r.breakdown_s["framework"] == pytest.approx(plain.breakdown_s["framework"] + 1.1 * MS)
    assert r.step_time_s == pytest.approx(plain.step_time_s + 1.1 * MS)


def test_processor_sharing_on_an_oversubscribed_host(tmp_path):
    """Two pipeline ranks on one core, each profiled at share 0.5 (both runnable): with one micro-batch 1F1B's
    chunks never overlap (F on rank 0, F and B on rank 1, B on rank 0), so each runs alone at share
    min(1, 0.5 x 2 / 1) = 1 and the step is half the unshared 2 x (F + B) = 12 ms (cpu_sharing.py; the fixed
    point stops within its tolerance). With a core per rank nothing changes; with 4 micro-batches the stages
    overlap in the steady state and the step shrinks by less than half."""
    def step(cores, m=1):
        scn = _write(tmp_path, pp=2, nmb=m, stages={"0": [0], "1": [1]},
                     ranks={0: dict(_rank(), share=0.5), 1: dict(_rank(), share=0.5)})
        t = json.loads((tmp_path / "t.json").read_text())
        t.update(cores=cores, device="cpu")
        (tmp_path / "t.json").write_text(json.dumps(t))
        return simulate(scn).step_time_s

    assert step(2) == pytest.approx(12 * MS, rel=1e-9)
    assert step(1) == pytest.approx(6 * MS, rel=3e-3)
    assert 0.5 * step(2, m=4) < step(1, m=4) < step(2, m=4)


def test_optimizer_steps_share_the_host_only_with_the_ranks_stepping_at_once():
    """Four ranks on two cores, profiled at share 0.5 (all runnable: capacity 2 cores): two ranks whose optimizer
    steps overlap only each other run at share min(1, 0.5 x 4 / 2) = 1, so their table time (at 0.5) halves;
    four stepping at once keep 0.5 (cpu_sharing.optimizer_speeds)."""
    from dsv3sim.workload.cpu_sharing import optimizer_speeds

    ranks = {r: {"share": 0.5, "optim_s": 2 * MS} for r in range(4)}
    apart = optimizer_speeds(ranks, {0: 0.0, 1: 0.0, 2: 10 * MS, 3: 10 * MS})
    assert apart == pytest.approx(dict.fromkeys(range(4), 0.5))
    together = optimizer_speeds(ranks, dict.fromkeys(range(4), 0.0))
    assert together == pytest.approx(dict.fromkeys(range(4), 1.0))


def test_chunk_ends_are_paid_once_per_chunk(tmp_path):
    """The glue stage's two ends per pass (``chunk_ends_s``) are framework time once per pipeline chunk, however
    many layers it holds; a first-and-last stage whose backward ends were measured (``boundary_s``) does not pay
    the backward's again. One micro-batch over two one-layer stages: F ends 2 x (0.1 + 0.2) ms, B ends
    2 x (0.3 + 0.4) ms -> the step grows by 2.0 ms (the pipeline is serial) and so does the mean framework
    time per rank by 1.0 ms."""
    ends = {"F_head": 0.1 * MS, "F_tail": 0.2 * MS, "B_head": 0.3 * MS, "B_tail": 0.4 * MS}
    kw = {"pp": 2, "nmb": 1, "stages": {"0": [0], "1": [1]}}
    r0 = simulate(_write(tmp_path, ranks={0: _rank(), 1: _rank()}, **kw))
    r = simulate(_write(tmp_path, ranks={0: dict(_rank(), chunk_ends_s=ends), 1: dict(_rank(), chunk_ends_s=ends)},
                        **kw))
    assert r.step_time_s - r0.step_time_s == pytest.approx(2.0 * MS, rel=1e-9)
    assert r.breakdown_s["framework"] - r0.breakdown_s.get("framework", 0.0) == pytest.approx(1.0 * MS, rel=1e-9)
    bnd = {"B_last": 0.0, "B_first": 0.0}
    one = {0: dict(_rank(), chunk_ends_s=ends, boundary_s=bnd)}
    base = simulate(_write(tmp_path, ranks={0: dict(_rank(), boundary_s=bnd)}))
    assert simulate(_write(tmp_path, ranks=one)).step_time_s - base.step_time_s == pytest.approx(0.3 * MS, rel=1e-9)

