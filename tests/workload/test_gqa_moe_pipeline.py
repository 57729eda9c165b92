"""GQA-MoE models through the whole step model: the committed Qwen3-235B training and Kimi K2 serving scenarios,
and every family's prefill / decode / training on a small H200 layout (EP all-to-all conserved, memory fits)."""

from __future__ import annotations

import math

import pytest

from dsv3sim.config import load_model_config
from dsv3sim.config.scenario import DecodeWorkload, ParallelDims, PrefillWorkload, Scenario, TrainingWorkload
from dsv3sim.cost.flops import train_flops_per_token
from dsv3sim.results import Infeasible, ServingResult, TrainingResult
from dsv3sim.workload import simulate
from dsv3sim.workload.decode_ops import decode_layer_kernels
from dsv3sim.workload.layer_ops import training_layer
from dsv3sim.workload.loader import load
from dsv3sim.workload.training import simulate_training


def _conserved(comm: dict) -> None:
    for name, c in comm.items():
        if isinstance(c, dict) and "bytes_sent" in c:
            assert c["bytes_sent"] == pytest.approx(c["bytes_received"]), name


def test_qwen3_235b_training_scenario():
    (scn,) = load("qwen3_235b_training.py:pretrain").values()
    r = simulate_training(scn)
    assert isinstance(r, TrainingResult), getattr(r, "reason", r)
    assert r.train_flops_per_token == pytest.approx(train_flops_per_token(load_model_config("qwen3-235b-a22b"), 4096))
    assert 0.05 < r.mfu < 0.8 and math.isfinite(r.step_time_s)
    assert all(m["total_bytes"] <= m["hbm_bytes"] for m in r.memory_per_gpu)
    assert r.comm["dispatch(F)"]["n_ranks"] == 32
    _conserved(r.comm)


def test_kimi_k2_serving_scenarios():
    scns = load("kimi_k2_serving.py")
    pf, dc, mn = (simulate(scns[n]) for n in ("kimi-k2-prefill", "kimi-k2-decode", "kimi-k2-decode-16gpu"))
    for r in (pf, dc, mn):
        assert isinstance(r, ServingResult), getattr(r, "reason", r)
    assert pf.kv["kv_bytes_per_token"] == 70_272  # MLA latent (512 + 64) x 61 layers x 2 B, as DeepSeek-V3
    assert dc.parallel["ep"] == 128 and mn.parallel["ep"] == 16
    assert mn.metrics["tpot_s"] > dc.metrics["tpot_s"]  # 24 experts per GPU and a KV-bound batch
    # 16 H200 hold the FP8 weights with room for KV (Kimi deployment guidance: the smallest unit)
    assert 0.5 < mn.memory_per_gpu[0]["weights_bytes"] / mn.memory_per_gpu[0]["hbm_bytes"] < 0.6  # 1,026B / 16 in FP8
    assert mn.metrics["batch_per_gpu"] > 64


FAMILIES = {"gpt-oss-120b": 8, "mixtral-8x7b": 8, "qwen3-30b-a3b": 8, "qwen1.5-moe-a2.7b": 4}


@pytest.mark.parametrize("model, ep", FAMILIES.items())
def test_every_family_serves_and_trains(model, ep):
    dec = Scenario(name="d", model=model, topology="h200-hgx", parallel=ParallelDims(dp=ep, ep=ep),
                   workload=DecodeWorkload(context_len=8192, batch_per_gpu=None, mtp=False, node_limit=None))
    pf = Scenario(name="p", model=model, topology="h200-hgx", parallel=ParallelDims(dp=ep, ep=ep),
                  workload=PrefillWorkload(node_limit=None, tokens_per_gpu=8192))
    tr = Scenario(name="t", model=model, topology="h200-hgx", parallel=ParallelDims(pp=2, dp=16, ep=ep),
                  workload=TrainingWorkload(global_batch_sequences=64, seq_len=2048, schedule="1f1b",
                                            node_limit=None))
    for s, kind in ((dec, ServingResult), (pf, ServingResult), (tr, TrainingResult)):
        r = simulate(s) if kind is ServingResult else simulate_training(s)
        assert isinstance(r, kind), getattr(r, "reason", r)
        _conserved(r.comm)
    bad = simulate(dec.with_(parallel={"dp": 7, "ep": 7}))  # 7 divides no family's expert count
    assert isinstance(bad, Infeasible) and "does not divide" in bad.reason


def test_gqa_layer_kernels_follow_the_window_and_kv_heads():
    g = load_model_config("gpt-oss-120b")
    kw = {"gpu": "H200", "requests": 64, "q": 1, "context": 65536, "expert_rows": 256, "local_experts": 16,
          "gemm_dtype": "bf16", "kv_dtype_bytes": 2.0}

    def attention_s(layer: int) -> float:
        return sum(k.time_s for k in decode_layer_kernels(g, layer, **kw) if k.slice == "attn(F)")

    assert attention_s(0) < 0.2 * attention_s(1)  # 128 keys instead of 65,536
    t0 = training_layer(g, 0, gpu="H200", tokens=8192, seq_len=8192, expert_rows=4096, local_experts=16,
                        gemm_dtype="fp8", sm_fraction=1.0)
    t1 = training_layer(g, 1, gpu="H200", tokens=8192, seq_len=8192, expert_rows=4096, local_experts=16,
                        gemm_dtype="fp8", sm_fraction=1.0)
    assert t0.flops["attn(F)"] < t1.flops["attn(F)"]


def test_infeasible_layout_is_a_result_not_a_crash():
    s = Scenario(name="x", model="qwen3-235b-a22b", topology="h200-hgx", parallel=ParallelDims(dp=8, ep=8),
                 workload=DecodeWorkload(context_len=131072, batch_per_gpu=512, mtp=False, node_limit=None))
    r = simulate(s)
    assert isinstance(r, Infeasible) and "exceeds KV capacity" in r.reason
