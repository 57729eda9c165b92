"""Hopper (sm90) Gluon kernels of the grouped block-scaled FP8 GEMMs: the FP32 promotion of K block k runs on
the CUDA cores while the tensor cores compute block k+1 (DeepSeek-V3 §3.3.2, "increasing accumulation precision";
the overlap DeepGEMM gets from its warpgroup schedule).

Same operands, layouts and results as the Triton kernels of nn/fp8_triton.py (module doc there): ``grouped_gemm``
(Fprop / Dgrad, C = A B[e]^T, A 1x128-scaled, B 128x128-scaled) and ``grouped_wgrad`` (dW[e] = A^T B over the
expert's 128-token tiles, both 128x1-scaled). Imported only on a CUDA device of compute capability 9.x with
Triton's Gluon (``available``).

Why Gluon: in Triton's ``tl.dot`` form each block's dot is awaited before its promotion (``acc += dot * s``), so
the tensor cores idle while the FP32 fused multiply-adds run. Here the main loop issues the asynchronous
warpgroup MMA of block k into one register accumulator (``use_acc=False``: a fresh partial sum), waits only for
block k-1's MMA (``warpgroup_mma_wait(1)``), and promotes that partial sum, ``acc += d_{k-1} s_a s_b``, while
block k's MMA runs. Two partial-sum buffers alternate (X, Y; the loop is unrolled by two so each buffer keeps its
registers), a third holds the FP32 accumulator: 3 x 64 registers per thread for a 128x128 tile on 8 warps.
Operand tiles arrive by TMA into a ring of STAGES shared-memory slots, one mbarrier each: blocks 0..STAGES-1
before the loop, then the slot of block k-1 is refilled (block k-1+STAGES) as soon as that block's MMA has
retired (a CTA barrier before the copy makes that so for both warpgroups).
"""

from __future__ import annotations

import functools

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_init,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from dsv3sim.nn.fp8_tile_order import grouped_tile

TILE = 128
FP8 = torch.float8_e4m3fn
GEMM_CFG = {"BM": 128, "BN": 128, "GROUP_M": 8, "STAGES": 4, "num_warps": 8}
WGRAD_CFG = {"BM": 128, "BN": 128, "STAGES": 4, "num_warps": 8}
LAST: dict = {}


@functools.cache
def available(device_index: int) -> bool:
    """Gluon's Hopper path runs on compute capability 9.x (wgmma); elsewhere nn/fp8_triton.py's kernels run."""
    return torch.cuda.get_device_capability(device_index)[0] == 9


# --- the pipelined, promotion-overlapped main loop ---------------------------------------------------------------
@gluon.jit
def _load(a_desc, b_desc, a_s, b_s, bars, blk, n_blk, a_row, b_row, k_base, STAGES: gl.constexpr):
    """TMA of K block ``blk`` (tokens or channels from k_base + 128 blk) into slot blk % STAGES (if blk < n_blk)."""
    slot = blk % STAGES
    pred = blk < n_blk
    bar = bars.index(slot)
    mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(a_desc, [a_row, k_base + blk * 128], bar, a_s.index(slot), pred=pred)
    tma.async_copy_global_to_shared(b_desc, [b_row, k_base + blk * 128], bar, b_s.index(slot), pred=pred)


