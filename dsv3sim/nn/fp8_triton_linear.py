"""A dense FP8 linear layer on the grouped kernels of nn/fp8_triton.py (one group): y = x [W_1; W_2; ...]^T.

The attention projections and the shared experts use it on a GPU with Triton; it computes what nn/fp8.py's
``_FP8Linear`` computes (the same 1x128 / 128x128 tiles, FP32 promotion per 128-wide K block, Wgrad on
128-token tiles from token 0), without that path's per-call torch quantisation passes (V3 §3.3.1, Fig. 6):
  Fprop  y  = q(x) q(W)^T                     x quantised row-wise and column-wise in one pass
  Dgrad  dx = q(dy) q(W^T)^T                  W^T = the 128x128 blocks transposed (nn/fp8_weights.py, with W)
  Wgrad  dW = q_col(dy)^T q_col(x)            128-token tiles of dy and x
Rows are padded to a multiple of 128 inside the quantiser (zero rows, cropped after).
"""

from __future__ import annotations

import torch

from dsv3sim.nn import fp8_experts as X
from dsv3sim.nn import fp8_weights as W

TILE = 128


def supported(x: torch.Tensor, k: int, ns: list[int]) -> bool:
    """Triton on x's device; K and N multiples of 16 (TMA rows of FP8); stacked weights' rows multiples of 128."""
    n = sum(ns)
    return (X.triton_ok(x, TILE, TILE) and k % 16 == 0 and n % 16 == 0 and all(m % TILE == 0 for m in ns[:-1]))


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, *ws):
        from dsv3sim.nn import fp8_triton as K

        m = x.shape[0]
        mp = -(-m // TILE) * TILE
        dev = x.device
        src = torch.arange(mp, device=dev, dtype=torch.int32)
        src[m:] = -1
        ent = W.weight_operands(ws, W.GROUPED)  # [1, N, K] and its transposed copy, quantised once per value
        xq, xs, xqt, xst = K.quant(x, src=src, rows_out=mp, colwise=any(w.requires_grad for w in ws))
        tile_expert = torch.zeros(mp // TILE, dtype=torch.int32, device=dev)
        y = K.grouped_gemm(xq, xs, ent.q, ent.s, tile_expert, out_dtype=x.dtype if x.dtype != torch.float32 else
                           torch.bfloat16)
        ctx.save_for_backward(xqt, xst, src, tile_expert)
        # the backward reads the transposed copy only (the forward one may be dropped by then: nn/fp8_weights.py)
        ctx.w_t, ctx.splits, ctx.m = ent.transposed(), [w.shape[0] for w in ws], m
        ctx.dtypes = (x.dtype, *(w.dtype for w in ws))
        return y[:m].to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        from dsv3sim.nn import fp8_triton as K

        xqt, xst, src, tile_expert = ctx.saved_tensors
        m, (qt, st) = ctx.m, ctx.w_t
        mp = src.shape[0]
        need_w = any(ctx.needs_input_grad[1:])
        gq, gs, gqt, gst = K.quant(dy.contiguous(), src=src, rows_out=mp, colwise=need_w)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = K.grouped_gemm(gq, gs, qt, st, tile_expert)[:m].to(ctx.dtypes[0])
        dws = [None] * len(ctx.splits)
        if need_w:
            n = dy.shape[1]
            one = torch.zeros(1, dtype=torch.int32, device=dy.device)
            dw = K.grouped_wgrad(gqt, gst, xqt, xst, one, one + mp // TILE, n, out_dtype=torch.float32)[0]
            parts = dw.split(ctx.splits, 0)
            dws = [p.to(dt) if need else None for p, dt, need in zip(parts, ctx.dtypes[1:], ctx.needs_input_grad[1:])]
        return (dx, *dws)


def linear(x: torch.Tensor, ws: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """x [M, K] @ [W_1; ...]^T -> [M, sum N_i] in x's dtype (check ``supported`` first)."""
    return _Linear.apply(x, *ws)
