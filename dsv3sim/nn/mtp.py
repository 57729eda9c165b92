"""Multi-Token Prediction module (DeepSeek-V3 §2.2, Fig. 3, eq. 21-23).

  h'_i^k = M_k [RMSNorm(Emb(t_{i+k})); RMSNorm(h_i^{k-1})]   (eh_proj, 2H -> H; enorm, hnorm)
  h^k    = TRM_k(h'^k)                                       (its own decoder block, MoE in V3)
  P^k    = OutHead(h^k)                                      (shared_head: norm + the main lm_head)
The concatenation order (embedding first) is that of DeepSeek's HF/vLLM MTP layer (``eh_proj(cat(enorm(e),
hnorm(h)))``), which the published eh_proj weights assume. The embedding and output head are the main model's
tensors, passed in, never copied (V3 §2.2 "shared"); only enorm, hnorm, eh_proj, the block and the head's norm
belong to the module (HF names ``enorm``, ``hnorm``, ``eh_proj``, ``shared_head.norm``).
"""

from __future__ import annotations

import torch
from torch import nn

from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.block import Block
from dsv3sim.nn.layers import Linear, RMSNorm


class MTPModule(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        H = cfg.hidden_size
        self.layer = layer
        self.enorm = RMSNorm(H, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(H, cfg.rms_norm_eps)
        self.eh_proj = Linear(2 * H, H, fp8_capable=False)
        self.block = Block(cfg, layer)
        self.shared_head_norm = RMSNorm(H, cfg.rms_norm_eps)

    def forward(self, h_prev: torch.Tensor, emb: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
                start: int = 0, cache=None, impl: str | None = None) -> torch.Tensor:
        """h_prev [B,S,H] (previous depth), emb [B,S,H] (embedding of the token k ahead) -> h^k [B,S,H]."""
        x = self.eh_proj(torch.cat([self.enorm(emb), self.hnorm(h_prev)], dim=-1))
        return self.block(x, cos, sin, cache=cache, cache_layer=self.layer, start=start, impl=impl)