@gluon.jit
def _issue(a_s, b_s, bars, blk, d, STAGES: gl.constexpr):
    """Wait for block blk's tiles, start its MMA into d (overwritten: use_acc=False), asynchronously."""
    slot = blk % STAGES
    mbarrier.wait(bars.index(slot), (blk // STAGES) & 1)
    return warpgroup_mma(a_s.index(slot), b_s.index(slot).permute((1, 0)), d, use_acc=False, is_async=True)


@gluon.jit
def _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, blk):
    """Row scales of block blk times the tile's one B scale (Fprop / Dgrad: BN = 128, one 128x128 block): [BM]."""
    return gl.load(sa_ptr + blk * sa_stride + sa_off) * gl.load(sb_ptr + blk * sb_stride + sb_off)


@gluon.jit
def _promote(acc, d, s, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, blk, COL_SB: gl.constexpr):
    """acc + d s_a s_b: s = the prefetched [BM] product, or (COL_SB, Wgrad: a [BN] scale per column) s_a and s_b
    loaded here, so the two [BN] vectors of the blocks in flight never share the registers."""
    if COL_SB:
        s_a = gl.load(sa_ptr + blk * sa_stride + sa_off)
        s_b = gl.load(sb_ptr + blk * sb_stride + sb_off)
        return acc + (d * s_a[:, None]) * s_b[None, :]
    else:
        return acc + d * s[:, None]


@gluon.jit
def _fence(acc):
    """Pin the promotion before the next MMA is issued: the values pass through a wgmma wait (one group may stay in
    flight, so it returns at once), which the compiler keeps in order with the MMA issue. Without it the promotion's
    FMAs sink below the issue, the buffer being promoted and the one being issued into are live together, the
    loop-carried in-flight buffer needs register copies, and ptxas serialises every wgmma (C7514)."""
    return warpgroup_mma_wait(num_outstanding=1, deps=(acc, ))


@gluon.jit
def _mainloop(a_desc, b_desc, a_row, b_row, k_base, n_blk, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off,
              layout: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
              COL_SB: gl.constexpr, OVERLAP: gl.constexpr):
    """sum over the n_blk K blocks of (A_blk B_blk^T) s_a s_b: the shared-memory ring and its barriers around
    ``_overlapped`` (block k's promotion under block k+1's MMA) or ``_serial`` (Triton's schedule)."""
    a_s = gl.allocate_shared_memory(a_desc.dtype, [STAGES, BM, 128], a_desc.layout)
    b_s = gl.allocate_shared_memory(b_desc.dtype, [STAGES, BN, 128], b_desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(bars.index(i), count=1)
    for i in gl.static_range(STAGES):
        _load(a_desc, b_desc, a_s, b_s, bars, i, n_blk, a_row, b_row, k_base, STAGES)
    acc = gl.zeros([BM, BN], gl.float32, layout)
    if n_blk > 0:
        if OVERLAP:
            acc = _overlapped(acc, a_desc, b_desc, a_s, b_s, bars, a_row, b_row, k_base, n_blk, sa_ptr, sa_stride,
                              sa_off, sb_ptr, sb_stride, sb_off, layout, BM, BN, STAGES, COL_SB)
        else:
            acc = _serial(acc, a_desc, b_desc, a_s, b_s, bars, a_row, b_row, k_base, n_blk, sa_ptr, sa_stride,
                          sa_off, sb_ptr, sb_stride, sb_off, layout, BM, BN, STAGES, COL_SB)
    for i in gl.static_range(STAGES):
        mbarrier.invalidate(bars.index(i))
    return acc


@gluon.jit
def _overlapped(acc, a_desc, b_desc, a_s, b_s, bars, a_row, b_row, k_base, n_blk, sa_ptr, sa_stride, sa_off, sb_ptr,
                sb_stride, sb_off, layout: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
                COL_SB: gl.constexpr):
    """Block 0 goes to buffer x, then pairs (odd block -> y, even block -> x), then the odd one out; each block's
    promotion runs while the next block's MMA is in flight."""
    row_l: gl.constexpr = gl.SliceLayout(1, layout)
    x = _issue(a_s, b_s, bars, 0, warpgroup_mma_init(gl.zeros([BM, BN], gl.float32, layout)), STAGES)
    y = warpgroup_mma_init(gl.zeros([BM, BN], gl.float32, layout))
    sx = gl.zeros([BM], gl.float32, row_l)
    sy = gl.zeros([BM], gl.float32, row_l)
    if not COL_SB:
        sx = _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, 0)
    for p in range((n_blk - 1) // 2):
        b = 2 * p + 1
        y = _issue(a_s, b_s, bars, b, y, STAGES)
        if not COL_SB:
            sy = _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, b)
        xv = warpgroup_mma_wait(num_outstanding=1, deps=(x, ))
        acc = _promote(acc, xv, sx, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, b - 1, COL_SB)
        acc = _fence(acc)
        _load(a_desc, b_desc, a_s, b_s, bars, b - 1 + STAGES, n_blk, a_row, b_row, k_base, STAGES)
        x = _issue(a_s, b_s, bars, b + 1, warpgroup_mma_init(xv), STAGES)
        if not COL_SB:
            sx = _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, b + 1)
        yv = warpgroup_mma_wait(num_outstanding=1, deps=(y, ))
        acc = _promote(acc, yv, sy, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, b, COL_SB)
        acc = _fence(acc)
        _load(a_desc, b_desc, a_s, b_s, bars, b + STAGES, n_blk, a_row, b_row, k_base, STAGES)
        y = warpgroup_mma_init(yv)
    last = n_blk - 1
    if n_blk % 2 == 0:  # block n_blk - 1 (odd) still to go, into y
        y = _issue(a_s, b_s, bars, last, y, STAGES)
        if not COL_SB:
            sy = _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, last)
        xv = warpgroup_mma_wait(num_outstanding=1, deps=(x, ))
        acc = _promote(acc, xv, sx, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, last - 1, COL_SB)
        yv = warpgroup_mma_wait(num_outstanding=0, deps=(y, ))
        acc = _promote(acc, yv, sy, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, last, COL_SB)
    else:
        xv = warpgroup_mma_wait(num_outstanding=0, deps=(x, ))
        acc = _promote(acc, xv, sx, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, last, COL_SB)
    return acc


