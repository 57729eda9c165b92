"""The executable GQA-MoE families: shrunken configs of each family run forward and backward on CPU, and the
attention variants (sliding window, sinks, q/k norm) compute what their definitions say."""

from __future__ import annotations

import json

import pytest
import torch

from dsv3sim.config.model import from_dict, resolve_model_path
from dsv3sim.cost.params import count_params
from dsv3sim.nn.gqa import gqa_attention
from dsv3sim.nn.transformer import Transformer

SHRINK = {"hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 4,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128,
          "shared_expert_intermediate_size": 48, "num_experts": 8, "num_local_experts": 8, "sliding_window": 4}


def tiny_of(name: str):
    raw = json.loads(resolve_model_path(name).read_text())
    for k, v in SHRINK.items():
        if k in raw:
            raw[k] = v
    if "layer_types" in raw:
        raw["layer_types"] = raw["layer_types"][:SHRINK["num_hidden_layers"]]
    raw.setdefault("head_dim", 16)
    return from_dict(raw, f"tiny-{name}")


@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "qwen1.5-moe-a2.7b", "mixtral-8x7b", "gpt-oss-120b",
                                  "qwen2.5-72b"])
def test_tiny_family_trains_on_cpu(name):
    cfg = tiny_of(name)
    torch.manual_seed(0)
    m = Transformer(cfg)
    assert sum(p.numel() for p in m.parameters()) == count_params(cfg).total
    tokens = torch.randint(0, cfg.vocab_size, (2, 9))
    loss, parts = m.loss(tokens)
    loss.backward()
    assert torch.isfinite(loss) and 3.0 < parts["main"] < 7.0  # ~ln(128) = 4.85 at init
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="MLA models only"):
        m.allocate_cache(1, 4)


def test_family_features_in_the_module_tree():
    g = Transformer(tiny_of("gpt-oss-120b"))
    attn0, attn1 = g.layers[0].self_attn, g.layers[1].self_attn
    assert attn0.window == 4 and attn1.window == 0  # sliding_attention, full_attention alternate
    assert attn0.sinks is not None and attn0.q_proj.bias is not None and attn0.o_proj.bias is not None
    assert g.layers[0].mlp.gate.bias is not None and g.layers[0].mlp.experts.down_proj_bias.shape == (8, 64)
    q = Transformer(tiny_of("qwen3-30b-a3b"))
    assert q.layers[0].self_attn.q_norm is not None and q.layers[0].mlp.shared_experts is None
    assert q.layers[0].self_attn.q_proj.bias is None
    q2 = Transformer(tiny_of("qwen1.5-moe-a2.7b"))
    assert q2.layers[0].mlp.shared_expert_gate.weight.shape == (1, 64)
    assert q2.layers[0].mlp.shared_experts.gate_proj.weight.shape == (48, 64)
    assert q2.layers[0].self_attn.q_proj.bias is not None and q2.layers[0].self_attn.o_proj.bias is None


def test_sliding_window_and_sinks_semantics():
    torch.manual_seed(1)
    B, S, nh, nkv, hd = 1, 6, 4, 2, 8
    q, k, v = torch.randn(B, S, nh, hd), torch.randn(B, S, nkv, hd), torch.randn(B, S, nkv, hd)
    # window 1: each query sees only its own key -> output = its own value (of its KV group)
    o = gqa_attention(q, k, v, scale=0.3, window=1)
    torch.testing.assert_close(o, v.repeat_interleave(nh // nkv, dim=2))
    # window >= S is plain causal attention; grouped heads equal explicit repetition through SDPA
    full = gqa_attention(q, k, v, scale=0.3, window=S)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2),
        is_causal=True, scale=0.3).transpose(1, 2)
    torch.testing.assert_close(full, ref, atol=1e-5, rtol=1e-5)
    # a sink of -inf changes nothing; a large sink absorbs the probability mass (output -> 0)
    torch.testing.assert_close(gqa_attention(q, k, v, scale=0.3, sinks=torch.full((nh,), -1e30)), ref,
                               atol=1e-5, rtol=1e-5)
    assert gqa_attention(q, k, v, scale=0.3, sinks=torch.full((nh,), 60.0)).abs().max() < 1e-6
