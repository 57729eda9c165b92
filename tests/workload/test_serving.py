"""Serving: identities, KV capacity bound, MTP, MLA vs GQA capacity."""
from __future__ import annotations

import json

import pytest

from dsv3sim.config.model import load_model_config
from dsv3sim.config.scenario import DecodeWorkload, ParallelDims, PrefillWorkload, Scenario
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token
from dsv3sim.results import Infeasible, ServingResult, from_json, to_json
from dsv3sim.workload import simulate
from dsv3sim.workload.serving import kv_capacity


def _decode(**kw) -> Scenario:
    w = {"context_len": 4096, "batch_per_gpu": 32, "redundant_experts": 0, "mtp_acceptance": 0.8}
    w.update(kw)
    return Scenario(name="dec", model="deepseek-v3", topology="h800-deepseek", parallel=ParallelDims(dp=64, ep=64),
                    workload=DecodeWorkload(**w))


def test_decode_identities_and_mtp():
    r = simulate(_decode())
    assert isinstance(r, ServingResult)
    m = r.metrics
    assert m["decode_tokens_per_s_per_node"] == pytest.approx(8 * m["decode_tokens_per_s_per_gpu"])
    assert m["decode_tokens_per_s_per_gpu"] == pytest.approx(32 * 1.8 / m["step_time_s_decode"])
    assert m["tpot_s"] == pytest.approx(m["step_time_s_decode"] / 1.8)
    no_mtp = simulate(_decode(mtp=False))
    # MTP verifies 2 tokens per request per step: a longer step but more tokens per step at 80 % acceptance
    assert no_mtp.metrics["step_time_s_decode"] < m["step_time_s_decode"]
    assert no_mtp.metrics["decode_tokens_per_s_per_gpu"] < m["decode_tokens_per_s_per_gpu"]
    d = json.loads(json.dumps(to_json(r)))
    assert d["decode_tokens_per_s_per_node"] == m["decode_tokens_per_s_per_node"]  # flattened for the report
    assert json.loads(json.dumps(to_json(from_json(d)))) == d  # JSON round trip


def test_decode_batch_bounded_by_kv():
    r = simulate(_decode(batch_per_gpu=None, context_len=32768))
    assert isinstance(r, ServingResult)
    kv = r.kv
    per_tok = kv_cache_bytes_per_token(load_model_config("deepseek-v3"))
    assert r.metrics["batch_per_gpu"] == kv["max_batch_at_context"] == int(kv["kv_budget_bytes_per_gpu"] //
                                                                            (32768 * per_tok))
    over = simulate(_decode(batch_per_gpu=kv["max_batch_at_context"] + 1, context_len=32768))
    assert isinstance(over, Infeasible) and "exceeds KV capacity" in over.reason


def test_prefill_identities():
    s = Scenario(name="pf", model="deepseek-v3", topology="h800-deepseek", parallel=ParallelDims(dp=32, ep=32),
                 workload=PrefillWorkload(tokens_per_gpu=4096, prompt_len=4096, redundant_experts=32),
                 comm_model="bound")
    r = simulate(s)
    m = r.metrics
    assert m["prefill_tokens_per_s_per_gpu"] == pytest.approx(4096 / m["ttft_s"])
    assert m["prefill_tokens_per_s_per_node"] == pytest.approx(8 * m["prefill_tokens_per_s_per_gpu"])
    names = {e["name"] for e in r.timeline["events"]}
    assert names == {"attn(F)", "mlp(F)", "dispatch(F)", "combine(F)"}
    two = simulate(s.with_(name="pf-2groups", parallel={"dp": 64, "ep": 32}))  # two EP32 groups of the same routing
    assert two.parallel["ep_groups"] == 2 and two.n_gpus == 64
    assert two.metrics["prefill_tokens_per_s_per_gpu"] == pytest.approx(m["prefill_tokens_per_s_per_gpu"], rel=0.02)
    with pytest.raises(ValueError, match="ep=16 must divide"):  # EP groups must tile the GPUs
        s.with_(name="pf-bad", parallel={"dp": 24, "ep": 16})


