"""Training step: identities the result must satisfy, monotone what-ifs, infeasible configurations."""
from __future__ import annotations

import json

import pytest

from dsv3sim.config.model import load_model_config
from dsv3sim.cost.flops import train_flops_per_token
from dsv3sim.results import Infeasible, TrainingResult, from_json, to_json
from dsv3sim.results.trace_events import chrome_trace
from dsv3sim.workload import simulate
from dsv3sim.workload.kernels import gpu_perf

PROFILE_NAMES = {"attn(F)", "mlp(F)", "dispatch(F)", "combine(F)", "attn(B)", "attn(W)", "mlp(B)", "mlp(W)",
                 "dispatch(B)", "combine(B)"}


@pytest.fixture(scope="module")
def base(request):
    from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

    s = Scenario(name="small", model="deepseek-v2-lite", topology="h800-deepseek", parallel=ParallelDims(pp=2, dp=16, ep=16),
                 workload=TrainingWorkload(global_batch_sequences=128, seq_len=256, node_limit=2), comm_model="bound")
    return s, simulate(s)


def test_breakdown_adds_up(base):
    _s, r = base
    assert isinstance(r, TrainingResult)
    bd = r.breakdown_s
    pipe = sum(bd[k] for k in ("forward_s", "backward_input_s", "weight_grad_s", "backward_full_s",
                               "overlapped_forward_backward_s", "bubble_s"))
    assert pipe == pytest.approx(r.pipeline["makespan"], rel=1e-9)
    assert r.step_time_s == pytest.approx(pipe + bd["dp_comm_exposed_s"] + bd["optimizer_s"], rel=1e-9)


def test_throughput_identities(base):
    _s, r = base
    tokens = 128 * 256
    assert r.tokens_per_step == tokens
    assert r.tokens_per_s == pytest.approx(tokens / r.step_time_s)
    assert r.gpu_hours_per_trillion_tokens == pytest.approx(32 * 1e12 / r.tokens_per_s / 3600)
    cfg = load_model_config("deepseek-v2-lite")
    mfu = train_flops_per_token(cfg, 256) * r.tokens_per_s / (32 * gpu_perf("H800").bf16_flops)
    assert r.mfu == pytest.approx(mfu)
    assert 0 < r.mfu < 1 and 0 <= r.ib_utilisation <= 1 and 0 <= r.nvlink_utilisation <= 1


def test_deterministic_and_json_round_trip(base):
    s, r = base
    d = to_json(r)
    again = to_json(from_json(json.loads(json.dumps(d))))
    assert again == json.loads(json.dumps(d))
    assert to_json(simulate(s))["step_time_s"] == d["step_time_s"]


def test_typed_groups_survive_json_and_the_report_reads_them(base):
    """The nested groups are typed on the result and after a JSON round trip; the report finds them by attribute."""
    from dsv3sim.report import build_page
    from dsv3sim.results import LinkUtilisation, NodesPerToken

    _s, r = base
    back = from_json(json.loads(json.dumps(to_json(r))))
    assert isinstance(back.link_utilisation, LinkUtilisation) and isinstance(back.nodes_per_token, NodesPerToken)
    assert back.link_utilisation == r.link_utilisation and back.nodes_per_token.hist == r.nodes_per_token.hist
    secs = {x.key: x for _, ss in build_page(to_json(back)).blocks for x in ss}
    assert secs["links"].present and secs["nodes"].present and secs["memory"].present


