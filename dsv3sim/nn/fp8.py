"""FP8 (E4M3) block-scaled GEMMs and the FP8 linear layer, as DeepSeek-V3 trains (report §3.3).

Operands in the tile format of nn/fp8_quant.py (activations 1x128, weights 128x128, one FP32 scale per tile;
re-exported here with its quantisers); DeepSeek's HF checkpoints store the weight scale ``s`` as
``weight_scale_inv`` of shape [ceil(N/128), ceil(K/128)] (inference/kernel.py ``weight_dequant``: y = q * s).

GEMM ``C[M,N] = A[M,K] @ B[N,K]^T`` with A in 1x128 tiles and B in 128x128 blocks (or 1x128 rows, for Wgrad):
* GPU: ``torch._scaled_mm`` with block-wise scales (cuBLASLt; sm90, torch >= 2.9). Layout the op wants
  (aten ScaledBlas.cpp ``is_blockwise_1x128_scaling`` / ``_128x128``): a 1x128 scale [rows, K/128] is
  outer-dim-major (stride (1, rows)), and the quantiser writes it so (the amax reduction runs over a transposed
  view), so no call copies a scale; B's scale is passed as its transpose (a view). cuBLAS needs rows % 4 == 0
  (16-byte aligned scale columns; seen on the H200 by the profiler): the GPU quantiser pads rows with zeros to a
  multiple of 4 and K to a multiple of 128 and the output is cropped, so ragged expert batches and Wgrad's
  K = tokens stay on the FP8 path. A one-time probe per (device, B kind, ragged N) checks the result against
  the emulation; if it fails the GEMM dequantises to BF16 (counted in ``FALLBACKS``).
* Weights are quantised once per value, in nn/fp8_weights.py's cache (``weight_operands``, the "torch" layout:
  (q, s) and the transposed copy Dgrad needs), re-quantised in place once per optimizer step
  (``requantize_weights``). Several weights multiplying the same input (gate and up projections) are one
  [sum N, K] operand: one GEMM per direction instead of one per weight.
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

from dsv3sim.nn.fp8_quant import E4M3_MAX as E4M3_MAX
from dsv3sim.nn.fp8_quant import FP8, TILE, _ceil, _pad_cols, dequantize, quantize_1x128
from dsv3sim.nn.fp8_quant import quantize_128x128 as quantize_128x128
from dsv3sim.nn.fp8_weights import clear_weight_cache as clear_weight_cache
from dsv3sim.nn.fp8_weights import requantize_weights as requantize_weights
from dsv3sim.nn.fp8_weights import weight_operands

ROW_ALIGN = 4  # cuBLAS block-scaled FP8: rows % 4 == 0 (outer-dim-major scale columns 16-byte aligned)
# cuBLAS (torch 2.11 + CUDA 13, H200) reads a 128x128 B-scale [N/128, K/128] with its row length rounded up to a
# multiple of 4 blocks, while torch's _scaled_mm insists on the exact row length: with K/128 % 4 != 0 the result
# was garbage (relative error 70-220) or an illegal address (benchmarks/probe_fp8_scale_layout.out.txt). The
# same 16-byte rule as ROW_ALIGN, on the other scale tensor. So such GEMMs are zero-padded along K.
SCALE_K_ALIGN = 4

_GPU_OK: dict[tuple[str, bool, bool], bool] = {}  # probe cache per (device, B block-scaled, ragged N)
FALLBACKS = {"dequant_bf16": 0, "dgrad_dequant_bf16": 0}  # GPU GEMMs that left the FP8 path (the bench reports it)


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


def _outer_major(s: torch.Tensor) -> torch.Tensor:
    return s if s.shape[0] <= 1 or s.stride(0) == 1 and (s.shape[1] <= 1 or s.stride(1) == s.shape[0]) \
        else s.t().contiguous().t()


def _pad_k_blocks(aq, sa, bq, sb) -> tuple:
    """Zero-pad the reduction dim to a multiple of ``SCALE_K_ALIGN`` 128-blocks (see SCALE_K_ALIGN): FP8 zeros in
    both operands, scale 1 for the new blocks; the products of the padding are exactly 0."""
    m, k = aq.shape
    n = bq.shape[0]
    kb = k // TILE
    kb4 = _ceil(kb, SCALE_K_ALIGN) * SCALE_K_ALIGN
    a2 = torch.zeros(m, kb4 * TILE, dtype=FP8, device=aq.device)
    a2[:, :k] = aq
    b2 = torch.zeros(n, kb4 * TILE, dtype=FP8, device=bq.device)
    b2[:, :k] = bq
    sa2 = torch.ones(kb4, m, device=sa.device).t()  # outer-dim-major [M, kb4]
    sa2[:, :kb] = sa
    sb2 = torch.ones(sb.shape[0], kb4, device=sb.device)
    sb2[:, :kb] = sb
    return a2, sa2, b2, sb2


def _scaled_mm(aq, sa, bq, sb, b_block: bool, out_dtype) -> torch.Tensor:
    """torch._scaled_mm on block-scaled operands. No copies when the scales come from this module's
    quantisers (sa outer-dim-major; sb row-major [N/128, K/128] for 128x128 or outer-dim-major [N, K/128]),
    except that a 128x128-scaled B with K/128 not a multiple of SCALE_K_ALIGN is zero-padded along K first."""
    if b_block and (aq.shape[1] // TILE) % SCALE_K_ALIGN:
        aq, sa, bq, sb = _pad_k_blocks(aq, sa, bq, sb)
    sa_ = _outer_major(sa)
    sb_ = (sb.contiguous() if b_block else _outer_major(sb)).t()  # [K/128, N/128] or [K/128, N]
    out = torch._scaled_mm(aq, bq.t(), sa_, sb_, out_dtype=torch.bfloat16)  # block-scaled cuBLASLt writes BF16
    return out if out_dtype == torch.bfloat16 else out.to(out_dtype)


def prepare_scales(sa: torch.Tensor, sb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scales of a 1x128 A and a 128x128 B laid out as torch._scaled_mm reads them, for a timed raw call
    ``torch._scaled_mm(aq, bq.t(), sa_, sb_)`` that copies nothing (the profiler's). cuBLAS reads each B-scale
    row rounded up to SCALE_K_ALIGN blocks: the storage gets that slack so the kernel never reads past the
    allocation (the values read past a row are the next row's; the kernel and its time are the same)."""
    nb, kb = sb.shape
    buf = torch.ones(nb * kb + SCALE_K_ALIGN * nb, device=sb.device, dtype=sb.dtype)
    sb_c = buf[: nb * kb].view(nb, kb)
    sb_c.copy_(sb)
    return _outer_major(sa), sb_c.t()


