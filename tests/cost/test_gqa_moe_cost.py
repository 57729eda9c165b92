"""Cost model of the GQA-MoE families: sliding-window attention FLOPs and KV bytes, MXFP4 expert weights, the
Qwen2-MoE shared expert, and FLOPs that equal 2 x activated matmul parameters."""

from __future__ import annotations

import pytest

from dsv3sim.config import load_model_config
from dsv3sim.cost.flops import causal_mean_context, decode_flops_per_token, forward_flops_per_token
from dsv3sim.cost.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_at_context
from dsv3sim.cost.memory import checkpoint_weight_dtype, routed_expert_bytes, weight_bytes
from dsv3sim.cost.params import count_params

GiB = 2 ** 30


def test_windowed_causal_mean_is_the_brute_force_mean():
    for S, W in ((10, 3), (4096, 128), (5, 8), (7, 7)):
        brute = sum(min(p, W) for p in range(1, S + 1)) / S
        assert causal_mean_context(S, W) == pytest.approx(brute)
    assert causal_mean_context(4096) == 4097 / 2


def test_gpt_oss_kv_cache_holds_128_tokens_on_sliding_layers():
    g = load_model_config("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2  # K and V, 8 KV heads x 64, BF16
    assert kv_cache_bytes(g, 100) == 36 * 100 * per_layer  # shorter than the window: every layer holds all
    assert kv_cache_bytes(g, 131072) == (18 * 131072 + 18 * 128) * per_layer
    assert kv_cache_bytes_per_token(g) == 36 * per_layer  # no context: every layer (upper bound)
    assert kv_cache_bytes_per_token(g, context=131072) < 0.51 * 36 * per_layer
    free = 100 * GiB
    assert max_batch_at_context(g, free, 131072) == int(free // kv_cache_bytes(g, 131072))
    # a model without windows is unchanged by the context
    q = load_model_config("qwen3-235b-a22b")
    assert kv_cache_bytes_per_token(q, context=4096) == kv_cache_bytes_per_token(q) == 94 * 2 * 4 * 128 * 2


def test_gpt_oss_attention_flops_use_the_window():
    g = load_model_config("gpt-oss-120b")
    nh, hd = 64, 64
    f = forward_flops_per_token(g, 8192).by_component["attention_core"]
    want = 18 * 2 * nh * 2 * hd * causal_mean_context(8192) + 18 * 2 * nh * 2 * hd * causal_mean_context(8192, 128)
    assert f == pytest.approx(want)
    d_long, d_short = decode_flops_per_token(g, 100_000), decode_flops_per_token(g, 50_000)
    assert d_long - d_short == pytest.approx(18 * 2 * nh * 2 * hd * 50_000)  # only the full layers grow


@pytest.mark.parametrize("name", ["qwen3-235b-a22b", "mixtral-8x7b", "gpt-oss-120b", "qwen1.5-moe-a2.7b", "kimi-k2"])
def test_linear_flops_are_twice_the_activated_matmul_params(name):
    c = load_model_config(name)
    pc = count_params(c)
    f = forward_flops_per_token(c, 1).by_component
    linear = sum(v for k, v in f.items() if k != "attention_core")
    act = pc.activated - pc.activated_by_component["embedding"] - pc.activated_by_component["norms"]
    # biases, sinks and the noaux/router bias vectors are parameters but not matmul weights
    assert linear / 2 == pytest.approx(act, rel=2e-3)


def test_mxfp4_checkpoint_matches_the_published_size():
    g = load_model_config("gpt-oss-120b")
    assert checkpoint_weight_dtype(g) == "mxfp4"
    # gpt-oss model card Table 1: checkpoint 60.8 GiB
    assert weight_bytes(g, "mxfp4") / GiB == pytest.approx(60.8, rel=0.01)
    assert routed_expert_bytes(g, "mxfp4") == pytest.approx(3 * 2880 * 2880 * 0.53125 + 2 * (2 * 2880 + 2880))
    assert checkpoint_weight_dtype(load_model_config("kimi-k2")) == "fp8"
    assert checkpoint_weight_dtype(load_model_config("mixtral-8x7b")) == "bf16"


def test_qwen2_moe_shared_expert_has_its_own_width_and_gate():
    q = load_model_config("qwen1.5-moe-a2.7b")
    pc = count_params(q)
    assert pc.by_component["shared_experts"] == 24 * (3 * 2048 * 5632 + 2048)
    assert weight_bytes(q, "bf16") == 2 * pc.total
