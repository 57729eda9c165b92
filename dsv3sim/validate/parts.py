"""The executable model cut into the pieces the real run schedules: embedding, blocks (attention, dense FFN
or MoE gate + experts + shared experts), head.

Source of the modules: ``dsv3sim.nn.transformer.Transformer``, the project's executable model for every
config it builds (MLA or GQA attention, dense or MoE), built on the meta device so that only the pieces a rank
keeps are ever allocated (``nn_adapter.py``); a model the validated step cannot run is refused there. The
result records it (``model_source``). MTP modules are not part of the validated step (the main model only).

Routed experts come as ``expert_slice(e0, e1)``: a module holding experts e0..e1-1 whose forward takes rows
sorted by expert and the row count of each expert (the grouped-GEMM interface of ``dsv3sim.nn.moe``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
