"""GQA attention in the profiler: the decode op computes grouped attention, its FLOP/byte counts agree between the
measuring side (ops.py) and the predictor (predict.py), and the step model asks the predictor with its keys."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.config import load_model_config
from dsv3sim.profile.grid import gqa_points
from dsv3sim.profile.ops import attn_decode_gqa
from dsv3sim.profile.predict import OPS, flops_bytes


def test_decode_op_is_grouped_attention_and_counts_agree():
    c = attn_decode_gqa(b=2, t=48, h=8, kvh=2, d=16, device="cpu")
    q, k, v = c.sets[0]
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(4, 1),
                                                           v.float().repeat_interleave(4, 1))
    torch.testing.assert_close(c.fn(q, k, v).float(), ref, atol=2e-2, rtol=2e-2)
    assert (c.flops, c.bytes) == pytest.approx(flops_bytes("attn_decode_gqa", "bf16",
                                                           {"b": 2, "t": 48, "h": 8, "kvh": 2, "d": 16}))


def test_grid_covers_the_committed_gqa_models():
    pts = gqa_points()
    dec = {(p.shape["h"], p.shape["kvh"], p.shape["d"]) for p in pts if p.op == "attn_decode_gqa"}
    pre = {(p.shape["h"], p.shape["dqk"]) for p in pts if p.op == "attn_prefill"}
    for name in ("qwen3-235b-a22b", "qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-120b"):
        c = load_model_config(name)
        assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) in dec, name
        assert (c.num_attention_heads, c.head_dim) in pre, name
    assert all(p.shape["b"] * p.shape["t"] <= 2**21 for p in pts if p.op == "attn_decode_gqa")


def test_step_model_asks_with_the_predictor_keys(monkeypatch):
    from dsv3sim.workload import decode_ops

    seen = []
    real = decode_ops.op_time

    def spy(gpu, op, dtype, **kw):
        seen.append((op, set(kw) - {"flops", "bytes_", "sm_fraction"}))
        return real(gpu, op, dtype, **kw)

    monkeypatch.setattr(decode_ops, "op_time", spy)
    decode_ops.decode_layer_kernels(load_model_config("qwen3-30b-a3b"), 0, gpu="H200", requests=8, q=1, context=4096,
                                    expert_rows=64, local_experts=16, gemm_dtype="bf16", kv_dtype_bytes=2.0)
    keys = next(k for op, k in seen if op == "attn_decode_gqa")
    dims, fixed, _ = OPS["attn_decode_gqa"]
    assert set(dims) | set(fixed) == keys


def test_grids_of_a_gqa_model_measure_gqa_attention_not_mla():
    from dsv3sim.profile.grid import model_gemms, points

    q = load_model_config("qwen3-30b-a3b")
    pts = points(q, "small", ("bf16",))
    assert not [p for p in pts if any(isinstance(v, int) and v <= 0 for v in p.shape.values())]
    ops = {p.op for p in pts}
    assert "attn_decode_gqa" in ops and "attn_decode" not in ops
    assert model_gemms(q)["attn.kv_proj"] == (4 * 128, 2048) and "mla.wq_a" not in model_gemms(q)
    with pytest.raises(ValueError, match="nn grid times dsv3sim.nn's MLA functions"):
        points(q, "nn")
    v3 = load_model_config("deepseek-v3")
    assert "attn_decode_gqa" not in {p.op for p in points(v3, "small", ("bf16",))}
