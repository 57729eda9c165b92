"""FP8 (E4M3) fine-grained quantisation and block-scaled GEMM, as DeepSeek-V3 trains (report §3.3).

Activations are quantised per 1x128 tile (one token, 128 channels), weights per 128x128 block, each tile with
one FP32 scale ``s = amax / 448`` (E4M3 max 448), so ``x ~= q * s``; DeepSeek's HF checkpoints store this
``s`` as ``weight_scale_inv`` of shape [ceil(N/128), ceil(K/128)] (inference/kernel.py ``weight_dequant``:
y = q * s). Ragged edges (dims not multiples of 128) are padded with zeros inside the quantiser and cropped.

GEMM ``C[M,N] = A[M,K] @ B[N,K]^T`` with A in 1x128 tiles and B in 128x128 blocks (or 1x128 rows, for Wgrad):
* GPU: ``torch._scaled_mm`` with block-wise scales (cuBLASLt; sm90, torch >= 2.9). Layout the op wants
  (aten ScaledBlas.cpp): A's 1x128 scale is [M, K/128] outer-dim-major (stride (1, M)); B's 128x128 scale is
  passed as [K/128, N/128] = sw.t() of the row-major [N/128, K/128]. A one-time probe checks the result
  against the emulation and falls back to dequantise + BF16 GEMM when the device/torch refuses.
* CPU: ``gemm_emulated``: FP32 products of the FP8 values inside each 128-wide K chunk (a WGMMA group), then
  the chunk is multiplied by its two scales and added to an FP32 accumulator, i.e. promotion to FP32 every
  N_C = 128 elements along K (V3 §3.3.2 "Increasing accumulation precision"). Within a chunk the tensor core's
  ~14-bit accumulator is modelled as FP32 (the emulation is the exact-math limit of the kernel).

Linear layer GEMMs (V3 §3.3.1, Fig. 6): Fprop y = x W^T (x 1x128, W 128x128); Dgrad dx = dy W (dy 1x128 along
N, W's 128x128 blocks transposed); Wgrad dW = dy^T x (both quantised 1x128 along the token dim, i.e. 128x1
tiles of dy and x). Outputs in the input dtype; master weights stay in high precision.
"""

from __future__ import annotations

import torch

E4M3_MAX = 448.0
TILE = 128
FP8 = torch.float8_e4m3fn

_GPU_OK: dict[tuple[str, bool], bool] = {}  # probe cache per (device type, B block-scaled): not model state


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _pad_cols(x: torch.Tensor) -> torch.Tensor:
    k = x.shape[-1]
    pad = _ceil(k, TILE) * TILE - k
    return torch.nn.functional.pad(x, (0, pad)) if pad else x


