"""One pre-norm decoder layer (HF ``DeepseekV3DecoderLayer``): MLA (or GQA, ``nn/gqa.py``) then an MLP or MoE
FFN; the main model's layers and each MTP module's own block (DeepSeek-V3 §2.2) are this block.

Legend: B batch, S sequence, H hidden.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.gqa import GQAttention
from dsv3sim.nn.layers import MLP, RMSNorm
from dsv3sim.nn.mla import MLA, LatentKVCache
from dsv3sim.nn.moe import MoE


class Block(nn.Module):
    """Pre-norm decoder layer: h += Attn(norm(h)); h += FFN(norm(h)), Attn = MLA or GQA, FFN = MLP or MoE."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MLA(cfg) if cfg.attention == "mla" else GQAttention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MoE(cfg, layer) if cfg.is_moe_layer(layer) else MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, h, cos, sin, *, cache: LatentKVCache | None = None, cache_layer: int = 0, start: int = 0,
                impl: str | None = None) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, cache=cache, layer=cache_layer, start=start,
                               impl=impl)
        return h + self.mlp(self.post_attention_layernorm(h))