def gpu_blockwise_ok(device: torch.device, b_block: bool, ragged: bool = False) -> bool:
    """Whether _scaled_mm's block-wise path runs here and agrees with the emulation (probed once);
    ``ragged``: B's rows not a multiple of 128 (a partial last 128x128 block)."""
    key = (str(device), b_block, ragged)
    if key not in _GPU_OK:
        ok = False
        try:
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(252, 512, device=device, generator=g)  # 252: rows a multiple of 4, not of 128
            w = torch.randn(320 if ragged else 384, 512, device=device, generator=g)
            aq, sa = quantize_1x128(x)
            bq, sb = quantize_128x128(w) if b_block else quantize_1x128(w)
            out = _scaled_mm(aq, sa, bq, sb, b_block, torch.float32)
            ref = gemm_emulated(aq, sa, bq, sb, b_block=b_block)
            ok = bool(((out - ref).norm() / ref.norm()).item() < 1e-2)
        except (RuntimeError, TypeError, ValueError):
            ok = False
        _GPU_OK[key] = ok
    return _GPU_OK[key]


def gpu_path(x: torch.Tensor, k: int, n: int, b_block: bool) -> bool:
    """Whether a GEMM with reduction dim k and n output columns runs as FP8 _scaled_mm on x's device."""
    return (x.is_cuda and k % TILE == 0 and n % 16 == 0
            and gpu_blockwise_ok(x.device, b_block, ragged=b_block and n % TILE != 0))


def fp8_gemm(aq, sa, bq, sb, *, b_block: bool, out_dtype: torch.dtype) -> torch.Tensor:
    """Block-scaled FP8 GEMM: _scaled_mm on a capable GPU (operands from ``quantize_1x128(..., crop=False)``),
    else the emulation (CPU) or a dequantised BF16 GEMM (a GPU shape cuBLASLt refuses)."""
    k, n = aq.shape[1], bq.shape[0]
    if aq.is_cuda:
        if aq.shape[0] % ROW_ALIGN == 0 and bq.shape[1] == k and gpu_path(aq, k, n, b_block):
            try:
                return _scaled_mm(aq, sa, bq, sb, b_block, out_dtype)
            except RuntimeError:
                pass
        FALLBACKS["dequant_bf16"] += 1
        a = dequantize(aq, sa, 1).to(torch.bfloat16)
        b = dequantize(bq, sb, TILE if b_block else 1).to(torch.bfloat16)
        return (a @ b.t()).to(out_dtype)
    return gemm_emulated(aq, sa, bq, sb, b_block=b_block, out_dtype=out_dtype)


