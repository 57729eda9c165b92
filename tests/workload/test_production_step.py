"""DeepEP notify/layout, GEMM-communication interference, production memory-bound kernels, the optimizer step."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dsv3sim.config.model import load_model_config
from dsv3sim.workload import deepep_overheads as DO
from dsv3sim.workload import interference as IF
from dsv3sim.workload import optimizer_step as OS
from dsv3sim.workload.kernels import NORM_EFF, op_time
from dsv3sim.workload.layer_extras import training_extras
from dsv3sim.workload.layer_ops import training_layer


def test_calibrations_reproduce_their_trace_numbers():
    # the notify jitter, solved from the trace, gives back the trace's mean notify at EP64 and its t_ref
    t_ref = DO.TRACE_COMPUTE_STREAM_S / DO.TRACE_COMM_OPS
    wait = DO.notify_time(64, t_ref, rdma_latency_s=0.0, nvlink_latency_s=0.0, cross_node=False)
    assert wait == pytest.approx(DO.TRACE_NOTIFY_MEAN_S)
    assert DO.layout_time(DO.TRACE_TOKENS, 8) == pytest.approx(DO.TRACE_LAYOUT_S)
    # co-run slowdown: the trace's transfers over DeepEP's standalone bandwidth, between 1.2x and 2x
    assert 1.2 < DO.CORUN_SLOWDOWN < 2.0


def test_notify_grows_with_ep_and_vanishes_without_peers():
    args = {"rdma_latency_s": 3e-6, "nvlink_latency_s": 3e-6, "cross_node": True}
    assert DO.notify_time(1, 5e-3, **args) == 0.0
    t8, t64, t256 = (DO.notify_time(n, 5e-3, **args) for n in (8, 64, 256))
    assert t8 < t64 < t256
    assert DO.expected_max_normal(2) == pytest.approx(0.5642, abs=0.03)  # E[max of 2 N(0,1)] = 1/sqrt(pi)
    assert DO.barrier_latency(3e-6, 2e-6, cross_node=False) == pytest.approx(4e-6)


def test_comm_slices_alone_vs_paired():
    transfer = {"dispatch(F)": 2e-3, "combine(F)": 4e-3, "combine(B)": 2e-3, "dispatch(B)": 4e-3}
    compute = {"attn(F)": 3e-3, "mlp(F)": 4e-3, "attn(B)": 8e-3, "mlp(B)": 5e-3, "attn(W)": 2e-3, "mlp(W)": 4e-3}
    kw = {"ep": 64, "tokens": 4096, "topk": 8, "rdma_latency_s": 3e-6, "nvlink_latency_s": 3e-6, "cross_node": True}
    alone = DO.comm_slices(transfer, compute, paired=False, **kw)
    pair = DO.comm_slices(transfer, compute, paired=True, **kw)
    for n, t in transfer.items():
        assert alone[n] > t  # notify always
        assert pair[n] > t * DO.CORUN_SLOWDOWN  # slowed beside the GEMMs, plus notify
    # same transfer and barrier wait in a pair: the forward dispatch alone also pays the layout kernel
    assert pair["dispatch(F)"] - pair["combine(B)"] == pytest.approx(DO.layout_time(4096, 8))
    assert DO.comm_slices({"dispatch(F)": 0.0}, compute, paired=True, **kw) == {"dispatch(F)": 0.0}


def test_hbm_interference():
    b = IF.comm_hbm_bytes(rdma_bytes=100e6, nvlink_bytes=200e6, source_bytes=30e6)
    assert b == pytest.approx(4 * 100e6 + 3 * 200e6 + 30e6)
    u = IF.hbm_share(b, 5e-3, 3.35e12)
    assert u == pytest.approx(b / 5e-3 / 3.35e12)
    assert IF.memory_bound_stretch(u) == pytest.approx(1 / (1 - u))
    assert IF.hbm_share(1e12, 1e-3, 1e12) == IF.MAX_COMM_HBM_SHARE
    with pytest.raises(ValueError, match="HBM share"):
        IF.memory_bound_stretch(1.0)
    assert IF.is_memory_bound(0.0, 1e6, 989e12, 3.35e12)
    assert not IF.is_memory_bound(2 * 4096**3, 3 * 4096**2, 1979e12, 3.35e12)  # a big FP8 GEMM


def test_stretch_slows_only_memory_bound_kernels_on_the_partition():
    cfg = load_model_config("deepseek-v3")
    kw = {"gpu": "H800", "tokens": 4096, "seq_len": 4096, "expert_rows": 32768, "local_experts": 4, "gemm_dtype": "fp8",
              "sm_fraction": 112 / 132}
    a = training_layer(cfg, 10, extras=True, **kw)
    b = training_layer(cfg, 10, extras=True, mem_stretch=1.2, **kw)
    assert a.times == b.times  # lone passes: all SMs, nothing beside them
    for k in a.times_partial:
        assert a.times_partial[k] < b.times_partial[k] < 1.2 * a.times_partial[k]


def test_layer_extras_bytes_from_shapes():
    cfg = load_model_config("deepseek-v3")
    ex = training_extras(cfg, 10, tokens=4096, expert_rows=32768, local_experts=4)
    by = {(e.slice, e.op): e.bytes for e in ex}
    H, I = cfg.hidden_size, cfg.moe_intermediate_size
    assert by[("mlp(W)", "grad_accumulate")] == 8.0 * 3 * H * I * (4 + cfg.n_shared_experts)
    assert by[("mlp(F)", "moe_unpermute")] == by[("mlp(B)", "moe_unpermute_bwd")] == 4.0 * 32768 * H
    dense = {(e.slice, e.op) for e in training_extras(cfg, 0, tokens=4096, expert_rows=0, local_experts=0)}
    assert ("mlp(F)", "moe_permute") not in dense and ("mlp(W)", "grad_accumulate") in dense
    nh, dv = cfg.num_attention_heads, cfg.v_dim
    assert by[("attn(F)", "e5m6_cache_cast")] == by[("attn(B)", "e5m6_cast_back")] == 3.5 * 4096 * nh * dv
    # the extras add work; the production step also moves the MoE input norm to the router's attn(F) (its backward to
    # attn(B)) and the attention weight gradients' operand casts from attn(W) to attn(B), as profile-data places them
    kw = {"gpu": "H800", "tokens": 4096, "seq_len": 4096, "expert_rows": 32768, "local_experts": 4, "gemm_dtype": "fp8",
              "sm_fraction": 1.0}
    with_, without = training_layer(cfg, 10, extras=True, **kw), training_layer(cfg, 10, **kw)
    assert sum(with_.times.values()) > sum(without.times.values())
    assert all(with_.times[k] > without.times[k] for k in ("attn(F)", "attn(B)", "mlp(B)", "mlp(W)"))
    assert with_.times["attn(W)"] < without.times["attn(W)"]  # GEMMs only, as in the profile
    # the GEMM flops stay where they were
    assert with_.flops == without.flops


def test_production_norms_run_at_deepseeks_norm_kernel_throughput():
    data = json.loads((Path(__file__).parents[2] / "dsv3sim/workload/data/profile_data_train.json").read_text())
    assert pytest.approx(data["layernorm_GBps"] / 3350.0, rel=1e-3) == NORM_EFF
    b = 2.0 * 4096 * 7168 * 2
    t = op_time("H800", "rmsnorm_deployed", "bf16", flops=0.0, bytes_=b, m=4096, n=7168).time_s
    assert t == pytest.approx(b / (3.35e12 * NORM_EFF), rel=0.02)
    assert t > op_time("H800", "rmsnorm", "bf16", flops=0.0, bytes_=b, m=4096, n=7168).time_s


def test_optimizer_step_hides_early_reduce_scatter_and_late_all_gather():
    opt = OS.optimizer_compute_time(shard_params=1e9, local_params=4e9, hbm_bw=3e12)
    assert opt == pytest.approx((22 * 1e9 + 8 * 4e9) / 3e12)
    # chunk 1 ready long before the end: its reduce-scatter hides; chunk 0 ready at the end: exposed
    e = OS.rank_end(makespan=10.0, ready={0: 10.0, 1: 8.0}, rs={0: 0.2, 1: 0.3}, first_use={0: 0.0, 1: 1.0},
                    ag={0: 0.1, 1: 0.5}, optimizer_s=0.01)
    assert e.rs_end_s == pytest.approx(10.2)
    # all-gathers in order of first use: chunk 0 (0.1 s, needed at 0) exposed; chunk 1 ends at 0.6 < 1.0: hidden
    assert e.ag_exposed_s == pytest.approx(0.1)
    assert e.end_s == pytest.approx(10.2 + 0.01 + 0.1)
    # back-to-back reduce-scatters queue on the NIC
    e2 = OS.rank_end(makespan=10.0, ready={0: 9.9, 1: 9.9}, rs={0: 0.2, 1: 0.3}, first_use={}, ag={},
                     optimizer_s=0.0)
    assert e2.rs_end_s == pytest.approx(10.4)
    assert math.isclose(e2.end_s, 10.4)


def test_plain_zero1_order_by_default_and_overlap_what_if():
    """Default: every reduce-scatter after the pipeline and every all-gather before the next step (plain ZeRO-1
    order); optimizer_overlap=True hides what the schedule allows. opt = step - pipeline makespan either way."""
    import importlib.util
    from pathlib import Path

    from dsv3sim.results import to_json
    from dsv3sim.workload import simulate

    path = Path(__file__).resolve().parents[2] / "scenarios" / "deepseek_v3_pretrain.py"
    spec = importlib.util.spec_from_file_location("pretrain_opt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = mod.pretrain().with_(comm_model="bound", record=False)
    plain = to_json(simulate(base))
    over = to_json(simulate(base.with_(workload={"optimizer_overlap": True})))
    for d in (plain, over):
        bd = d["breakdown_s"]
        assert d["step_breakdown_s"]["opt"] == pytest.approx(bd["dp_comm_exposed_s"] + bd["optimizer_s"], rel=1e-9)
    assert over["step_time_s"] < plain["step_time_s"]
    assert over["breakdown_s"]["dp_comm_exposed_s"] < plain["breakdown_s"]["dp_comm_exposed_s"]
    assert plain["step_breakdown_s"]["1F1B"] == over["step_breakdown_s"]["1F1B"]  # the pipeline is the same


def test_corun_slowdown_scales_with_the_sms_deepep_holds():
    # Little's law: beside GEMMs the transfer's throughput is proportional to its SMs; calibrated at the trace's 20
    assert DO.corun_slowdown(DO.TRACE_COMM_SMS) == DO.CORUN_SLOWDOWN
    assert DO.corun_slowdown(24) == pytest.approx(DO.CORUN_SLOWDOWN * 20 / 24)
    assert DO.corun_slowdown(0) == DO.CORUN_SLOWDOWN  # no partition given: the profile's
    assert DO.corun_slowdown(200) == 1.0  # never faster than alone
    transfer = {"dispatch(F)": 2e-3, "combine(F)": 4e-3}
    assert DO.corun_extra(transfer, 24)["combine(F)"] == pytest.approx(4e-3 * (DO.corun_slowdown(24) - 1))
    compute = {"attn(F)": 3e-3, "mlp(F)": 4e-3}
    kw = {"ep": 32, "tokens": 8192, "topk": 8, "rdma_latency_s": 3e-6, "nvlink_latency_s": 3e-6, "cross_node": True}
    p20 = DO.comm_slices(transfer, compute, paired=True, comm_sms=20, **kw)
    p24 = DO.comm_slices(transfer, compute, paired=True, comm_sms=24, **kw)
    for n, t in transfer.items():
        assert p20[n] - p24[n] == pytest.approx(t * (DO.corun_slowdown(20) - DO.corun_slowdown(24)))
