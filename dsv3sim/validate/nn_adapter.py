"""``dsv3sim.nn`` -> ModelParts: the project's Transformer (MLA or GQA attention, dense or MoE) cut into the
pieces the real run schedules.

The model is built on the meta device (no allocation, any size); ``parts.materialize`` allocates only what a
rank keeps. Attention is ``MLA.forward(x, cos, sin)`` (or ``GQAttention``, same call) with the model's RoPE
tables (``yarn_inv_freq``, ``rope_cos_sin``); routed experts are slices of the stacked ``Experts`` tensors run through
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
from dsv3sim.validate.parts import Block, ModelParts


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


class _GatedShared(nn.Module):
    """Qwen2-MoE's shared expert: sigmoid(w x) scales its output (``dsv3sim.nn.moe.MoE.forward``)."""

    def __init__(self, shared: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.shared, self.gate = shared, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * self.shared(x)


UNSUPPORTED = ("router_bias", "expert_bias", "swiglu_limit")  # gpt-oss: biased router and biased clamped experts


def check_supported(cfg) -> None:
    """Refuse a model the validated step cannot run as the model runs it: the EP wrapper routes with the
    model's gate math (``ep.route``) and runs experts through ``routed_experts``, which have no router bias nor
    biased, clamped experts."""
    bad = [f for f in UNSUPPORTED if getattr(cfg, f, False)]
    if bad:
        raise ConfigError(f"--model {cfg.name}: validate cannot run its MoE layers ({', '.join(bad)}: the EP "
                          "wrapper has no router bias nor biased/clamped experts)")


def build(cfg, seed: int, fp8: bool = False) -> ModelParts:
    """The model of ``cfg`` (any attention ``dsv3sim.nn`` builds: MLA or GQA) cut into parts, on the meta device;
    ``seed`` seeds torch for what follows. ``fp8``: FP8 compute in every FP8-capable linear and the routed experts
    (dsv3sim.nn's ``fp8`` flags: Triton grouped/dense FP8 kernels on a GPU, the exact emulation on CPU; the
    embedding, head and gate stay high precision, V3 §3.3.1). A model the step cannot run is refused
    (``check_supported``)."""
    check_supported(cfg)
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = Transformer(cfg, init=False)
    return parts_of(model, fp8=fp8)


def parts_of(model: Transformer, fp8: bool = False) -> ModelParts:
    """An existing ``Transformer`` (meta or real) cut into parts; expert slices copy real weights."""
    cfg = model.cfg
    check_supported(cfg)
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
            sh, sg = blk.mlp.shared_experts, blk.mlp.shared_expert_gate
            b.shared = _GatedShared(sh, sg) if sh is not None and sg is not None else sh
        else:
            b.ffn = blk.mlp
        blocks.append(b)
    return ModelParts(source=f"dsv3sim.nn.transformer.Transformer ({cfg.attention}; meta-built; MTP not in the "
                             "validated step)", embed=model.embed_tokens, blocks=blocks,
                      head=_Head(model.norm, model.lm_head))
