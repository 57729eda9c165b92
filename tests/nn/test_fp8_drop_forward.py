"""Dropping the experts' FP8 forward copies between a step's last forward and its backwards (validate/train.py)."""

from __future__ import annotations

import torch

from dsv3sim.nn import fp8_experts as X


def _make(calls: list):
    def make(ws, old):  # stands in for the Triton quantiser: rebuilds into old's buffers, allocates freed ones
        calls.append(old)
        q = old.w13[0] if old is not None and old.w13[0] is not None else torch.empty(2)
        qt = old.w13[2] if old is not None else torch.empty(2)
        q.fill_(float(ws[0].sum()))
        qt.fill_(-float(ws[0].sum()))
        return X.Operands((q, None, qt, None), (q.clone(), None, qt.clone(), None))
    return make


def test_dropped_forward_copies_are_rebuilt_and_the_transposed_kept():
    X.clear_cache()
    w = torch.ones(3)
    calls: list = []
    make = _make(calls)
    ops = X.cached((w,), make)
    assert ops.complete and len(calls) == 1
    qt = ops.w13[2]
    assert X.drop_forward_operands() == 1
    dropped = X._WCACHE[next(iter(X._WCACHE))][1]
    assert not dropped.complete and dropped.w13[2] is qt  # the backward's copy stays
    again = X.cached((w,), make)  # same weight version, forward copy missing: rebuilt, transposed in place
    assert again.complete and len(calls) == 2 and again.w13[2] is qt
    X.drop_forward_operands()
    with torch.no_grad():
        w.add_(1.0)  # the optimizer step
    assert X.refresh() == 1
    ops = X.cached((w,), make)
    assert ops.complete and len(calls) == 3 and float(ops.w13[0][0]) == 6.0
    X.clear_cache()
