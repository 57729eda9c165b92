"""Multi-head Latent Attention (DeepSeek-V2 §2.1, V3 §2.1.1) with a latent KV cache.

Legend: B batch, S new tokens, T cached+new tokens, nh heads, d_n qk_nope_head_dim, d_r qk_rope_head_dim,
d_v v_head_dim, d_c kv_lora_rank, d_q q_lora_rank.

  c_q  = RMSNorm(W^{DQ} h)               [B,S,d_q]      (q_a_proj, q_a_layernorm; absent when q_lora_rank null)
  q    = W^{UQ} c_q  -> [q_nope | q_pe]   [B,S,nh,d_n+d_r] (q_b_proj, or q_proj on h)
  [c_kv | k_pe] = W^{DKV} h               [B,S,d_c+d_r]  (kv_a_proj_with_mqa); c_kv -> RMSNorm (kv_a_layernorm)
  k_pe = RoPE(k_pe), one key shared by all heads (decoupled RoPE, V2 eq. 15-16)
  [k_nope | v] = W^{UK}, W^{UV} c_kv      [B,T,nh,d_n+d_v] (kv_b_proj)
  o = softmax(q.k * scale) v; out = W^O o (o_proj)

Two attention paths that compute the same function:
* naive (training, prefill): materialise k_nope, v per head from the latents, then attention.
* absorbed (decode; V2 §2.1.2 "W^{UK} can be absorbed into W^{Q}, W^{UV} into W^{O}"): q_nope is mapped into
  latent space, q_c = q_nope W^{UK} [B,S,nh,d_c]; scores = q_c . c_kv + q_pe . k_pe; o_c = p . c_kv; o = o_c W^{UV}
  (DeepSeek-V3 inference/model.py attn_impl="absorb").
The cache keeps per token per layer only c_kv (d_c) and RoPE'd k_pe (d_r): (d_c + d_r) elements (V2 Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.layers import Linear, RMSNorm, apply_rope


@dataclass(kw_only=True, slots=True)
class LatentKVCache:
    """Per layer: kv [B, T_max, d_c] (normed latent) and pe [B, T_max, d_r] (RoPE'd shared key); ``length``
    tokens are valid. Truncating ``length`` rolls back (speculative decoding rejects)."""

    kv: list[torch.Tensor]
    pe: list[torch.Tensor]
    length: int = 0

    @classmethod
    def allocate(cls, cfg: ModelConfig, n_layers: int, batch: int, max_len: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> LatentKVCache:
        return cls(kv=[torch.zeros(batch, max_len, cfg.kv_lora_rank, dtype=dtype, device=device)
                       for _ in range(n_layers)],
                   pe=[torch.zeros(batch, max_len, cfg.qk_rope_head_dim, dtype=dtype, device=device)
                       for _ in range(n_layers)])

    def bytes_per_token(self) -> int:
        """Cache bytes per token over all layers (per sequence)."""
        return sum(t.element_size() * t.shape[-1] for t in self.kv + self.pe)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.kv + self.pe)


def causal_mask(s: int, t: int, start: int, device) -> torch.Tensor:
    """[S, T] True where query start+i may attend key j (j <= start+i)."""
    q = torch.arange(start, start + s, device=device)[:, None]
    k = torch.arange(t, device=device)[None, :]
    return k <= q


def attention_naive(q_nope, q_pe, kv, k_pe, wkv_b, *, n_heads: int, d_nope: int, d_v: int, scale: float,
                    start: int = 0, up=None) -> torch.Tensor:
    """q_nope [B,S,nh,d_n], q_pe [B,S,nh,d_r], kv [B,T,d_c] normed latent, k_pe [B,T,d_r], wkv_b [nh(d_n+d_v), d_c]
    -> o [B,S,nh,d_v]. Materialises K and V (through ``up``, e.g. an FP8 kv_b_proj, when given)."""
    B, T, _ = kv.shape
    S = q_nope.shape[1]
    kvh = (up(kv) if up is not None else F.linear(kv, wkv_b)).view(B, T, n_heads, d_nope + d_v)
    k_nope, v = kvh.split([d_nope, d_v], dim=-1)
    k = torch.cat([k_nope, k_pe[:, :, None, :].expand(B, T, n_heads, k_pe.shape[-1])], dim=-1)
    q = torch.cat([q_nope, q_pe], dim=-1)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, nh, S|T, d]
    if start == 0 and S == T:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(S, T, start, q.device), scale=scale)
    return o.transpose(1, 2)  # [B, S, nh, d_v]


def attention_absorbed(q_nope, q_pe, kv, k_pe, wkv_b, *, n_heads: int, d_nope: int, d_v: int, scale: float,
                       start: int = 0) -> torch.Tensor:
    """Same contract as attention_naive, with W^{UK}/W^{UV} folded into the query and output (never builds K, V)."""
    w = wkv_b.view(n_heads, d_nope + d_v, -1)  # [nh, d_n+d_v, d_c]
    q_c = torch.einsum("bshd,hdc->bshc", q_nope, w[:, :d_nope])  # [B,S,nh,d_c]
    scores = (torch.einsum("bshc,btc->bsht", q_c, kv) + torch.einsum("bshr,btr->bsht", q_pe, k_pe)) * scale
    S, T = q_nope.shape[1], kv.shape[1]
    mask = causal_mask(S, T, start, kv.device)[None, :, None, :]
    p = scores.float().masked_fill(~mask, float("-inf")).softmax(dim=-1).to(q_nope.dtype)  # [B,S,nh,T]
    o_c = torch.einsum("bsht,btc->bshc", p, kv)  # [B,S,nh,d_c]
    return torch.einsum("bshc,hdc->bshd", o_c, w[:, d_nope:])  # [B,S,nh,d_v]


def mla_projections(x, cos, sin, q_in, kv_a, kv_norm, *, n_heads: int, d_nope: int, d_rope: int, d_c: int):
    """Profiler op: the MLA down/up projections, norms and RoPE. ``q_in`` maps x -> [.., nh(d_n+d_r)] (q_a, norm,
    q_b, or q_proj), ``kv_a`` x -> [.., d_c+d_r], ``kv_norm`` the latent RMSNorm (callables: modules or lambdas
    over weights). Returns q_nope, q_pe, kv (normed latent), k_pe as MLA.project."""
    B, S, _ = x.shape
    q = q_in(x).view(B, S, n_heads, d_nope + d_rope)
    q_nope, q_pe = q.split([d_nope, d_rope], dim=-1)
    q_pe = apply_rope(q_pe, cos[:, None], sin[:, None])
    kv, k_pe = kv_a(x).split([d_c, d_rope], dim=-1)
    return q_nope, q_pe, kv_norm(kv), apply_rope(k_pe, cos, sin)


class MLA(nn.Module):
    """One MLA block with HF parameter names (modeling_deepseek.py DeepseekV3Attention)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        H, nh = cfg.hidden_size, cfg.num_attention_heads
        self.n_heads, self.d_nope = nh, cfg.qk_nope_head_dim
        self.d_rope, self.d_v = cfg.qk_rope_head_dim, cfg.v_head_dim
        self.d_c, self.q_lora_rank = cfg.kv_lora_rank, cfg.q_lora_rank
        self.scale = cfg.softmax_scale
        d_qk = self.d_nope + self.d_rope
        if cfg.q_lora_rank:
            self.q_a_proj = Linear(H, cfg.q_lora_rank)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = Linear(cfg.q_lora_rank, nh * d_qk)
        else:
            self.q_proj = Linear(H, nh * d_qk)
        self.kv_a_proj_with_mqa = Linear(H, self.d_c + self.d_rope)
        self.kv_a_layernorm = RMSNorm(self.d_c, cfg.rms_norm_eps)
        self.kv_b_proj = Linear(self.d_c, nh * (self.d_nope + self.d_v))
        self.o_proj = Linear(nh * self.d_v, H)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B,S,H] -> q_nope [B,S,nh,d_n], q_pe (RoPE'd) [B,S,nh,d_r], kv latent (normed) [B,S,d_c],
        k_pe [B,S,d_r]."""
        q_in = (lambda t: self.q_b_proj(self.q_a_layernorm(self.q_a_proj(t)))) if self.q_lora_rank else self.q_proj
        return mla_projections(x, cos, sin, q_in, self.kv_a_proj_with_mqa, self.kv_a_layernorm, n_heads=self.n_heads,
                               d_nope=self.d_nope, d_rope=self.d_rope, d_c=self.d_c)

    def kv_b_weight(self) -> torch.Tensor:
        return self.kv_b_proj.weight

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, cache: LatentKVCache | None = None,
                layer: int = 0, start: int = 0, impl: str | None = None) -> torch.Tensor:
        """x [B,S,H] at positions start..start+S-1. With a cache, the new latents are written at [start, start+S)
        and attention reads [0, start+S). ``impl``: "naive" | "absorb" (default: absorb with cache, else naive)."""
        B, S, _ = x.shape
        q_nope, q_pe, kv, k_pe = self.project(x, cos, sin)
        if cache is not None:
            cache.kv[layer][:B, start:start + S] = kv
            cache.pe[layer][:B, start:start + S] = k_pe
            kv, k_pe = cache.kv[layer][:B, :start + S], cache.pe[layer][:B, :start + S]
        impl = impl or ("absorb" if cache is not None else "naive")
        fn = {"naive": attention_naive, "absorb": attention_absorbed}.get(impl)
        if fn is None:
            raise ConfigError(f"attention impl must be 'naive' or 'absorb', got {impl!r}")
        kw = {"up": self.kv_b_proj} if impl == "naive" else {}
        o = fn(q_nope, q_pe, kv, k_pe, self.kv_b_weight(), n_heads=self.n_heads, d_nope=self.d_nope, d_v=self.d_v,
               scale=self.scale, start=start, **kw)
        return self.o_proj(o.reshape(B, S, self.n_heads * self.d_v))
