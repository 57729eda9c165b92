"""Analytic cost model: internal consistency checked by independent routes."""

from __future__ import annotations

import pytest

from dsv3sim.config import load_model_config
from dsv3sim.cost.flops import decode_flops_per_token, forward_flops_per_token
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token, max_batch_at_context, max_kv_tokens
from dsv3sim.cost.memory import training_state_bytes, weight_bytes
from dsv3sim.cost.params import count_params, expert_params


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-v2", "deepseek-v2-lite", "tiny", "one-layer"])
def test_activated_is_total_minus_idle_experts_and_embedding(name):
    c = load_model_config(name)
    pc = count_params(c)
    idle = c.n_moe_layers * (c.n_routed_experts - c.num_experts_per_tok) * expert_params(c)
    assert pc.activated == pc.total - idle - c.vocab_size * c.hidden_size
    assert sum(pc.by_component.values()) == pc.total


def test_linear_flops_are_twice_activated_matmul_params():
    c = load_model_config("deepseek-v3")
    f = forward_flops_per_token(c, seq_len=1)
    pc = count_params(c)
    norms = pc.activated_by_component["norms"]
    # at S=1 attention attends one key; everything else is 2 x (activated params minus norms and gate bias)
    gate_bias = c.n_moe_layers * c.n_routed_experts
    attn_core = f.by_component["attention_core"]
    assert f.forward - attn_core == 2 * (pc.activated - norms - gate_bias)


def test_decode_at_zero_context_has_no_attention_core_and_absorbs_kv_b():
    c = load_model_config("tiny")
    f0 = decode_flops_per_token(c, 0)
    f1 = decode_flops_per_token(c, 1000)
    per_ctx = (f1 - f0) / 1000
    nh, dc, dr = c.num_attention_heads, c.kv_lora_rank, c.qk_rope_head_dim
    assert per_ctx == pytest.approx(c.num_hidden_layers * (2 * nh * (dc + dr) + 2 * nh * dc))


def test_kv_capacity_round_trip():
    c = load_model_config("deepseek-v3")
    per = kv_cache_bytes_per_token(c)
    free = 80 * 2 ** 30
    n = max_kv_tokens(c, free)
    assert n * per <= free < (n + 1) * per
    assert max_batch_at_context(c, free, 32768) == n // 32768
    with pytest.raises(ValueError, match="context"):
        max_batch_at_context(c, free, 0)


def test_fp8_weights_between_half_and_bf16():
    c = load_model_config("deepseek-v3")
    b, f = weight_bytes(c, "bf16"), weight_bytes(c, "fp8")
    assert 0.5 * b < f < 0.52 * b  # FP8 linears + FP32 128x128 scales (1/4096 overhead) + BF16 rest


def test_training_state_zero1():
    s1 = training_state_bytes(1e9, dp=1)
    s8 = training_state_bytes(1e9, dp=8)
    assert s1.total == 14e9  # DeepSeek-V3 §3.3.3 precisions
    assert s8.total == pytest.approx(2e9 + 4e9 + 8e9 / 8)
