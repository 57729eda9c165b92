"""The executable model cut into the pieces the real run schedules: embedding, blocks (attention, dense FFN
or MoE gate + experts + shared experts), head.

Source of the modules: ``dsv3sim.nn.transformer.Transformer`` (the project's model, built on the meta device
so that only the pieces a rank keeps are ever allocated — ``nn_adapter.py``) for MLA models; for the others a
compact stand-in with the same shapes and FLOPs (``fallback``): MLA with low-rank Q and KV (DeepSeek-V2
§2.1, decoupled RoPE dims), SwiGLU FFN/experts, sigmoid/softmax gate with bias. Which one was used is
recorded in the result (``model_source``) so the comparison states it. MTP modules are not part of the
validated step (the main model only).

Routed experts come as ``expert_slice(e0, e1)``: a module holding experts e0..e1-1 whose forward takes rows
sorted by expert and the row count of each expert (the grouped-GEMM interface of ``dsv3sim.nn.moe``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.errors import ConfigError


@dataclass(kw_only=True)
class Block:
    layer: int
    attn_norm: nn.Module
    attn: nn.Module  # [B, S, D] -> [B, S, D]
    ffn_norm: nn.Module
    ffn: nn.Module | None = None  # dense layer
    gate_weight: nn.Parameter | None = None  # MoE layer: [E, D]
    gate_bias: torch.Tensor | None = None  # [E] selection bias (aux-loss-free), may be None
    expert_slice: object | None = None  # (e0, e1) -> module(x_sorted [N, D], counts list[int]) -> [N, D]
    shared: nn.Module | None = None

    @property
    def is_moe(self) -> bool:
        return self.expert_slice is not None


@dataclass(kw_only=True)
class ModelParts:
    source: str
    embed: nn.Module  # tokens [B, S] -> [B, S, D]
    blocks: list[Block]
    head: nn.Module  # [B, S, D] -> logits [B, S, V] (final norm included)


@torch.no_grad()
def materialize(module: nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    """Meta parameters -> real ones, allocated directly on ``device`` in ``dtype`` and initialised in place
    (normal(0, 0.02) matrices, ones for norms, zeros for biases, as dsv3sim.nn's reset_parameters), so a
    DeepSeek-V3-width layer never needs an FP32 or host copy; real parameters are just moved."""
    g = torch.Generator(device=device).manual_seed(seed)
    memo: dict[int, nn.Parameter] = {}
    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is None or not p.is_meta:
                continue
            if id(p) not in memo:
                t = torch.empty(p.shape, device=device, dtype=dtype)
                if "bias" in name:
                    t.zero_()
                elif t.dim() == 1:
                    t.fill_(1.0)
                else:
                    t.normal_(0.0, 0.02, generator=g)
                memo[id(p)] = nn.Parameter(t, requires_grad=p.requires_grad)
            mod._parameters[name] = memo[id(p)]
    return module.to(device, dtype)


class ExpertList(nn.Module):
    """Routed experts as separate modules; forward over rows sorted by expert."""

    def __init__(self, experts: list[nn.Module]) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)

    def forward(self, x_sorted: torch.Tensor, counts: list[int]) -> torch.Tensor:
        chunks = torch.split(x_sorted, counts)
        ys = [self.experts[j](c) if c.shape[0] else c for j, c in enumerate(chunks)]
        return torch.cat(ys, 0) if ys else x_sorted


# --- stand-in modules -------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.w, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.w, self.eps)


class SwiGLU(nn.Module):
    def __init__(self, d: int, inter: int) -> None:
        super().__init__()
        self.w1, self.w3 = nn.Linear(d, inter, bias=False), nn.Linear(d, inter, bias=False)
        self.w2 = nn.Linear(inter, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding on the last dim of x [B, H, S, R] (R even)."""
    S, R = x.shape[-2], x.shape[-1]
    f = 1.0 / theta ** (torch.arange(0, R, 2, device=x.device, dtype=torch.float32) / R)
    ang = torch.outer(torch.arange(S, device=x.device, dtype=torch.float32), f)  # [S, R/2]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class MLA(nn.Module):
    """Multi-head latent attention, training form (DeepSeek-V2 §2.1.2-2.1.3)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        D, H = cfg.hidden_size, cfg.num_attention_heads
        self.H, self.nope, self.rope, self.vd = H, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.kvr, self.theta, self.scale = cfg.kv_lora_rank, cfg.rope_theta, cfg.softmax_scale
        qk = self.nope + self.rope
        if cfg.q_lora_rank:
            self.wq = nn.Sequential(nn.Linear(D, cfg.q_lora_rank, bias=False), RMSNorm(cfg.q_lora_rank, 1e-6),
                                    nn.Linear(cfg.q_lora_rank, H * qk, bias=False))
        else:
            self.wq = nn.Linear(D, H * qk, bias=False)
        self.wkv_a = nn.Linear(D, self.kvr + self.rope, bias=False)
        self.kv_norm = RMSNorm(self.kvr, 1e-6)
        self.wkv_b = nn.Linear(self.kvr, H * (self.nope + self.vd), bias=False)
        self.wo = nn.Linear(H * self.vd, D, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        q = self.wq(x).view(B, S, self.H, -1).transpose(1, 2)  # [B, H, S, nope+rope]
        q = torch.cat([q[..., :self.nope], _rope(q[..., self.nope:], self.theta)], -1)
        kv, kr = self.wkv_a(x).split([self.kvr, self.rope], -1)
        kv = self.wkv_b(self.kv_norm(kv)).view(B, S, self.H, -1).transpose(1, 2)  # [B, H, S, nope+v]
        k_nope, v = kv.split([self.nope, self.vd], -1)
        kr = _rope(kr.unsqueeze(1), self.theta).expand(B, self.H, S, self.rope)
        k = torch.cat([k_nope, kr], -1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)  # [B, H, S, v]
        return self.wo(o.transpose(1, 2).reshape(B, S, -1))


class Head(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.norm, self.out = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps), nn.Linear(cfg.hidden_size,
                                                                                     cfg.vocab_size, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(h))


def fallback(cfg) -> ModelParts:
    if cfg.attention != "mla":
        raise ConfigError(f"the stand-in model implements MLA only; {cfg.name} uses {cfg.attention}")
    D = cfg.hidden_size
    blocks = []
    for i in range(cfg.num_hidden_layers):
        b = Block(layer=i, attn_norm=RMSNorm(D, cfg.rms_norm_eps), attn=MLA(cfg),
                  ffn_norm=RMSNorm(D, cfg.rms_norm_eps))
        if cfg.is_moe_layer(i):
            b.gate_weight = nn.Parameter(torch.randn(cfg.n_routed_experts, D) * D ** -0.5)
            b.gate_bias = torch.zeros(cfg.n_routed_experts) if cfg.topk_method == "noaux_tc" else None
            experts = [SwiGLU(D, cfg.moe_intermediate_size) for _ in range(cfg.n_routed_experts)]
            b.expert_slice = lambda e0, e1, ex=experts: ExpertList(ex[e0:e1])
            b.shared = SwiGLU(D, cfg.moe_intermediate_size * cfg.n_shared_experts) if cfg.n_shared_experts else None
        else:
            b.ffn = SwiGLU(D, cfg.intermediate_size)
        blocks.append(b)
    return ModelParts(source="validate.parts stand-in (dsv3sim.nn not importable)", embed=nn.Embedding(
        cfg.vocab_size, D), blocks=blocks, head=Head(cfg))