# Dgrad on _scaled_mm: its reduction dim is the layer's N (384, kv_a_proj's 576 -> 640), which needs the K padding of
# SCALE_K_ALIGN in _scaled_mm. False restores the dequantised-BF16 Dgrad (same FP8 operands).
DGRAD_ON_SCALED_MM = True


def requant_bytes_per_element(device: torch.device) -> float:
    """HBM bytes per weight element of one re-quantisation on ``device`` (both FP8 copies, scales neglected): the
    grouped kernels' two launches read the BF16 weight twice (2 + 2 + 1 + 1), their one-pass kernel once
    (2 + 1 + 1, what ``workload.optimizer_step`` assumes of production); this module's torch path quantises the
    GEMM copy (2 + 1) and the transposed one from it (1 + 1; nn/fp8_weights.py)."""
    from dsv3sim.nn import fp8_experts

    if fp8_experts.triton_ok(torch.empty(0, device=device), TILE, TILE):
        from dsv3sim.nn import fp8_triton

        return 4.0 if fp8_triton.WEIGHT_QUANT_ONE_PASS else 6.0
    return 5.0


# On a GPU with Triton, fp8_linear runs on the grouped kernels (nn/fp8_triton_linear.py); False keeps the
# _scaled_mm path below (comparisons, and GPUs without Triton take it anyway).
TRITON_LINEAR = True


def _act(x: torch.Tensor, gpu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return quantize_1x128(x, row_align=ROW_ALIGN, crop=False) if gpu else quantize_1x128(x)


class _FP8Linear(torch.autograd.Function):
    """y = x [W_1; W_2; ...]^T with the three GEMMs of a linear layer in FP8 (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        m, k = x.shape
        ent = weight_operands(ws)
        n = ent.q.shape[0]
        gpu = gpu_path(x, k, n, True)
        aq, sa = _act(x, gpu)
        ctx.save_for_backward(x)
        ctx.ent, ctx.splits, ctx.w_dtype = ent, [w.shape[0] for w in ws], ws[0].dtype
        return fp8_gemm(aq, sa, ent.q, ent.s, b_block=True, out_dtype=x.dtype)[:m]  # Fprop

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        ent = ctx.ent
        m, k = x.shape
        n = dy.shape[1]
        dx = None
        dws = [None] * len(ctx.splits)
        if ctx.needs_input_grad[0]:  # Dgrad: dx[M,K] = dy[M,N] @ W[N,K]; W^T keeps its 128x128 blocks
            wqt, swt = ent.transposed()
            if dy.is_cuda and not DGRAD_ON_SCALED_MM:
                # Same FP8 operands, dequantised and multiplied in BF16 (see DGRAD_ON_SCALED_MM).
                FALLBACKS["dgrad_dequant_bf16"] += 1
                gq, sg = quantize_1x128(dy)
                a = dequantize(gq, sg, 1).to(torch.bfloat16)
                b = dequantize(wqt[:, :n], swt, TILE).to(torch.bfloat16)
                dx = (a @ b.t()).to(x.dtype)
            else:
                gpu = gpu_path(dy, wqt.shape[1], k, True)
                gq, sg = _act(dy, gpu)
                wqt = wqt if gpu else wqt[:, :n]
                dx = fp8_gemm(gq, sg, wqt, swt, b_block=True, out_dtype=x.dtype)[:m]
        if any(ctx.needs_input_grad[1:]):  # Wgrad: dW[N,K] = dy^T[N,M] @ x[M,K], both tiled along M (128x1)
            gpu = gpu_path(dy, TILE, k, False)  # K = tokens, zero-padded to a multiple of 128 on the GPU path
            gq, sg = _act(dy.t(), gpu)
            xq, sx = _act(x.t(), gpu)
            dw = fp8_gemm(gq, sg, xq, sx, b_block=False, out_dtype=ctx.w_dtype)[:n]
            dws = list(dw.split(ctx.splits, 0)) if len(ctx.splits) > 1 else [dw]
            dws = [d if need else None for d, need in zip(dws, ctx.needs_input_grad[1:])]
        return (dx, *dws)


def fp8_linear(x: torch.Tensor, w: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
    """x[..., K] @ w[N, K]^T through FP8 Fprop/Dgrad/Wgrad. ``w`` may be several weights [N_i, K] sharing the
    input (gate and up projections): one GEMM each way, output [..., sum N_i] in their order."""
    ws = tuple(w) if isinstance(w, (tuple, list)) else (w,)
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if x.is_cuda and TRITON_LINEAR:
        from dsv3sim.nn import fp8_triton_linear as TL

        if TL.supported(x2, shape[-1], [w.shape[0] for w in ws]):
            y = TL.linear(x2, ws)
            return y.view(*shape[:-1], y.shape[-1])
    y = _FP8Linear.apply(x2, *ws)
    return y.view(*shape[:-1], y.shape[-1])
