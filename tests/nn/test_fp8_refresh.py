"""The FP8 operand cache of the grouped kernels (nn/fp8_experts.py ``cached`` / ``refresh``): operands are built
once per weight value, ``refresh`` after an in-place update rebuilds them once, into the old buffers, and an
entry dies with its weights. CPU only: the builder here is a stand-in for the Triton quantiser."""

from __future__ import annotations

import gc

import torch

from dsv3sim.nn import fp8_experts as X


def _make(calls: list):
    def make(ws, old):
        calls.append(old is not None)
        out = old if old is not None else torch.empty_like(ws[0])
        out.copy_(ws[0] * 2)
        return out
    return make


def test_operands_built_once_per_weight_value_and_refreshed_in_place():
    X.clear_cache()
    calls: list = []
    make = _make(calls)
    w = torch.nn.Parameter(torch.randn(4, 8))
    a = X.cached((w,), make)
    assert X.cached((w,), make) is a and calls == [False]  # second forward of the step: no rebuild
    assert X.refresh() == 0  # nothing changed
    with torch.no_grad():
        w.add_(1.0)  # the optimizer step
    assert X.refresh() == 1 and calls == [False, True]
    b = X.cached((w,), make)
    assert b is a and calls == [False, True]  # the forward finds the refreshed operand: same buffer, no rebuild
    assert torch.equal(b, w.detach() * 2)


def test_stale_entry_rebuilt_on_use_without_refresh_and_dies_with_weights():
    X.clear_cache()
    calls: list = []
    make = _make(calls)
    w = torch.nn.Parameter(torch.randn(4, 8))
    a = X.cached((w,), make)
    with torch.no_grad():
        w.mul_(3.0)
    assert X.cached((w,), make) is a and calls == [False, True]
    assert torch.equal(a, w.detach() * 2)
    n = len(X._WCACHE)
    del w
    gc.collect()
    assert len(X._WCACHE) == n - 1
    assert X.refresh() == 0


def test_emulation_operands_requantised_after_the_step():
    from dsv3sim.nn import fp8 as F8

    F8.clear_weight_cache()
    w = torch.nn.Parameter(torch.randn(256, 128))
    e = F8.weight_operands((w,))
    assert F8.requantize_weights() == 0
    with torch.no_grad():
        w.mul_(2.0)
    assert F8.requantize_weights() == 1
    q, s = F8.quantize_128x128(w.detach())
    e2 = F8.weight_operands((w,))
    assert e2 is e and torch.equal(e.s, s) and torch.equal(e.q.float(), q.float())
