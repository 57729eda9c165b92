"""Routed experts in FP8 on the GPU: one grouped, block-scaled GEMM per direction (DeepSeek-V3 §3.3, Fig. 6).

Legend: T tokens, k experts per token, E experts, H hidden, I moe_intermediate_size, M_pad rows of the
contiguous grouped layout (nn/fp8_triton.py): each expert's rows padded to a multiple of 128 with zero rows.

Forward (per expert e, rows of e):
  x_q, x_qT  = quant(x[src])              dispatch payload: gather + 1x128 (and 128x1 for Wgrad), one kernel
  gu         = x_q @ [Wg; Wu]_e^T          grouped FP8 GEMM, [M_pad, 2I] BF16
  h_q, h_qT  = quant(silu(g) * u)          fused SwiGLU + quantisation
  y          = h_q @ Wd_e^T                [M_pad, H] BF16
Backward:
  dy_q, dy_qT = quant(dy)
  dWd_e = dy_qT @ h_qT^T (Wgrad, 128-token tiles);  dh = dy_q @ Wd_e (Dgrad, transposed 128x128 weight blocks)
  dgu_q, dgu_qT = quant(swiglu'(gu, dh))   fused SwiGLU backward + quantisation
  dWg_e, dWu_e = dgu_qT @ x_qT^T;  dx_sorted = dgu_q @ [Wg; Wu]_e;  dx[t] = sum of its k rows
The layout is computed on the device with no host synchronisation (static M_pad = 128 (ceil(T k / 128) + E)),
so the layer can be captured in a CUDA graph. The CPU path (nn/fp8.py ``fp8_linear`` per expert, emulated)
computes the same function on the same quantisation tiles; tests/nn/test_fp8_experts_gpu.py checks the two.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch

from dsv3sim.nn import fp8_weights as W

TILE = 128
ENABLED = True


@functools.cache
def _have_triton(device_index: int) -> bool:
    return importlib.util.find_spec("triton") is not None and torch.cuda.get_device_capability(device_index) >= (8, 9)


def triton_ok(x: torch.Tensor, hidden: int, inter: int) -> bool:
    """Whether the Triton grouped FP8 path runs here: CUDA tensor, Triton importable, FP8 tensor cores (sm89+),
    dims multiples of 128. ``ENABLED = False`` forces the per-expert path (nn/fp8.py) for comparisons."""
    return (ENABLED and x.is_cuda and hidden % TILE == 0 and inter % TILE == 0
            and _have_triton(x.device.index if x.device.index is not None else torch.cuda.current_device()))


@dataclass(frozen=True, slots=True)
class Layout:
    """Contiguous grouped layout of the routed rows (module doc). All tensors on the device.

    src [M_pad] int32: source row of each padded row (-1: padding); pos [n_src] int64: padded row of each source
    row (flat token*k + slot, or the row of an already sorted input); tile_expert [M_pad/128] int32 (E past the
    last expert); tile_start, n_tiles [E] int32: each expert's first 128-row tile and its tile count."""

    src: torch.Tensor
    pos: torch.Tensor
    tile_expert: torch.Tensor
    tile_start: torch.Tensor
    n_tiles: torch.Tensor

    @property
    def rows(self) -> int:
        return self.src.shape[0]


