"""``dsv3sim.nn`` -> ModelParts: the project's Transformer cut into the pieces the real run schedules.

The model is built on the meta device (no allocation, any size); ``parts.materialize`` allocates only what a
rank keeps. Attention is ``MLA.forward(x, cos, sin)`` with the model's YaRN RoPE tables (``yarn_inv_freq``,
``rope_cos_sin``); routed experts are slices of the stacked ``Experts`` tensors run through
``dsv3sim.nn.moe.routed_experts`` (grouped GEMM on a GPU in BF16, a per-expert loop otherwise); the gate's
``weight`` and ``e_score_correction_bias`` go to the EP wrapper, which applies the model's own routing math
(``dsv3sim.nn.routing.select_experts``) with groups = (virtual) nodes.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv3sim.config.errors import ConfigError
from dsv3sim.nn.layers import rope_cos_sin, yarn_inv_freq
from dsv3sim.nn.moe import MoE, routed_experts
from dsv3sim.nn.transformer import Transformer
from dsv3sim.validate.parts import Block, ModelParts, fallback


class _Attn(nn.Module):
    """MLA with its rotary tables; [B, S, D] -> [B, S, D] at positions 0..S-1."""

    def __init__(self, mla: nn.Module, inv_freq: torch.Tensor, mscale: float) -> None:
        super().__init__()
        self.mla, self.inv_freq, self.mscale = mla, inv_freq, mscale
        self._cache: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[1], x.device, x.dtype)
        if key not in self._cache:
            pos = torch.arange(x.shape[1])
            cos, sin = rope_cos_sin(self.inv_freq, pos, self.mscale)
            self._cache[key] = (cos.to(x.device, x.dtype), sin.to(x.device, x.dtype))
        cos, sin = self._cache[key]
        return self.mla(x, cos, sin)


class _Head(nn.Module):
    def __init__(self, norm: nn.Module, lm_head: nn.Module) -> None:
        super().__init__()
        self.norm, self.lm_head = norm, lm_head

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(h))


class StackedExperts(nn.Module):
    """Experts e0..e1-1 of a stacked ``Experts`` (fresh meta tensors of the slice's shape, materialised later)."""

    def __init__(self, experts: nn.Module, e0: int, e1: int) -> None:
        super().__init__()
        self.fp8 = bool(getattr(experts, "fp8", False))
        for name in ("gate_proj", "up_proj", "down_proj"):
            w = getattr(experts, name)
            if w.is_meta:
                t = torch.empty((e1 - e0,) + tuple(w.shape[1:]), device="meta", dtype=w.dtype)
            else:
                t = w.detach()[e0:e1].clone()
            setattr(self, name, nn.Parameter(t))

    def forward(self, x_sorted: torch.Tensor, counts: list[int]) -> torch.Tensor:
        c = torch.tensor(counts, device=x_sorted.device)
        return routed_experts(x_sorted, c, self.gate_proj, self.up_proj, self.down_proj, fp8=self.fp8)


def build(cfg, seed: int, fp8: bool = False) -> ModelParts:
    """The model of ``cfg`` cut into parts, on the meta device; ``seed`` seeds torch for what follows. ``fp8``:
    FP8 compute in every FP8-capable linear and the routed experts (dsv3sim.nn's ``fp8`` flags; the embedding,
    head and gate stay high precision, V3 §3.3.1). A model that is not MLA runs as ``parts.fallback``, the compact
    stand-in of its shapes, which has no FP8 path."""
    torch.manual_seed(seed)
    parts = from_nn(cfg, fp8=fp8)
    if parts is None and fp8:
        raise ConfigError(f"FP8 compute needs an MLA model built by dsv3sim.nn; {cfg.name} is not")
    return parts if parts is not None else fallback(cfg)


def from_nn(cfg, fp8: bool = False) -> ModelParts | None:
    """None when the model is not MLA (``dsv3sim.nn`` builds MLA models only). ``fp8``: FP8 compute (the model's
    ``fp8`` flags: Triton grouped/dense FP8 kernels on a GPU, the exact emulation on CPU)."""
    if cfg.attention != "mla":
        return None
    with torch.device("meta"):
        model = Transformer(cfg, init=False)
    for m in model.modules():
        if hasattr(m, "fp8"):
            m.fp8 = fp8
    inv_freq, mscale = yarn_inv_freq(cfg)
    blocks = []
    for i, blk in enumerate(model.layers):
        b = Block(layer=i, attn_norm=blk.input_layernorm, attn=_Attn(blk.self_attn, inv_freq.cpu(), mscale),
                  ffn_norm=blk.post_attention_layernorm)
        if isinstance(blk.mlp, MoE):
            b.gate_weight = blk.mlp.gate.weight
            bias = blk.mlp.gate.e_score_correction_bias
            b.gate_bias = torch.zeros(bias.shape) if bias is not None else None
            b.expert_slice = lambda e0, e1, ex=blk.mlp.experts: StackedExperts(ex, e0, e1)
            b.shared = blk.mlp.shared_experts
        else:
            b.ffn = blk.mlp
        blocks.append(b)
    return ModelParts(source="dsv3sim.nn.transformer.Transformer (meta-built; MTP not in the validated step)",
                      embed=model.embed_tokens, blocks=blocks, head=_Head(model.norm, model.lm_head))
