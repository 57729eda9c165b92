"""Analytic parameter counts (dsv3sim.cost.params) equal numel() of the model built on the meta device."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.config.model import load_model_config
from dsv3sim.cost.params import count_params
from dsv3sim.nn.transformer import Transformer


def _by_component(m: Transformer) -> dict[str, int]:
    out: dict[str, int] = {}
    for n, p in m.named_parameters():
        if n.startswith("mtp."):
            key = "mtp"
        elif n.startswith("embed_tokens"):
            key = "embedding"
        elif n.startswith("lm_head"):
            key = "head"
        elif ".mlp.experts." in n:
            key = "routed_experts"
        elif ".mlp.shared_experts." in n or ".mlp.shared_expert_gate." in n:
            key = "shared_experts"
        elif ".mlp.gate." in n:
            key = "gate"
        elif "norm" in n:
            key = "norms"
        elif ".self_attn." in n:
            key = "attention"
        else:
            key = "dense_mlp"
        out[key] = out.get(key, 0) + p.numel()
    return out


@pytest.mark.parametrize("name", ["tiny", "deepseek-v2-lite", "deepseek-v2", "deepseek-v3",
                                  "deepseek-v3-inference-671B", "one-layer", "deepseek-v2-lite-inference-16B",
                                  "deepseek-v2-inference-236B", "kimi-k2", "qwen3-235b-a22b", "qwen3-30b-a3b",
                                  "qwen1.5-moe-a2.7b", "qwen2-57b-a14b", "mixtral-8x7b", "gpt-oss-120b",
                                  "llama3-70b", "qwen2.5-72b"])
def test_numel_on_meta_equals_analytic(name):
    cfg = load_model_config(name)
    with torch.device("meta"):
        m = Transformer(cfg)
    assert m.embed_tokens.weight.is_meta
    pc = count_params(cfg)
    got = _by_component(m)
    want = {k: v for k, v in pc.by_component.items() if v}
    if pc.mtp:
        want["mtp"] = pc.mtp
    assert got == want
    assert sum(p.numel() for p in m.parameters()) == pc.total + pc.mtp
    if name == "deepseek-v3":
        assert round(pc.total / 1e9) == 671  # V3 report: 671B total (main model)