def _layout(expert_of_sorted: torch.Tensor, sorted_to_src: torch.Tensor, counts: torch.Tensor, n_src: int,
            n_experts: int) -> Layout:
    """Rows sorted by expert (expert_of_sorted [n], their source rows sorted_to_src [n]) -> Layout."""
    dev = counts.device
    n = expert_of_sorted.shape[0]
    tiles = (counts + TILE - 1) // TILE
    tile_cum = torch.cumsum(tiles, 0)
    tile_start = tile_cum - tiles
    max_tiles = -(-n // TILE) + n_experts  # sum_e ceil(c_e/128) <= ceil(sum c_e / 128) + E - 1
    rank = torch.arange(n, device=dev) - (torch.cumsum(counts, 0) - counts)[expert_of_sorted]
    pos_sorted = tile_start[expert_of_sorted] * TILE + rank
    src = torch.full((max_tiles * TILE,), -1, dtype=torch.int32, device=dev)
    src[pos_sorted] = sorted_to_src.to(torch.int32)
    pos = torch.empty(n_src, dtype=torch.int64, device=dev)
    pos[sorted_to_src] = pos_sorted
    tile_expert = torch.searchsorted(tile_cum, torch.arange(max_tiles, device=dev), right=True).to(torch.int32)
    return Layout(src, pos, tile_expert, tile_start.to(torch.int32), tiles.to(torch.int32))


def layout_from_ids(ids: torch.Tensor, n_experts: int) -> Layout:
    """ids [T, k] expert of each (token, slot) -> Layout whose src are tokens (dispatch gathers x[src])."""
    flat = ids.reshape(-1)
    counts = torch.zeros(n_experts, dtype=torch.int64, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    order = torch.argsort(flat, stable=True)
    lay = _layout(flat[order], order, counts, flat.shape[0], n_experts)
    src = torch.where(lay.src >= 0, lay.src // ids.shape[1], lay.src)  # flat (token*k + slot) -> token
    return Layout(src, lay.pos, lay.tile_expert, lay.tile_start, lay.n_tiles)


def layout_from_counts(counts: torch.Tensor, n_rows: int) -> Layout:
    """Rows already grouped by expert (counts [E], sum = n_rows) -> Layout whose src are those rows."""
    e = counts.shape[0]
    expert_of = torch.repeat_interleave(torch.arange(e, device=counts.device), counts, output_size=n_rows)
    return _layout(expert_of, torch.arange(n_rows, device=counts.device), counts.to(torch.int64), n_rows, e)


@dataclass(frozen=True, slots=True)
class Operands:
    """The cache entries (nn/fp8_weights.py ``WeightOperand``, iterating as (q, s, qT, sT)) of the gate and up
    projections stacked, w13 = (q [E, 2I, H], s, qT [E, H, 2I], sT), and of the down projection,
    wd = (q [E, H, I], s, qT [E, I, H], sT)."""

    w13: W.WeightOperand
    wd: W.WeightOperand


def expert_operands(w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> Operands:
    """FP8 128x128 operands of the stacked experts from the one weight cache (nn/fp8_weights.py, "grouped"
    layout): quantised once per weight value, re-quantised in place by ``requantize_weights``."""
    return Operands(W.weight_operands((w_gate, w_up), W.GROUPED), W.weight_operands((w_down,), W.GROUPED))


class _FP8Experts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lay: Layout, w_gate, w_up, w_down):
        from dsv3sim.nn import fp8_triton as K

        ops = expert_operands(w_gate, w_up, w_down)
        q13, s13, qd, sd = ops.w13.q, ops.w13.s, ops.wd.q, ops.wd.s
        xq, xs, xqt, xst = K.quant(x, src=lay.src, rows_out=lay.rows, colwise=True)
        gu = K.grouped_gemm(xq, xs, q13, s13, lay.tile_expert)
        hq, hs, hqt, hst = K.swiglu_quant(gu)
        y = K.grouped_gemm(hq, hs, qd, sd, lay.tile_expert)
        ctx.save_for_backward(gu, xqt, xst, hqt, hst)
        # backward needs the transposed operands only: the forward's are left to the cache (freeable after the forward)
        ctx.lay, ctx.w_t, ctx.n_tok = lay, (ops.w13.transposed(), ops.wd.transposed()), x.shape[0]
        ctx.dtypes = (x.dtype, w_gate.dtype, w_up.dtype, w_down.dtype)
        return y

    @staticmethod
    def backward(ctx, dy):
        from dsv3sim.nn import fp8_triton as K

        gu, xqt, xst, hqt, hst = ctx.saved_tensors
        lay, ((qt13, st13), (qtd, std)) = ctx.lay, ctx.w_t
        x_dt, g_dt, u_dt, d_dt = ctx.dtypes
        _, h, i2 = qt13.shape  # qT [E, H, 2I]
        i = i2 // 2
        dyq, dys, dyqt, dyst = K.quant(dy.contiguous(), colwise=True)
        dwd = K.grouped_wgrad(dyqt, dyst, hqt, hst, lay.tile_start, lay.n_tiles, h, out_dtype=d_dt)
        dh = K.grouped_gemm(dyq, dys, qtd, std, lay.tile_expert)
        gq, gs, gqt, gst = K.swiglu_bwd_quant(gu, dh)
        dwg = K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, i, 0, out_dtype=g_dt)
        dwu = K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, i, i, out_dtype=u_dt)
        dxs = K.grouped_gemm(gq, gs, qt13, st13, lay.tile_expert)
        n_src = lay.pos.shape[0]
        k = n_src // ctx.n_tok
        if k == 1:  # rows already one per token (routed_experts): a gather
            dx = dxs.index_select(0, lay.pos).to(x_dt)
        else:  # dx_t = sum of its k rows, in FP32
            dx = dxs.index_select(0, lay.pos).view(ctx.n_tok, k, h).sum(1, dtype=torch.float32).to(x_dt)
        return dx, None, dwg, dwu, dwd


def fp8_experts(x: torch.Tensor, lay: Layout, w_gate: torch.Tensor, w_up: torch.Tensor,
                w_down: torch.Tensor) -> torch.Tensor:
    """Routed SwiGLU experts in FP8: x [n_tok, H] (rows gathered through lay.src), stacked weights
    gate/up [E, I, H], down [E, H, I] -> y [M_pad, H] BF16 in the padded layout (row lay.pos[j] is source j's)."""
    return _FP8Experts.apply(x, lay, w_gate, w_up, w_down)
