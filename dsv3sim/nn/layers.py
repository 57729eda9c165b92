"""Basic layers of the DeepSeek-V3 model: RMSNorm, Linear (BF16/FP32 or FP8), SwiGLU MLP, YaRN rotary embedding.

RoPE: interleaved pairs (x[2i], x[2i+1]) rotated by angle pos * f_i, as DeepSeek-V3 ``inference/model.py``
``apply_rotary_emb`` (complex view). YaRN (Peng et al. 2023; DeepSeek-V2 App. / V3 §4.3): when
max_position_embeddings > original_max_position_embeddings, frequencies between the correction dims of
beta_fast / beta_slow rotations are blended: f = f/factor * (1 - smooth) + f * smooth (``precompute_freqs_cis``);
cos/sin carry HF's mscale(factor, mscale)/mscale(factor, mscale_all_dim) (= 1 for V3) and the softmax scale
carries mscale(factor, mscale_all_dim)^2 (``ModelConfig.softmax_scale``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.fp8 import fp8_linear


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * w, computed in FP32 (V3 §3.3: norms stay in high precision)."""
    return F.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps).to(x.dtype)


class Linear(nn.Module):
    """y = x W^T (+ b with ``bias``: Qwen2 q/k/v, gpt-oss q/k/v/o). ``fp8`` switches the three GEMMs to FP8
    (nn/fp8.py); ``fp8_capable=False`` keeps the layer in high precision like DeepSeek's embedding, head, gate and
    MTP projection (V3 §3.3.1)."""

    def __init__(self, in_features: int, out_features: int, *, fp8_capable: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.fp8_capable = fp8_capable
        self.fp8 = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8 and self.fp8_capable:
            y = fp8_linear(x, self.weight)
            return y + self.bias.to(y.dtype) if self.bias is not None else y
        return F.linear(x, self.weight, self.bias)


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
           fp8: bool = False) -> torch.Tensor:
    """down(silu(gate x) * up x): the dense MLP, shared expert and each routed expert (V2 §2.2)."""
    lin = fp8_linear if fp8 else F.linear
    return lin(F.silu(lin(x, w_gate)) * lin(x, w_up), w_down)


class MLP(nn.Module):
    """SwiGLU MLP with HF names gate_proj / up_proj / down_proj."""

    def __init__(self, dim: int, inter: int) -> None:
        super().__init__()
        self.gate_proj = Linear(dim, inter)
        self.up_proj = Linear(dim, inter)
        self.down_proj = Linear(inter, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# --- rotary embedding ---------------------------------------------------------------------------------
def _yarn_mscale(scale: float, mscale: float) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_inv_freq(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Per-pair frequencies [d_r/2] (YaRN-corrected when the context is extended) and the cos/sin multiplier."""
    dim, base = cfg.rope_dim, cfg.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    rs = cfg.rope_scaling
    if rs is None or cfg.max_position_embeddings <= rs.original_max_position_embeddings:
        return freqs.float(), 1.0

    def corr_dim(n_rot: float) -> float:  # dim index whose wavelength makes n_rot turns over the original context
        return dim * math.log(rs.original_max_position_embeddings / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr_dim(rs.beta_fast)), 0)
    high = min(math.ceil(corr_dim(rs.beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    smooth = 1 - ramp
    freqs = freqs / rs.factor * (1 - smooth) + freqs * smooth
    m = _yarn_mscale(rs.factor, rs.mscale) / _yarn_mscale(rs.factor, rs.mscale_all_dim) if rs.mscale_all_dim else \
        _yarn_mscale(rs.factor, rs.mscale)
    return freqs.float(), m


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, mscale: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [S, d_r/2] for integer positions [S]."""
    ang = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return ang.cos() * mscale, ang.sin() * mscale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [..., S, (H,) d_r]; cos/sin [S, d_r/2] broadcast over heads when x is 4-D
    [B, S, H, d_r] (pass cos[:, None]) or 3-D [B, S, d_r]."""
    xf = x.float().unflatten(-1, (-1, 2))  # [..., d_r/2, 2]
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