@gluon.jit
def _serial(acc, a_desc, b_desc, a_s, b_s, bars, a_row, b_row, k_base, n_blk, sa_ptr, sa_stride, sa_off, sb_ptr,
            sb_stride, sb_off, layout: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
            COL_SB: gl.constexpr):
    """Triton's schedule, for comparison: each block's MMA awaited before its promotion."""
    row_l: gl.constexpr = gl.SliceLayout(1, layout)
    d = gl.zeros([BM, BN], gl.float32, layout)
    s = gl.zeros([BM], gl.float32, row_l)
    for blk in range(n_blk):
        dd = _issue(a_s, b_s, bars, blk, warpgroup_mma_init(d), STAGES)
        if not COL_SB:
            s = _scale(sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, blk)
        d = warpgroup_mma_wait(num_outstanding=0, deps=(dd, ))
        acc = _promote(acc, d, s, sa_ptr, sa_stride, sa_off, sb_ptr, sb_stride, sb_off, blk, COL_SB)
        _load(a_desc, b_desc, a_s, b_s, bars, blk + STAGES, n_blk, a_row, b_row, k_base, STAGES)
    return acc


@gluon.constexpr_function
def _mma_layout(BM, BN, num_warps):
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BN, 32])


@gluon.jit
def _gemm_kernel(a_desc, sa_ptr, b_desc, sb_ptr, c_desc, tile_expert_ptr, M, N, K, E,
                 GROUP_M: gl.constexpr, STAGES: gl.constexpr, OVERLAP: gl.constexpr, num_warps: gl.constexpr):
    """C [M, N] = A [M, K] B[e]^T per BM-row tile (e = tile_expert[row // 128]; E past the experts: zeros).
    sa [K/128, M]; sb [E, N/128, K/128]; BN = 128 so one B scale per (tile, K block)."""
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BN: gl.constexpr = b_desc.block_type.shape[0]
    layout: gl.constexpr = _mma_layout(BM, BN, num_warps)
    pid_m, pid_n = grouped_tile(gl.program_id(0), M, N, BM, BN, GROUP_M)
    m0 = pid_m * BM
    n0 = pid_n * BN
    e = gl.load(tile_expert_ptr + m0 // 128)
    kbt = gl.cdiv(K, 128)
    n_blk = gl.where(e < E, kbt, 0)
    e_ = gl.minimum(e, E - 1)
    rows = m0 + gl.arange(0, BM, layout=gl.SliceLayout(1, layout))
    sb_off = e_.to(gl.int64) * gl.cdiv(N, 128) * kbt + (n0 // 128) * kbt
    acc = _mainloop(a_desc, b_desc, m0, e_ * N + n0, 0, n_blk, sa_ptr, M, rows, sb_ptr, 1, sb_off, layout, BM, BN,
                    STAGES, False, OVERLAP)
    c_s = gl.allocate_shared_memory(c_desc.dtype, [BM, BN], c_desc.layout)
    c_s.store(acc.to(c_desc.dtype))
    fence_async_shared()
    tma.async_copy_shared_to_global(c_desc, [m0, n0], c_s)
    tma.store_wait(pendings=0)


@gluon.jit
def _wgrad_kernel(a_desc, sa_ptr, b_desc, sb_ptr, c_ptr, tile_start_ptr, n_tiles_ptr, N, K, a_row0, NA,
                  STAGES: gl.constexpr, OVERLAP: gl.constexpr, EVEN_N: gl.constexpr, EVEN_K: gl.constexpr,
                  num_warps: gl.constexpr):
    """dW[e] [N, K] = A^T[a_row0 + n, tokens of e] . B^T[k, tokens of e]; sa [M/128, NA], sb [M/128, K] (128-token
    column-wise scales); c [E, N, K]; an expert without tokens gets zeros."""
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BN: gl.constexpr = b_desc.block_type.shape[0]
    layout: gl.constexpr = _mma_layout(BM, BN, num_warps)
    pid = gl.program_id(0)
    e = gl.program_id(1)
    n_k_tiles = gl.cdiv(K, BN)
    pid_n = pid // n_k_tiles
    pid_k = pid % n_k_tiles
    t0 = gl.load(tile_start_ptr + e)
    nt = gl.load(n_tiles_ptr + e)
    rn = pid_n * BM + gl.arange(0, BM, layout=gl.SliceLayout(1, layout))
    ck = pid_k * BN + gl.arange(0, BN, layout=gl.SliceLayout(0, layout))
    # scale reads stay inside the row / column ranges (out-of-range outputs are masked); with whole tiles the
    # offsets stay affine, so the [BN] scale loads use one base register and immediate offsets
    rn_c = rn if EVEN_N else gl.minimum(rn, N - 1)
    ck_c = ck if EVEN_K else gl.minimum(ck, K - 1)
    acc = _mainloop(a_desc, b_desc, a_row0 + pid_n * BM, pid_k * BN, t0 * 128, nt, sa_ptr + t0 * NA, NA,
                    a_row0 + rn_c, sb_ptr + t0 * K, K, ck_c, layout, BM, BN, STAGES, True, OVERLAP)
    c = c_ptr + e.to(gl.int64) * N * K + rn.to(gl.int64)[:, None] * K + ck[None, :]
    gl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(rn < N)[:, None] & (ck < K)[None, :])


# --- launchers ----------------------------------------------------------------------------------------------------
_GL_DTYPE = {torch.bfloat16: gl.bfloat16, torch.float32: gl.float32, torch.float16: gl.float16, FP8: gl.float8e4nv}


def _desc(t: torch.Tensor, block: list[int]) -> TensorDescriptor:
    layout = gl.NVMMASharedLayout.get_default_for(block, _GL_DTYPE[t.dtype])
    return TensorDescriptor.from_tensor(t, block, layout)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def grouped_gemm(a: torch.Tensor, sa: torch.Tensor, b: torch.Tensor, sb: torch.Tensor, tile_expert: torch.Tensor,
                 out_dtype: torch.dtype = torch.bfloat16, cfg: dict | None = None) -> torch.Tensor:
    """a [M, K] fp8 (sa [K/128, M]), b [E, N, K] fp8 (sb [E, N/128, K/128]) -> [M, N]; M a multiple of BM,
    K and N multiples of 16 (TMA)."""
    cfg = dict(GEMM_CFG, **(cfg or {}))
    m, k = a.shape
    e, n, _ = b.shape
    bm, bn = cfg["BM"], cfg["BN"]
    if m % bm or bn != TILE:
        raise ValueError(f"fp8_gluon.grouped_gemm: rows ({m}) must be a multiple of BM ({bm}); BN must be {TILE}, "
                         f"got {bn}")
    c = torch.empty(m, n, dtype=out_dtype, device=a.device)
    grid = (_cdiv(m, bm) * _cdiv(n, bn),)
    LAST["gemm"] = _gemm_kernel[grid](
        _desc(a, [bm, TILE]), sa, _desc(b.view(e * n, k), [bn, TILE]), sb, _desc(c, [bm, bn]), tile_expert, m, n,
        k, e, GROUP_M=cfg["GROUP_M"], STAGES=cfg["STAGES"], OVERLAP=cfg.get("overlap", True),
        num_warps=cfg["num_warps"])
    return c


def grouped_wgrad(at: torch.Tensor, sat: torch.Tensor, bt: torch.Tensor, sbt: torch.Tensor, tile_start: torch.Tensor,
                  n_tiles: torch.Tensor, n: int, a_row0: int = 0, out_dtype: torch.dtype = torch.bfloat16,
                  cfg: dict | None = None) -> torch.Tensor:
    """dW [E, n, K] per expert from at [NA, M] (rows a_row0..a_row0+n) and bt [K, M], token-contiguous FP8."""
    cfg = dict(WGRAD_CFG, **(cfg or {}))
    na, _ = at.shape
    k = bt.shape[0]
    e = tile_start.shape[0]
    bm, bn = cfg["BM"], cfg["BN"]
    c = torch.empty(e, n, k, dtype=out_dtype, device=at.device)
    grid = (_cdiv(n, bm) * _cdiv(k, bn), e)
    LAST["wgrad"] = _wgrad_kernel[grid](
        _desc(at, [bm, TILE]), sat, _desc(bt, [bn, TILE]), sbt, c, tile_start, n_tiles, n, k, a_row0, na,
        STAGES=cfg["STAGES"], OVERLAP=cfg.get("overlap", True), EVEN_N=n % bm == 0, EVEN_K=k % bn == 0,
        num_warps=cfg["num_warps"])
    return c