def test_mla_vs_gqa_capacity_ratio():
    for ctx in (32768, 131072):
        v3 = kv_capacity("deepseek-v3", "H200", ctx)
        gqa = kv_capacity("qwen2.5-72b", "H200", ctx)
        assert v3["kv_bytes_per_token"] == 70272  # ISCA'25 Table 1
        assert gqa["kv_bytes_per_token"] == 327680  # 80 layers x 8 KV heads x 128 x 2 (K,V) x 2 B
        assert v3["max_requests_per_node"] == int(v3["kv_budget_bytes"] // (70272 * ctx))


def test_capacity_counts_whole_sequences_of_a_sliding_window_model():
    """The node comparison and the decode batch bound size a request by its whole cache (cost.kvcache), not by
    the rounded-down mean bytes per token x context: with gpt-oss's 128-token windows the latter fits one
    request too many at 1000 tokens on an H200 node (22,845 x the rounded size vs 22,844 x the exact one)."""
    from types import SimpleNamespace

    from dsv3sim.cost.kvcache import kv_cache_bytes, max_batch_at_context
    from dsv3sim.workload.decode import kv_budget
    from dsv3sim.workload.kernels import gpu_perf

    cfg = load_model_config("gpt-oss-120b")
    cap = kv_capacity("gpt-oss-120b", "H200", 1000)
    n, seq = cap["max_requests_per_node"], kv_cache_bytes(cfg, 1000)
    assert n == 22_844 and n * seq <= cap["kv_budget_bytes"] < (n + 1) * seq
    assert n == max_batch_at_context(cfg, cap["kv_budget_bytes"], 1000)
    w = SimpleNamespace(redundant_experts=0, gemm_dtype="fp8", context_len=1000, kv_dtype_bytes=1,
                        memory_reserve_fraction=0.1)
    for tp in (1, 4):
        _, budget, max_batch = kv_budget(cfg, SimpleNamespace(ep=16, attn_tp=tp), w, gpu_perf("H800"))
        per_gpu = tp * kv_cache_bytes(cfg, 1000, 1)  # the cache replicated on the attn_tp ranks
        assert max_batch * per_gpu <= budget < (max_batch + 1) * per_gpu


def test_prefill_cache_hits_cost_attention_and_count_every_input_token():
    s = Scenario(name="pf-hit", model="deepseek-v3", topology="h800-deepseek", parallel=ParallelDims(ep=32),
                 workload=PrefillWorkload(tokens_per_gpu=8192, prompt_len=4096), comm_model="bound")
    cold, hot = simulate(s), simulate(s.with_(workload={"cache_hit_rate": 0.5}))
    # computed tokens attend to the cached prefix: attention costs more per computed token, nothing else changes
    assert hot.layer_time_s["attn(F)"] > cold.layer_time_s["attn(F)"]
    assert hot.layer_time_s["mlp(F)"] == cold.layer_time_s["mlp(F)"]
    m = hot.metrics
    assert m["prefill_input_tokens_per_s_per_node"] == pytest.approx(2 * m["prefill_tokens_per_s_per_node"])
    assert m["prefill_tokens_per_s_per_node"] < cold.metrics["prefill_tokens_per_s_per_node"]
    with pytest.raises(ValueError, match="cache_hit_rate"):
        PrefillWorkload(cache_hit_rate=1.0)


def test_prefill_comm_sms_overrides_the_topology():
    """DeepEP's SMs in prefill (profile-data's prefill figure: 24): fewer SMs for the GEMMs, a faster transfer
    beside them; out-of-range values are one clear error."""
    s = Scenario(name="pf", model="deepseek-v3", topology="h800-deepseek", parallel=ParallelDims(dp=32, ep=32),
                 workload=PrefillWorkload(tokens_per_gpu=16384, prompt_len=4096), comm_model="bound")
    base = simulate(s)
    same = simulate(s.with_(workload={"comm_sms": 20}))  # the topology's value given explicitly
    assert same.metrics["ttft_s"] == base.metrics["ttft_s"]
    wide = simulate(s.with_(workload={"comm_sms": 24}))
    assert wide.layer_time_s["attn(F)"] > base.layer_time_s["attn(F)"]  # 108 SMs instead of 112
    assert wide.layer_time_s["combine(F)"] < base.layer_time_s["combine(F)"]  # x1.25 beside GEMMs, not x1.50
    with pytest.raises(ValueError, match="PrefillWorkload.comm_sms"):
        PrefillWorkload(comm_sms=-1)
    with pytest.raises(ValueError, match="PrefillWorkload.comm_sms=132"):
        simulate(s.with_(workload={"comm_sms": 132}))
