"""Analytic cost model: internal consistency checked by independent routes."""

from __future__ import annotations

import pytest

from dsv3sim.config import load_model_config
from dsv3sim.cost.flops import decode_flops_per_token, forward_flops_per_token
from dsv3sim.cost.kvcache import (
    CONTEXTS,
    kv_cache_bytes_per_token,
    kv_sizing,
    max_batch_at_context,
    max_batch_by_context,
    max_kv_tokens,
)
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
    assert max_batch_at_context(c, free, 32768, replicas=4) == int(free // (4 * 32768 * per))  # TP4 attention
    with pytest.raises(ValueError, match="context"):
        max_batch_at_context(c, free, 0)


def test_kv_sizing_of_a_budget():
    """V3's 70,272 B/token ("Insights into DeepSeek-V3", ISCA'25, Table 1), a budget of exactly three 128K
    sequences, and the 128K cap of the longest single sequence."""
    c = load_model_config("deepseek-v3")
    budget = 70_272 * 131072 * 3
    s = kv_sizing(c, budget)
    assert (s["bytes_per_token"], s["bytes_per_token_fp8"], s["attention"]) == (70_272, 35_136, "mla")
    assert s["tokens"] == 3 * 131072 and s["batch"] == {4096: 96, 32768: 12, 131072: 3}
    assert s["max_context"] == c.max_position_embeddings == 163840 and s["model_limit"]
    half = kv_sizing(c, budget, contexts=(1000,), layers_fraction=0.5)  # a GPU holding half the layers
    assert half["tokens"] == 6 * 131072 and half["batch"] == {1000: 6 * 131072 // 1000}
    assert not kv_sizing(c, 70_272 * 1000)["model_limit"] and kv_sizing(c, 70_272 * 1000)["max_context"] == 1000
    q = load_model_config("qwen2.5-72b")  # GQA: K and V of 8 KV heads x 128 per layer, 80 layers
    assert kv_sizing(q, budget)["bytes_per_token"] == 2 * 8 * 128 * 80 * 2


def test_stats_capacity_lines_are_kv_sizing(capsys):
    """`dsv3sim stats` and the report's KV table count sequences by one function."""
    import json

    from dsv3sim.cli import main

    assert main(["stats", "gpt-oss-120b", "--gpu-memory-GiB", "80", "--json"]) == 0
    lines = json.loads(capsys.readouterr().out)["max_batch_per_gpu_memory"]
    c = load_model_config("gpt-oss-120b")  # sliding-window layers: the cache per sequence depends on its context
    assert lines == {str(k): v for k, v in kv_sizing(c, 80 * 2 ** 30)["batch"].items()}
    assert list(lines) == [str(k) for k in CONTEXTS]
    assert max_batch_by_context(c, 80 * 2 ** 30) == {k: max_batch_at_context(c, 80 * 2 ** 30, k) for k in CONTEXTS}


def test_fp8_weights_between_half_and_bf16():
    c = load_model_config("deepseek-v3")
    b, f = weight_bytes(c, "bf16"), weight_bytes(c, "fp8")
    assert 0.5 * b < f < 0.52 * b  # FP8 linears + FP32 128x128 scales (1/4096 overhead) + BF16 rest


def test_training_state_zero1():
    s1 = training_state_bytes(1e9, dp=1)
    s8 = training_state_bytes(1e9, dp=8)
    assert s1.total == 14e9  # DeepSeek-V3 §3.3.3 precisions
    assert s8.total == pytest.approx(2e9 + 4e9 + 8e9 / 8)