def test_chrome_trace_profile_names_and_streams(base):
    _s, r = base
    tr = chrome_trace(r)
    xs = [e for e in tr["traceEvents"] if e["ph"] == "X"]
    by_tid = {}
    for e in xs:
        by_tid.setdefault(e["cat"], set()).add(e["name"])
    assert by_tid["comm"] <= {"dispatch(F)", "combine(F)", "dispatch(B)", "combine(B)", "dp_comm(exposed)"}
    dp = [e for e in xs if e["name"] == "dp_comm(exposed)"]  # breakdown's exposed DP communication, as slices
    assert sum(e["dur"] for e in dp) / 1e6 == pytest.approx(r.breakdown_s["dp_comm_exposed_s"], rel=1e-6)
    assert (by_tid["compute"] - {"optimizer"}) <= PROFILE_NAMES
    assert {"dispatch(F)", "combine(B)"} <= by_tid["comm"]
    assert {e["pid"] for e in xs} == {0, 1}  # one pid per PP rank of the simulated pipeline
    assert len({e["tid"] for e in xs if e["cat"] == "comm"} & {e["tid"] for e in xs if e["cat"] == "compute"}) == 0


def test_what_ifs_move_the_right_way(base):
    s, r = base
    slow_ib = simulate(s.with_(name="ib/2", perturb={"nic_bandwidth_scale": 0.5}))
    fast_ib = simulate(s.with_(name="ib*2", perturb={"nic_bandwidth_scale": 2.0}))
    assert slow_ib.step_time_s >= r.step_time_s >= fast_ib.step_time_s
    strag = simulate(s.with_(name="straggler", perturb={"straggler_gpu": 0, "straggler_slowdown": 1.5}))
    assert r.step_time_s * 1.02 < strag.step_time_s <= r.step_time_s * 1.5 + 1e-12


def test_fp8_gemms_faster_at_deepseek_shapes():
    """At V3's 4K-token micro-batch the FP8 MLP (GEMMs + fused casts) beats BF16; at tiny shapes it need not."""
    from dsv3sim.workload.layer_ops import training_layer

    cfg = load_model_config("deepseek-v3")
    kw = {"gpu": "H800", "tokens": 4096, "seq_len": 4096, "expert_rows": 4096 * 8, "local_experts": 4,
          "sm_fraction": 1.0}
    f8 = training_layer(cfg, 10, gemm_dtype="fp8", **kw).times
    b16 = training_layer(cfg, 10, gemm_dtype="bf16", **kw).times
    assert sum(f8.values()) < sum(b16.values())
    assert f8["mlp(F)"] < b16["mlp(F)"]


def test_infeasible_configurations_are_results(base):
    s, _ = base
    r = simulate(s.with_(name="v3-pp2", model="deepseek-v3"))
    assert isinstance(r, Infeasible) and "does not fit in HBM" in r.reason
    r2 = simulate(s.with_(name="ep-bad", model="deepseek-v3", parallel={"dp": 24, "ep": 24},
                          workload={"global_batch_sequences": 48}))
    assert isinstance(r2, Infeasible) and "does not divide" in r2.reason
    assert to_json(r2)["infeasible"] == r2.reason


def test_only_infeasible_configurations_become_results(base):
    """A schedule whose conditions fail is a result with its reason; a bad field (a link the topology does not
    have) is bad input and propagates as ConfigError, never an Infeasible result."""
    from dsv3sim.config.errors import ConfigError, InfeasibleError

    s, _ = base
    r = simulate(s.with_(name="few-mb", workload={"schedule": "dualpipe", "global_batch_sequences": 32}))
    assert isinstance(r, Infeasible) and "dualpipe needs" in r.reason
    with pytest.raises(ConfigError, match="degraded_link") as e:
        simulate(s.with_(name="typo", perturb={"degraded_link": "no-such-link"}))
    assert not isinstance(e.value, InfeasibleError)


def test_activation_peak_matches_dualpipe_closed_form(base):
    """Two routes: the schedule's in-flight micro-batch-stages (list order) == DualPipe README's PP + 1."""
    from dsv3sim.parallel import activation_closed_form

    s, r = base
    peak = max(m["activation_microbatch_stages"] for m in r.memory_per_gpu)
    assert peak == activation_closed_form("dualpipe", s.parallel.pp)
    for m in r.memory_per_gpu:
        parts = ("weights_bytes", "gradients_bytes", "master_weights_bytes", "optimizer_moments_bytes",
                 "activations_bytes")
        assert m["total_bytes"] == pytest.approx(sum(m[k] for k in parts))
