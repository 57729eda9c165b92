"""FP8 (E4M3) fine-grained quantisation and block-scaled GEMM, as DeepSeek-V3 trains (report §3.3.2).

Activations: 1x128 tiles (per token, per 128 channels); weights: 128x128 blocks; one FP32 scale per tile,
scale = amax / 448 (E4M3 max). The GEMM multiplies FP8 operands with FP32 dequantisation scales and writes
BF16: ``C[M,N] = (A[M,K] * sa) @ (W[N,K] * sw)^T``.

GEMM kernel: ``torch._scaled_mm`` with (BlockWise1x128, BlockWise128x128) scales, which on sm90 and
torch >= 2.9 dispatches to cuBLAS's block-scaled FP8 GEMM. The scale-tensor memory layout it wants has
changed between releases, so ``scaled_mm_blockwise`` probes the layouts once and keeps the first one whose
result matches a dequantised reference. On CPU (no FP8 GEMM) ``emulate=True`` dequantises to BF16.
"""

from __future__ import annotations

import torch

E4M3_MAX = 448.0
BLOCK = 128

_LAYOUT: dict[str, tuple[bool, bool] | None] = {}  # probed layout per device type (cache, not model state)


def quantize_1x128(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x[M,K] -> (fp8 [M,K], fp32 scale [M, ceil(K/128)]); scale = amax/448 per 1x128 tile."""
    m, k = x.shape
    k_pad = -(-k // BLOCK) * BLOCK  # ragged last tile (tiny configs): zero-padded, cropped after
    xf = torch.nn.functional.pad(x.float(), (0, k_pad - k)) if k_pad != k else x.float()
    xt = xf.view(m, k_pad // BLOCK, BLOCK)
    amax = xt.abs().amax(dim=-1).clamp_min(1e-12)  # [M, ceil(K/128)]
    scale = amax / E4M3_MAX
    q = (xt / scale.unsqueeze(-1)).to(torch.float8_e4m3fn).view(m, k_pad)
    return (q[:, :k].contiguous() if k_pad != k else q), scale


def quantize_128x128(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w[N,K] -> (fp8 [N,K], fp32 scale [ceil(N/128), ceil(K/128)])."""
    n, k = w.shape
    n_pad, k_pad = -(-n // BLOCK) * BLOCK, -(-k // BLOCK) * BLOCK  # ragged edge blocks (e.g. N = 576)
    if (n_pad, k_pad) != (n, k):
        w = torch.nn.functional.pad(w, (0, k_pad - k, 0, n_pad - n))
    wt = w.view(n_pad // BLOCK, BLOCK, k_pad // BLOCK, BLOCK).float()
    amax = wt.abs().amax(dim=(1, 3)).clamp_min(1e-12)  # [ceil(N/128), ceil(K/128)]
    scale = amax / E4M3_MAX
    q = (wt / scale[:, None, :, None]).to(torch.float8_e4m3fn).view(n_pad, k_pad)[:n, :k].contiguous()
    return q, scale


def dequant(q: torch.Tensor, scale: torch.Tensor, block_rows: int) -> torch.Tensor:
    """Inverse of the quantisers (block_rows = 1 for 1x128, 128 for 128x128)."""
    r, k = q.shape
    s = scale.repeat_interleave(block_rows, 0)[:r].repeat_interleave(BLOCK, 1)[:, :k]
    return q.float() * s


def _call(aq, sa, wq, sw, layout: tuple[bool, bool]) -> torch.Tensor:
    a_outer, b_outer = layout
    sa_ = sa.t().contiguous().t() if a_outer else sa.contiguous()
    swt = sw.t()  # [K/128, N/128]
    sw_ = swt.contiguous() if not b_outer else swt.t().contiguous().t()
    return torch._scaled_mm(aq, wq.t(), sa_, sw_, out_dtype=torch.bfloat16)


def probe_layout(device: str) -> tuple[bool, bool] | None:
    """Find a scale layout _scaled_mm accepts and computes correctly with; None if block scaling is absent."""
    if device in _LAYOUT:
        return _LAYOUT[device]
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(256, 512, device=device, generator=g, dtype=torch.bfloat16)
    w = torch.randn(384, 512, device=device, generator=g, dtype=torch.bfloat16)
    aq, sa = quantize_1x128(x)
    wq, sw = quantize_128x128(w)
    ref = dequant(aq, sa, 1) @ dequant(wq, sw, BLOCK).t()
    found = None
    for layout in ((True, False), (False, False), (True, True), (False, True)):
        try:
            out = _call(aq, sa, wq, sw, layout).float()
        except Exception:  # noqa: BLE001, S112 - this layout is refused; try the next
            continue
        err = ((out - ref).norm() / ref.norm()).item()
        if err < 2e-2:
            found = layout
            break
    _LAYOUT[device] = found
    return found


def scaled_mm_blockwise(aq, sa, wq, sw, *, emulate: bool = False) -> torch.Tensor:
    """C[M,N] bf16 from fp8 A[M,K] (1x128 scales) and fp8 W[N,K] (128x128 scales)."""
    if emulate:
        return (dequant(aq, sa, 1).to(torch.bfloat16) @ dequant(wq, sw, BLOCK).to(torch.bfloat16).t())
    layout = probe_layout(aq.device.type)
    if layout is None:
        raise RuntimeError("torch._scaled_mm has no block-wise (1x128, 128x128) FP8 path on this device/torch")
    return _call(aq, sa, wq, sw, layout)


def prepare_scales(sa: torch.Tensor, sw: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-arrange scales in the probed layout so the timed call does no copies."""
    layout = probe_layout(device)
    a_outer, b_outer = layout
    sa_ = sa.t().contiguous().t() if a_outer else sa.contiguous()
    swt = sw.t()
    if b_outer:
        # cuBLAS reads each scale row rounded up to 4 blocks (nn/fp8.py SCALE_K_ALIGN): give the storage that
        # slack so the timed kernel never reads past the allocation (4 shapes crashed the H200 run without it).
        # Timing only: the values read past a row are the next row's, the kernel and its time are the same.
        nb, kb = sw.shape
        buf = torch.ones(nb * kb + 4 * nb, device=sw.device, dtype=sw.dtype)
        sw_c = buf[: nb * kb].view(nb, kb)
        sw_c.copy_(sw)
        sw_ = sw_c.t()
    else:
        sw_ = swt.contiguous()
    return sa_, sw_
