"""The FP8 (E4M3) tile format DeepSeek-V3 trains with (report §3.3.2) and its two quantisers.

Activations are quantised per 1x128 tile (one token, 128 channels), weights per 128x128 block, each tile with
one FP32 scale ``s = amax / 448`` (E4M3 max 448), so ``x ~= q * s``, q = RNE(x * (1/s)) (the reciprocal in IEEE
FP32, then one multiply per element: the GPU kernels of nn/fp8_triton.py compute the same bytes). Ragged edges
(dims not multiples of 128) are padded with zeros inside the quantiser and cropped. The GEMMs on these operands
are in nn/fp8.py, the cache of quantised weights in nn/fp8_weights.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

E4M3_MAX = 448.0
TILE = 128
FP8 = torch.float8_e4m3fn


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _pad_cols(x: torch.Tensor) -> torch.Tensor:
    k = x.shape[-1]
    pad = _ceil(k, TILE) * TILE - k
    return F.pad(x, (0, pad)) if pad else x


def quantize_1x128(x: torch.Tensor, *, row_align: int = 1, crop: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """x[M,K] -> (q fp8 [M,K], s fp32 [M, ceil(K/128)]) with x ~= q * s per 1x128 tile.

    ``s`` is outer-dim-major (stride (1, rows)), the layout _scaled_mm wants. ``crop=False`` keeps the zero
    padding: rows up to a multiple of ``row_align``, K up to a multiple of 128 (the GPU operand)."""
    m, k = x.shape
    mp, kp = _ceil(m, row_align) * row_align, _ceil(k, TILE) * TILE
    x = F.pad(x, (0, kp - k, 0, mp - m)) if (mp, kp) != (m, k) else x.contiguous()
    t = x.view(mp, kp // TILE, TILE)
    amax = torch.linalg.vector_norm(t.transpose(0, 1), ord=float("inf"), dim=-1)  # [C, Mp], max |x|, exact
    s = (amax.float() / E4M3_MAX).clamp_min_(1e-12).t()  # [Mp, C], stride (1, Mp)
    q = (t * s.reciprocal().unsqueeze(-1)).clamp_(-E4M3_MAX, E4M3_MAX).to(FP8).view(mp, kp)
    if crop and (mp, kp) != (m, k):
        return q[:m, :k], s[:m]
    return q, s


def quantize_128x128(w: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """w[N,K] -> (q fp8 [N,K], s fp32 [ceil(N/128), ceil(K/128)]) with w ~= q * s per 128x128 block.
    ``out``: (q, s) of an earlier call on the same shape, rewritten in place and returned (a re-quantisation
    keeps the buffers: nn/fp8_weights.py)."""
    n, k = w.shape
    np_ = _ceil(n, TILE) * TILE
    wp = F.pad(_pad_cols(w.float()), (0, 0, 0, np_ - n)).contiguous()
    b = wp.view(np_ // TILE, TILE, -1, TILE)  # [N/128, 128, K/128, 128]
    s = (b.abs().amax(dim=(1, 3)) / E4M3_MAX).clamp_min(1e-12)  # [N/128, K/128]
    q = (b * s.reciprocal()[:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(FP8).view(np_, -1)[:n, :k]
    if out is None:
        return q.contiguous(), s
    out[0].copy_(q)
    out[1].copy_(s)
    return out


def expand_scale(s: torch.Tensor, rows: int, cols: int, block_rows: int) -> torch.Tensor:
    """Per-element scale [rows, cols] from a tile scale (block_rows = 1 for 1x128, 128 for 128x128)."""
    return s.repeat_interleave(block_rows, 0)[:rows].repeat_interleave(TILE, 1)[:, :cols]


def dequantize(q: torch.Tensor, s: torch.Tensor, block_rows: int) -> torch.Tensor:
    """q * s in FP32 (inverse of quantize_1x128 when block_rows=1, of quantize_128x128 when 128)."""
    return q.float() * expand_scale(s, q.shape[0], q.shape[1], block_rows)
