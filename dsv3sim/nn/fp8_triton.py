"""Triton kernels of the grouped, block-scaled FP8 expert path (DeepSeek-V3 §3.3; the CPU twin is nn/fp8.py).

Imported only on CUDA and only when Triton is installed (``dsv3sim.nn.fp8_experts.triton_ok``): the package and
its default tests never import this module. Operand tiles travel by the tensor-memory accelerator (TMA
descriptors; out-of-bounds reads are zeros, so a reduction dim K that is not a multiple of 128 needs no
padding); row counts of the grouped layout are multiples of 128; K and the FP8 row strides must be multiples
of 16 bytes (TMA).

Layout ("contiguous grouped", as deepseek-ai/DeepGEMM's m-grouped GEMM): the rows routed to expert e occupy
``[128 * tile_start[e], 128 * (tile_start[e] + n_tiles[e]))`` of an [M_pad, ·] buffer, the rows past an expert's
tokens are zero. So every 128-row GEMM tile belongs to one expert (``tile_expert[t]``, E for tiles past the
last expert, which the kernels fill with zeros), and every 128-token quantisation tile of the Wgrad operands
lies inside one expert.

Scales (FP32, x ~= q * s, s = amax / 448):
* row-wise 1x128 tiles of a [R, C] operand: ``s_row [C/128, R]`` (K-block major, so a GEMM tile's BM scales of
  one K block are one coalesced load);
* column-wise 128x1 tiles (128 tokens of one channel), stored with the operand transposed, qT [C, R]:
  ``s_col [R/128, C]``;
* 128x128 weight blocks of w [E, N, K]: ``s [E, N/128, K/128]``; the transposed copy qT [E, K, N] (Dgrad's B)
  has the transposed scales [E, K/128, N/128].

GEMM ``C = A @ B^T`` with FP32 promotion per 128-wide K block (V3 §3.3.2): ``acc += dot(A_blk, B_blk) *
s_a[:, None] * s_b[None, :]``, the dot itself accumulating on the tensor cores (QGMMA, ~14-bit accumulation
inside the block as the report notes). Triton waits for each block's dot before its promotion, so one program
cannot overlap the two; several programs per multiprocessor can: the default tiles (BM=64, BN=128, 4 warps,
3 stages: 164 registers, 74 KB of shared memory, 3 programs per SM) were the fastest of a sweep on the H200
(profiles/h200/fp8_layer_bench.json ``sweep_tflops``; one 128x128 program per SM: 580 TFLOP/s, the same loop
unscaled: 1000). On Hopper, Fprop / Dgrad go to nn/fp8_gluon.py, which overlaps the promotion with the next
block's MMA (``BACKEND``); Wgrad stays here (faster at its short per-expert loops).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from dsv3sim.nn.fp8_tile_order import grouped_tile

E4M3_MAX = 448.0
TILE = 128


# --- quantisers -------------------------------------------------------------------------------------------------
@triton.jit
def _emit(v, rows, cols, R, C, q_ptr, s_ptr, qt_ptr, st_ptr, pid_r, kb, ROWS: tl.constexpr, COLS: tl.constexpr,
          EVEN_C: tl.constexpr):
    """Quantise one fp32 tile v [128 rows, 128 cols] (zeros outside C): row-wise 1x128 (q [R, C] + s_row
    [C/128, R]) and, if COLS, column-wise 128x1 (qT [C, R] + s_col [R/128, C]); R is a multiple of 128."""
    cmask = cols < C  # s = amax/448, q = x * (1/s), divisions IEEE-rounded (div_rn) as torch: the same bytes
    if ROWS:
        s = tl.maximum(tl.div_rn(tl.max(tl.abs(v), axis=1), 448.0), 1e-12)
        q = tl.clamp(v * tl.div_rn(1.0, s)[:, None], -448.0, 448.0).to(tl.float8e4nv)
        qp = q_ptr + rows.to(tl.int64)[:, None] * C + cols[None, :]
        if EVEN_C:
            tl.store(qp, q)
        else:
            tl.store(qp, q, mask=cmask[None, :])
        tl.store(s_ptr + kb * R + rows, s)
    if COLS:
        sc = tl.maximum(tl.div_rn(tl.max(tl.abs(v), axis=0), 448.0), 1e-12)
        qc = tl.trans(tl.clamp(v * tl.div_rn(1.0, sc)[None, :], -448.0, 448.0)).to(tl.float8e4nv)  # [cols, rows]
        tp = qt_ptr + cols.to(tl.int64)[:, None] * R + rows[None, :]
        if EVEN_C:
            tl.store(tp, qc)
            tl.store(st_ptr + pid_r * C + cols, sc)
        else:
            tl.store(tp, qc, mask=cmask[:, None])
            tl.store(st_ptr + pid_r * C + cols, sc, mask=cmask)


@triton.jit
def _quant_kernel(x_ptr, src_ptr, q_ptr, s_ptr, qt_ptr, st_ptr, R, C, stride_x,
                  GATHER: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr, EVEN_C: tl.constexpr):
    """Row r of the output is x[src[r]] (GATHER; src < 0: a zero row) or x[r]; quantised both ways."""
    pid_r = tl.program_id(0)
    kb = tl.program_id(1)
    rows = pid_r * 128 + tl.arange(0, 128)
    cols = kb * 128 + tl.arange(0, 128)
    if GATHER:
        src = tl.load(src_ptr + rows)
        ptr = x_ptr + src.to(tl.int64)[:, None] * stride_x + cols[None, :]
        if EVEN_C:
            v = tl.load(ptr, mask=(src >= 0)[:, None], other=0.0)
        else:
            v = tl.load(ptr, mask=(src >= 0)[:, None] & (cols < C)[None, :], other=0.0)
    else:
        ptr = x_ptr + rows.to(tl.int64)[:, None] * stride_x + cols[None, :]
        if EVEN_C:
            v = tl.load(ptr)
        else:
            v = tl.load(ptr, mask=(cols < C)[None, :], other=0.0)
    _emit(v.to(tl.float32), rows, cols, R, C, q_ptr, s_ptr, qt_ptr, st_ptr, pid_r, kb, ROWS, COLS, EVEN_C)


@triton.jit
def _swiglu_quant_kernel(gu_ptr, q_ptr, s_ptr, qt_ptr, st_ptr, R, I):
    """h = silu(g) * u from gu [R, 2I] (gate | up), quantised row-wise and column-wise (fused SwiGLU + quant)."""
    pid_r = tl.program_id(0)
    kb = tl.program_id(1)
    rows = pid_r * 128 + tl.arange(0, 128)
    cols = kb * 128 + tl.arange(0, 128)
    base = gu_ptr + rows.to(tl.int64)[:, None] * (2 * I) + cols[None, :]
    g = tl.load(base).to(tl.float32)
    u = tl.load(base + I).to(tl.float32)
    h = g * tl.sigmoid(g) * u
    _emit(h, rows, cols, R, I, q_ptr, s_ptr, qt_ptr, st_ptr, pid_r, kb, True, True, True)


@triton.jit
def _swiglu_bwd_quant_kernel(gu_ptr, dh_ptr, q_ptr, s_ptr, qt_ptr, st_ptr, R, I):
    """dgu [R, 2I] from gu and dh = dL/dh: dg = dh u sig(g) (1 + g (1 - sig(g))), du = dh silu(g); both halves
    quantised row-wise (Dgrad A, 1x128 along 2I) and column-wise (Wgrad A^T, 128 tokens)."""
    pid_r = tl.program_id(0)
    kb = tl.program_id(1)
    rows = pid_r * 128 + tl.arange(0, 128)
    cols = kb * 128 + tl.arange(0, 128)
    r64 = rows.to(tl.int64)[:, None]
    g = tl.load(gu_ptr + r64 * (2 * I) + cols[None, :]).to(tl.float32)
    u = tl.load(gu_ptr + r64 * (2 * I) + I + cols[None, :]).to(tl.float32)
    dh = tl.load(dh_ptr + r64 * I + cols[None, :]).to(tl.float32)
    sg = tl.sigmoid(g)
    dg = dh * u * sg * (1.0 + g * (1.0 - sg))
    du = dh * g * sg
    _emit(dg, rows, cols, R, 2 * I, q_ptr, s_ptr, qt_ptr, st_ptr, pid_r, kb, True, True, True)
    _emit(du, rows, cols + I, R, 2 * I, q_ptr, s_ptr, qt_ptr, st_ptr, pid_r, kb + I // 128, True, True, True)


@triton.jit
def _weight_quant_kernel(w_ptr, q_ptr, s_ptr, N, K, NT, n_off, TRANS: tl.constexpr):
    """w [E, N, K] -> 128x128 blocks into q [E, NT, K] rows n_off.. and s [E, NT/128, K/128]; TRANS: the
    transposed blocks into qT [E, K, NT] columns n_off.. and sT [E, K/128, NT/128] (Dgrad's operand)."""
    e = tl.program_id(2).to(tl.int64)
    nb = tl.program_id(0)
    kb = tl.program_id(1)
    n = nb * 128 + tl.arange(0, 128)
    k = kb * 128 + tl.arange(0, 128)
    m2 = (n < N)[:, None] & (k < K)[None, :]
    v = tl.load(w_ptr + e * N * K + n.to(tl.int64)[:, None] * K + k[None, :], mask=m2, other=0.0).to(tl.float32)
    s = tl.maximum(tl.div_rn(tl.max(tl.max(tl.abs(v), axis=1), axis=0), 448.0), 1e-12)
    vs = tl.clamp(v * tl.div_rn(1.0, s), -448.0, 448.0)
    nn_ = n + n_off
    kbt = tl.cdiv(K, 128)
    nbt = tl.cdiv(NT, 128)
    if TRANS:
        tl.store(q_ptr + e * K * NT + k.to(tl.int64)[:, None] * NT + nn_[None, :], tl.trans(vs).to(tl.float8e4nv),
                 mask=(k < K)[:, None] & (n < N)[None, :])
        tl.store(s_ptr + e * kbt * nbt + kb * nbt + nb + n_off // 128, s)
    else:
        tl.store(q_ptr + e * NT * K + nn_.to(tl.int64)[:, None] * K + k[None, :], vs.to(tl.float8e4nv), mask=m2)
        tl.store(s_ptr + e * nbt * kbt + (nb + n_off // 128) * kbt + kb, s)


@triton.jit
def _weight_quant_both_kernel(w_ptr, q_ptr, s_ptr, qt_ptr, st_ptr, N, K, NT, n_off):
    """w [E, N, K] -> one 128x128 block into q [E, NT, K] rows n_off.. with s [E, NT/128, K/128], and the same
    block transposed into qT [E, K, NT] columns n_off.. with sT [E, K/128, NT/128] (Dgrad's operand), in one
    pass: the block is read from HBM once, and its transposed view a second time from L2 (the scale of a block
    and of its transpose is the same amax): 2 + 1 + 1 bytes per element instead of the two launches' 2 + 2 + 1
    + 1.
    It loads the transposed view instead of storing ``tl.trans`` of the quantised block (which wrote wrong rows
    of the transposed copy on the H200, Triton 3.6). Compiled for sm_90a and checked in Triton's interpreter
    (indices and scales), not yet run on a GPU: ``WEIGHT_QUANT_ONE_PASS`` keeps it off until
    tests/nn/test_fp8_experts_gpu.py passes with it there."""
    e = tl.program_id(2).to(tl.int64)
    nb = tl.program_id(0)
    kb = tl.program_id(1)
    n = nb * 128 + tl.arange(0, 128)
    k = kb * 128 + tl.arange(0, 128)
    base = w_ptr + e * N * K
    m2 = (n < N)[:, None] & (k < K)[None, :]
    v = tl.load(base + n.to(tl.int64)[:, None] * K + k[None, :], mask=m2, other=0.0).to(tl.float32)
    s = tl.maximum(tl.div_rn(tl.max(tl.max(tl.abs(v), axis=1), axis=0), 448.0), 1e-12)
    r = tl.div_rn(1.0, s)
    nn_ = n + n_off
    kbt = tl.cdiv(K, 128)
    nbt = tl.cdiv(NT, 128)
    tl.store(q_ptr + e * NT * K + nn_.to(tl.int64)[:, None] * K + k[None, :],
             tl.clamp(v * r, -448.0, 448.0).to(tl.float8e4nv), mask=m2)
    tl.store(s_ptr + e * nbt * kbt + (nb + n_off // 128) * kbt + kb, s)
    mt = (k < K)[:, None] & (n < N)[None, :]
    vt = tl.load(base + n.to(tl.int64)[None, :] * K + k[:, None], mask=mt, other=0.0).to(tl.float32)  # [k, n]
    tl.store(qt_ptr + e * K * NT + k.to(tl.int64)[:, None] * NT + nn_[None, :],
             tl.clamp(vt * r, -448.0, 448.0).to(tl.float8e4nv), mask=mt)
    tl.store(st_ptr + e * kbt * nbt + kb * nbt + nb + n_off // 128, s)


# --- grouped GEMMs ----------------------------------------------------------------------------------------------
@triton.jit
def _promote(acc, d, sa_ptr, sb_ptr, rmask, cmask):
    s_a = tl.load(sa_ptr, mask=rmask, other=0.0)
    s_b = tl.load(sb_ptr, mask=cmask, other=0.0)
    return acc + d * (s_a[:, None] * s_b[None, :])


@triton.jit
def _grouped_gemm_kernel(a_desc, sa_ptr, b_desc, sb_ptr, c_ptr, tile_expert_ptr, M, N, K, E,
                         BM: tl.constexpr, BN: tl.constexpr, GROUP_M: tl.constexpr, SCALED: tl.constexpr):
    """C [M, N] = A [M, K] @ B[e] [N, K]^T for each BM-row tile, e = tile_expert[row // 128] (a_desc over A,
    b_desc over B viewed as [E*N, K]). A 1x128-scaled (sa [K/128, M]), B 128x128-scaled (sb [E, N/128, K/128]).
    Tiles past the experts are written as zeros. SCALED=False: plain FP8 dot (a ceiling probe)."""
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BM, BN, GROUP_M)
    e = tl.load(tile_expert_ptr + (pid_m * BM) // 128)
    m0 = pid_m * BM
    n0 = pid_n * BN
    rows = m0 + tl.arange(0, BM)
    cols = n0 + tl.arange(0, BN)
    rmask = rows < M
    cmask = cols < N
    kbt = tl.cdiv(K, 128)
    n_k = tl.where(e < E, kbt, 0)
    e_ = tl.minimum(e, E - 1)
    sb_base = sb_ptr + e_.to(tl.int64) * tl.cdiv(N, 128) * kbt + (cols // 128) * kbt
    brow = e_ * N + n0
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for kb in range(n_k):
        a = a_desc.load([m0, kb * 128])
        b = b_desc.load([brow, kb * 128])
        if SCALED:
            acc = _promote(acc, tl.dot(a, b.T), sa_ptr + kb * M + rows, sb_base + kb, rmask, cmask)
        else:
            acc = tl.dot(a, b.T, acc)
    c = c_ptr + rows.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=rmask[:, None] & cmask[None, :])


@triton.jit
def _grouped_wgrad_kernel(a_desc, sa_ptr, b_desc, sb_ptr, c_ptr, tile_start_ptr, n_tiles_ptr, N, K, a_row0, NA,
                          BM: tl.constexpr, BN: tl.constexpr):
    """dW[e] [N, K] = A^T[a_row0 + n, tokens of e] . B^T[k, tokens of e] (both token-contiguous FP8, a_desc over
    A^T [NA, M], b_desc over B^T [K, M]) with 128-token column-wise scales (sa [M/128, NA], sb [M/128, K]);
    c [E, N, K]. An expert without tokens gets zeros."""
    pid = tl.program_id(0)
    e = tl.program_id(1)
    n_k_tiles = tl.cdiv(K, BN)
    pid_n = pid // n_k_tiles
    pid_k = pid % n_k_tiles
    t0 = tl.load(tile_start_ptr + e)
    nt = tl.load(n_tiles_ptr + e)
    rn = pid_n * BM + tl.arange(0, BM)
    ck = pid_k * BN + tl.arange(0, BN)
    nmask = rn < N
    kmask = ck < K
    arow = a_row0 + pid_n * BM
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for j in range(nt):
        t = t0 + j
        d = tl.dot(a_desc.load([arow, t * 128]), b_desc.load([pid_k * BN, t * 128]).T)
        acc = _promote(acc, d, sa_ptr + t * NA + a_row0 + rn, sb_ptr + t * K + ck, nmask, kmask)
    c = c_ptr + e.to(tl.int64) * N * K + rn.to(tl.int64)[:, None] * K + ck[None, :]
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=nmask[:, None] & kmask[None, :])


# --- launchers ----------------------------------------------------------------------------------------------------
FP8 = torch.float8_e4m3fn
GEMM_CFG = {"BM": 64, "BN": 128, "GROUP_M": 16, "num_warps": 4, "num_stages": 3, "scaled": True, "maxnreg": None}
WGRAD_CFG = {"BM": 64, "BN": 128, "num_warps": 4, "num_stages": 3, "maxnreg": None}
LAST: dict = {}  # the last compiled GEMM / Wgrad kernel (registers, spills, shared memory: the benchmark reads it)
# Which kernels run the GEMMs: "auto" = Fprop / Dgrad on the Gluon kernel of nn/fp8_gluon.py on Hopper (promotion
# overlapped with the next block's MMA: 918-1121 vs 743-824 TFLOP/s at EP32's shapes) and Wgrad on the Triton
# kernel here (its short per-expert token loops run better at 3 programs per SM: 783-795 vs 531-549 TFLOP/s;
# profiles/h200/fp8_gluon_probe.json); "triton" / "gluon" force one for all three (benchmarks, tests).
BACKEND = "auto"
# The weights' two FP8 copies from one launch per weight (_weight_quant_both_kernel) instead of two: off until it
# has passed the GPU tests on the device.
WEIGHT_QUANT_ONE_PASS = False


def _gluon(dev: torch.device):
    """nn/fp8_gluon.py if it runs on ``dev`` under BACKEND, else None."""
    if BACKEND == "triton":
        return None
    try:
        from dsv3sim.nn import fp8_gluon as G
    except ImportError:
        if BACKEND == "gluon":
            raise
        return None
    ok = G.available(dev.index if dev.index is not None else torch.cuda.current_device())
    if BACKEND == "gluon" and not ok:
        raise RuntimeError("fp8_triton.BACKEND = 'gluon' needs a compute capability 9.x GPU")
    return G if ok else None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _launch(cfg: dict) -> dict:
    out = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
    if cfg.get("maxnreg"):
        out["maxnreg"] = cfg["maxnreg"]
    return out


def _check_tma(name: str, t: torch.Tensor) -> None:
    if t.shape[-1] * t.element_size() % 16 or t.stride(-1) != 1:
        raise ValueError(f"{name}: rows of {t.shape[-1]} x {t.element_size()} B must be contiguous multiples of "
                         "16 bytes (TMA)")


def quant(x: torch.Tensor, *, src: torch.Tensor | None = None, rows_out: int | None = None, rowwise: bool = True,
          colwise: bool = False):
    """x [R, C] (or rows x[src[r]], src < 0 -> zeros, R = rows_out) -> (q [R, C], s_row [C/128, R], qT [C, R],
    s_col [R/128, C]); parts not asked for are None. R must be a multiple of 128."""
    r = rows_out if src is not None else x.shape[0]
    c = x.shape[1]
    if r % TILE:
        raise ValueError(f"quant: rows ({r}) must be a multiple of {TILE}")
    dev = x.device
    q = torch.empty(r, c, dtype=FP8, device=dev) if rowwise else None
    s = torch.empty(_cdiv(c, TILE), r, dtype=torch.float32, device=dev) if rowwise else None
    qt = torch.empty(c, r, dtype=FP8, device=dev) if colwise else None
    st = torch.empty(r // TILE, c, dtype=torch.float32, device=dev) if colwise else None
    d = x  # placeholder pointer for the parts not written
    _quant_kernel[(r // TILE, _cdiv(c, TILE))](
        x, src if src is not None else d, q if rowwise else d, s if rowwise else d, qt if colwise else d,
        st if colwise else d, r, c, x.stride(0), GATHER=src is not None, ROWS=rowwise, COLS=colwise,
        EVEN_C=c % TILE == 0, num_warps=8)
    return q, s, qt, st


def _quant_buffers(r: int, c: int, dev: torch.device):
    """Outputs of a fused quantiser of an [R, C] tensor: row-wise 1x128 (q [R, C], s [C/128, R]) and its transpose
    quantised along R for the weight-gradient GEMM (qT [C, R], sT [R/128, C])."""
    return (torch.empty(r, c, dtype=FP8, device=dev), torch.empty(c // TILE, r, dtype=torch.float32, device=dev),
            torch.empty(c, r, dtype=FP8, device=dev), torch.empty(r // TILE, c, dtype=torch.float32, device=dev))


def swiglu_quant(gu: torch.Tensor):
    """gu [R, 2I] -> h = silu(g) u quantised: (q [R, I], s_row [I/128, R], qT [I, R], s_col [R/128, I])."""
    r, i2 = gu.shape
    i = i2 // 2
    if r % TILE or i % TILE:
        raise ValueError(f"swiglu_quant: rows ({r}) and I ({i}) must be multiples of {TILE}")
    q, s, qt, st = _quant_buffers(r, i, gu.device)
    _swiglu_quant_kernel[(r // TILE, i // TILE)](gu.contiguous(), q, s, qt, st, r, i, num_warps=8)
    return q, s, qt, st


def swiglu_bwd_quant(gu: torch.Tensor, dh: torch.Tensor):
    """(gu [R, 2I], dh [R, I]) -> dgu quantised: (q [R, 2I], s_row [2I/128, R], qT [2I, R], s_col [R/128, 2I])."""
    r, i2 = gu.shape
    i = i2 // 2
    if r % TILE or i % TILE:
        raise ValueError(f"swiglu_bwd_quant: rows ({r}) and I ({i}) must be multiples of {TILE}")
    q, s, qt, st = _quant_buffers(r, i2, gu.device)
    _swiglu_bwd_quant_kernel[(r // TILE, i // TILE)](gu.contiguous(), dh.contiguous(), q, s, qt, st, r, i,
                                                     num_warps=8)
    return q, s, qt, st


def weight_quant(ws: list[torch.Tensor], out: tuple | None = None):
    """Stacked weights [E, N_i, K] (one operand [E, sum N_i, K]) -> (q, s [E, NT/128, K/128], qT [E, K, NT],
    sT [E, K/128, NT/128]); every N_i but the last a multiple of 128 (blocks must not straddle weights). Two
    launches per weight (the block, then its transpose: the weight read twice, 2 + 2 + 1 + 1 bytes per element),
    or one with ``WEIGHT_QUANT_ONE_PASS``. ``out``: the buffers of an earlier call on the same shapes, rewritten
    in place (the per-step re-quantisation allocates nothing; a None among them, freed by
    nn/fp8_weights.py ``drop_forward_operands``, is allocated)."""
    e, _, k = ws[0].shape
    if any(w.shape[1] % TILE for w in ws[:-1]):
        raise ValueError(f"weight_quant: stacked row counts {[w.shape[1] for w in ws]} must be multiples of {TILE}")
    nt = sum(w.shape[1] for w in ws)
    dev = ws[0].device
    shapes = ((e, nt, k), (e, _cdiv(nt, TILE), _cdiv(k, TILE)), (e, k, nt), (e, _cdiv(k, TILE), _cdiv(nt, TILE)))
    q, s, qt, st = (o if o is not None else torch.empty(sh, dtype=dt, device=dev)  # a freed buffer is made anew
                    for o, sh, dt in zip(out or (None,) * 4, shapes, (FP8, torch.float32) * 2))
    if q.shape != (e, nt, k) or qt.shape != (e, k, nt):
        raise ValueError(f"weight_quant: out buffers {tuple(q.shape)} / {tuple(qt.shape)} do not fit {(e, nt, k)}")
    off = 0
    for w in ws:
        n = w.shape[1]
        wc = w.contiguous()
        grid = (_cdiv(n, TILE), _cdiv(k, TILE), e)
        if WEIGHT_QUANT_ONE_PASS:
            _weight_quant_both_kernel[grid](wc, q, s, qt, st, n, k, nt, off, num_warps=8)
        else:
            for trans, qq, ss in ((False, q, s), (True, qt, st)):
                _weight_quant_kernel[grid](wc, qq, ss, n, k, nt, off, TRANS=trans, num_warps=8)
        off += n
    return q, s, qt, st


def grouped_gemm(a: torch.Tensor, sa: torch.Tensor, b: torch.Tensor, sb: torch.Tensor, tile_expert: torch.Tensor,
                 out_dtype: torch.dtype = torch.bfloat16, cfg: dict | None = None) -> torch.Tensor:
    """a [M, K] fp8 (sa [K/128, M]), b [E, N, K] fp8 (sb [E, N/128, K/128]) -> [M, N] (module doc)."""
    m, k = a.shape
    e, n, _ = b.shape
    _check_tma("grouped_gemm A", a)
    _check_tma("grouped_gemm B", b)
    g = _gluon(a.device) if cfg is None else None
    if g is not None and m % g.GEMM_CFG["BM"] == 0 and (n * out_dtype.itemsize) % 16 == 0:  # TMA store of C
        return g.grouped_gemm(a, sa, b, sb, tile_expert, out_dtype)
    cfg = dict(GEMM_CFG, **(cfg or {}))
    c = torch.empty(m, n, dtype=out_dtype, device=a.device)
    ad = TensorDescriptor.from_tensor(a, [cfg["BM"], TILE])
    bd = TensorDescriptor.from_tensor(b.view(e * n, k), [cfg["BN"], TILE])
    grid = (_cdiv(m, cfg["BM"]) * _cdiv(n, cfg["BN"]),)
    LAST["gemm"] = _grouped_gemm_kernel[grid](ad, sa, bd, sb, c, tile_expert, m, n, k, e, BM=cfg["BM"], BN=cfg["BN"],
                                              GROUP_M=cfg["GROUP_M"], SCALED=cfg["scaled"], **_launch(cfg))
    return c


def grouped_wgrad(at: torch.Tensor, sat: torch.Tensor, bt: torch.Tensor, sbt: torch.Tensor, tile_start: torch.Tensor,
                  n_tiles: torch.Tensor, n: int, a_row0: int = 0, out_dtype: torch.dtype = torch.bfloat16,
                  cfg: dict | None = None) -> torch.Tensor:
    """dW [E, n, K] per expert from at [NA, M] (rows a_row0..a_row0+n) and bt [K, M], token-contiguous FP8
    (module doc)."""
    na, _ = at.shape
    k = bt.shape[0]
    e = tile_start.shape[0]
    _check_tma("grouped_wgrad A^T", at)
    _check_tma("grouped_wgrad B^T", bt)
    g = _gluon(at.device) if cfg is None and BACKEND == "gluon" else None
    if g is not None:
        return g.grouped_wgrad(at, sat, bt, sbt, tile_start, n_tiles, n, a_row0, out_dtype)
    cfg = dict(WGRAD_CFG, **(cfg or {}))
    c = torch.empty(e, n, k, dtype=out_dtype, device=at.device)
    ad = TensorDescriptor.from_tensor(at, [cfg["BM"], TILE])
    bd = TensorDescriptor.from_tensor(bt, [cfg["BN"], TILE])
    grid = (_cdiv(n, cfg["BM"]) * _cdiv(k, cfg["BN"]), e)
    LAST["wgrad"] = _grouped_wgrad_kernel[grid](ad, sat, bd, sbt, c, tile_start, n_tiles, n, k, a_row0, na,
                                                BM=cfg["BM"], BN=cfg["BN"], **_launch(cfg))
    return c
