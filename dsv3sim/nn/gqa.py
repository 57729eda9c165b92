"""Grouped-query attention (Llama/Qwen/Mixtral/gpt-oss) with the variants of the MoE models people deploy.

Legend: B batch, S tokens, nh query heads, nkv key/value heads (nh % nkv == 0), hd head_dim.

  q = W_q x + b_q [B,S,nh,hd]; k, v = W_k x + b_k, W_v x + b_v [B,S,nkv,hd]  (biases: Qwen2 q/k/v, gpt-oss q/k/v/o)
  q, k = RMSNorm_hd(q), RMSNorm_hd(k) per head                              (Qwen3 / Qwen3-MoE ``qk_norm``)
  q, k = RoPE(q), RoPE(k) over the whole head, halves rotated (HF ``rotate_half``)
  each group of nh/nkv query heads attends one k/v head; causal, and within the last W keys on a sliding-window
  layer (gpt-oss even layers, W = 128; HF: key j visible to query i when i - j < W)
  p = softmax([q.k * scale, s_h]) without the sink column                    (gpt-oss learned sink s_h per head)
  out = W_o o (+ b_o)

KV-cache decoding is implemented for MLA (nn/mla.py) only; the analytic GQA decode cost is in cost/flops.py.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.layers import Linear, RMSNorm


def rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B,S,h,d], cos/sin [S,d/2]: rotate (x[:d/2], x[d/2:]) pairs (HF Llama ``apply_rotary_pos_emb``)."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


def gqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, window: int = 0,
                  sinks: torch.Tensor | None = None) -> torch.Tensor:
    """q [B,S,nh,hd], k/v [B,S,nkv,hd] -> o [B,S,nh,hd]; causal, optional sliding window and per-head sinks."""
    B, S, nh, _hd = q.shape
    rep = nh // k.shape[2]
    qt = q.transpose(1, 2)  # [B,nh,S,hd]
    kt = k.transpose(1, 2).repeat_interleave(rep, dim=1)  # [B,nh,S,hd]
    vt = v.transpose(1, 2).repeat_interleave(rep, dim=1)
    scores = (qt.float() @ kt.float().transpose(-1, -2)) * scale  # [B,nh,S,S]
    i = torch.arange(S, device=q.device)[:, None]
    j = torch.arange(S, device=q.device)[None, :]
    visible = j <= i
    if window:
        visible = visible & (i - j < window)
    scores = scores.masked_fill(~visible, float("-inf"))
    if sinks is not None:
        sink = sinks.float().view(1, nh, 1, 1).expand(B, nh, S, 1)
        p = torch.cat([scores, sink], dim=-1).softmax(dim=-1)[..., :S]
    else:
        p = scores.softmax(dim=-1)
    return (p.to(vt.dtype) @ vt).transpose(1, 2)  # [B,S,nh,hd]


class GQAttention(nn.Module):
    """One GQA block with HF parameter names (q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, sinks)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        H, nh, nkv, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.n_heads, self.n_kv, self.hd = nh, nkv, hd
        self.q_proj = Linear(H, nh * hd, bias=cfg.qkv_bias)
        self.k_proj = Linear(H, nkv * hd, bias=cfg.qkv_bias)
        self.v_proj = Linear(H, nkv * hd, bias=cfg.qkv_bias)
        self.o_proj = Linear(nh * hd, H, bias=cfg.o_bias)
        self.q_norm = RMSNorm(hd, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(hd, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.sinks = nn.Parameter(torch.empty(nh)) if cfg.attention_sinks else None
        self.window = cfg.window_of(layer)
        self.scale = cfg.softmax_scale

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, cache=None, layer: int = 0,
                start: int = 0, impl: str | None = None) -> torch.Tensor:
        """x [B,S,H] at positions start..start+S-1 (whole sequences; no cache)."""
        if cache is not None:
            raise ConfigError("dsv3sim.nn decodes with a KV cache for MLA models only; this model uses GQA")
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.n_heads, self.hd)
        k = self.k_proj(x).view(B, S, self.n_kv, self.hd)
        v = self.v_proj(x).view(B, S, self.n_kv, self.hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rope_half(q, cos, sin), rope_half(k, cos, sin)
        o = gqa_attention(q, k, v, scale=self.scale, window=self.window, sinks=self.sinks)
        return self.o_proj(o.reshape(B, S, self.n_heads * self.hd))