def quantize_1x128(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x[M,K] -> (q fp8 [M,K], s fp32 [M, ceil(K/128)]) with x ~= q * s per 1x128 tile."""
    m, k = x.shape
    xp = _pad_cols(x.float()).contiguous()
    t = xp.view(m, -1, TILE)  # [M, K/128, 128]
    s = (t.abs().amax(-1) / E4M3_MAX).clamp_min(1e-12)  # [M, K/128]
    q = (t / s.unsqueeze(-1)).clamp(-E4M3_MAX, E4M3_MAX).to(FP8).view(m, -1)[:, :k]
    return q, s


def quantize_128x128(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w[N,K] -> (q fp8 [N,K], s fp32 [ceil(N/128), ceil(K/128)]) with w ~= q * s per 128x128 block."""
    n, k = w.shape
    np_ = _ceil(n, TILE) * TILE
    wp = torch.nn.functional.pad(_pad_cols(w.float()), (0, 0, 0, np_ - n)).contiguous()
    b = wp.view(np_ // TILE, TILE, -1, TILE)  # [N/128, 128, K/128, 128]
    s = (b.abs().amax(dim=(1, 3)) / E4M3_MAX).clamp_min(1e-12)  # [N/128, K/128]
    q = (b / s[:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(FP8).view(np_, -1)[:n, :k]
    return q, s


def expand_scale(s: torch.Tensor, rows: int, cols: int, block_rows: int) -> torch.Tensor:
    """Per-element scale [rows, cols] from a tile scale (block_rows = 1 for 1x128, 128 for 128x128)."""
    return s.repeat_interleave(block_rows, 0)[:rows].repeat_interleave(TILE, 1)[:, :cols]


def dequantize(q: torch.Tensor, s: torch.Tensor, block_rows: int) -> torch.Tensor:
    """q * s in FP32 (inverse of quantize_1x128 when block_rows=1, of quantize_128x128 when 128)."""
    return q.float() * expand_scale(s, q.shape[0], q.shape[1], block_rows)


def gemm_emulated(aq: torch.Tensor, sa: torch.Tensor, bq: torch.Tensor, sb: torch.Tensor, *, b_block: bool,
                  out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """C[M,N] = (aq*sa) @ (bq*sb)^T with per-128-chunk FP32 products and FP32 promotion (see module doc)."""
    m, k = aq.shape
    n = bq.shape[0]
    a = _pad_cols(aq.float()).contiguous().view(m, -1, TILE)  # [M, C, 128]
    b = _pad_cols(bq.float()).contiguous().view(n, -1, TILE)  # [N, C, 128]
    sb_rows = sb.repeat_interleave(TILE, 0)[:n] if b_block else sb  # [N, C]
    acc = torch.zeros(m, n, dtype=torch.float32, device=aq.device)
    for c in range(a.shape[1]):  # one WGMMA group of 128 along K, then promote
        part = a[:, c] @ b[:, c].t()  # [M, N] FP32
        acc += part * sa[:, c:c + 1] * sb_rows[:, c].unsqueeze(0)
    return acc.to(out_dtype)


def gemm_reference(aq, sa, bq, sb, *, b_block: bool) -> torch.Tensor:
    """Exact-math reference: dequantise both operands to FP64 and multiply (for tests)."""
    a = dequantize(aq, sa, 1).double()
    b = dequantize(bq, sb, TILE if b_block else 1).double()
    return a @ b.t()


def _scaled_mm(aq, sa, bq, sb, b_block: bool, out_dtype) -> torch.Tensor:
    sa_ = sa.t().contiguous().t()  # [M, K/128], stride (1, M): outer-dim-major
    sb_ = sb.t() if b_block else sb.t().contiguous()  # [K/128, N/128] (128x128) or [K/128, N] (1x128)
    out = torch._scaled_mm(aq, bq.t(), sa_, sb_, out_dtype=torch.bfloat16)  # block-scaled cuBLASLt writes BF16
    return out if out_dtype == torch.bfloat16 else out.to(out_dtype)


def gpu_blockwise_ok(device: torch.device, b_block: bool) -> bool:
    """Whether _scaled_mm's block-wise path runs here and agrees with the emulation (probed once)."""
    key = (str(device), b_block)
    if key not in _GPU_OK:
        ok = False
        try:
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(256, 512, device=device, generator=g)
            w = torch.randn(384, 512, device=device, generator=g)
            aq, sa = quantize_1x128(x)
            bq, sb = quantize_128x128(w) if b_block else quantize_1x128(w)
            out = _scaled_mm(aq, sa, bq, sb, b_block, torch.float32)
            ref = gemm_emulated(aq, sa, bq, sb, b_block=b_block)
            ok = bool(((out - ref).norm() / ref.norm()).item() < 1e-2)
        except (RuntimeError, TypeError, ValueError):
            ok = False
        _GPU_OK[key] = ok
    return _GPU_OK[key]


def fp8_gemm(aq, sa, bq, sb, *, b_block: bool, out_dtype: torch.dtype) -> torch.Tensor:
    """Block-scaled FP8 GEMM: _scaled_mm on a capable GPU (dims multiples of 128), else the emulation."""
    m, k = aq.shape
    n = bq.shape[0]
    if aq.is_cuda:
        if k % TILE == 0 and n % TILE == 0 and gpu_blockwise_ok(aq.device, b_block):
            try:
                return _scaled_mm(aq, sa, bq, sb, b_block, out_dtype)
            except RuntimeError:  # a shape cuBLASLt refuses (e.g. M alignment): dequantised BF16 GEMM instead
                pass
        a = dequantize(aq, sa, 1).to(torch.bfloat16)
        b = dequantize(bq, sb, TILE if b_block else 1).to(torch.bfloat16)
        return (a @ b.t()).to(out_dtype)
    return gemm_emulated(aq, sa, bq, sb, b_block=b_block, out_dtype=out_dtype)


class _FP8Linear(torch.autograd.Function):
    """y = x W^T with the three GEMMs of a linear layer in FP8 (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        aq, sa = quantize_1x128(x)
        wq, sw = quantize_128x128(w)
        ctx.save_for_backward(x, wq, sw)
        ctx.w_dtype = w.dtype
        return fp8_gemm(aq, sa, wq, sw, b_block=True, out_dtype=x.dtype)  # Fprop

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, wq, sw = ctx.saved_tensors
        dy = dy.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:  # Dgrad: dx[M,K] = dy[M,N] @ W[N,K]; W^T keeps its 128x128 blocks
            gq, sg = quantize_1x128(dy)
            dx = fp8_gemm(gq, sg, wq.t().contiguous(), sw.t().contiguous(), b_block=True, out_dtype=x.dtype)
        if ctx.needs_input_grad[1]:  # Wgrad: dW[N,K] = dy^T[N,M] @ x[M,K], both tiled along M (128x1)
            gq, sg = quantize_1x128(dy.t())
            xq, sx = quantize_1x128(x.t())
            dw = fp8_gemm(gq, sg, xq, sx, b_block=False, out_dtype=ctx.w_dtype)
        return dx, dw


def fp8_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x[..., K] @ w[N, K]^T through FP8 Fprop/Dgrad/Wgrad."""
    shape = x.shape
    y = _FP8Linear.apply(x.reshape(-1, shape[-1]), w)
    return y.view(*shape[:-1], w.shape[0])
