"""The one FP8 weight cache (nn/fp8_weights.py) on CPU: after an optimizer step the in-place re-quantisation
writes exactly the bytes a fresh quantisation writes, into the same buffers (no second copy); a stale entry is
never used (the lookup re-quantises it); dropping the forward copies keeps the transposed ones and the
re-quantisation restores them; entries die with their weights and never serve another tensor at the same
address. The "grouped" layout runs with a torch stand-in for the Triton quantiser (its GPU tests:
tests/nn/test_fp8_experts_gpu.py), so the cache logic of the GPU path is exercised here too."""

from __future__ import annotations

import gc
import sys
import types

import pytest
import torch

from dsv3sim.nn import fp8 as F8
from dsv3sim.nn import fp8_experts as X
from dsv3sim.nn import fp8_weights as W
from dsv3sim.nn.fp8_quant import quantize_128x128


@pytest.fixture(autouse=True)
def _empty_cache():
    W.clear_weight_cache()
    yield
    W.clear_weight_cache()


def _bits(t: torch.Tensor | None):
    return None if t is None else t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t


def _same_bytes(a, b) -> bool:
    return all((x is None and y is None) or torch.equal(_bits(x), _bits(y)) for x, y in zip(a, b))


def _ptrs(ent) -> list[int | None]:
    return [None if t is None else t.data_ptr() for t in ent]


def _fresh(ent):
    """A quantisation of the entry's current weights into new buffers."""
    return W.quantise(ent.weights(), ent.kind, transposed=ent.qt is not None)


def _moe_fp8(tiny):
    from dsv3sim.nn.moe import MoE

    torch.manual_seed(0)
    moe = MoE(tiny, 1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    for m in moe.modules():
        if hasattr(m, "fp8"):
            m.fp8 = True
    return moe


def test_optimizer_step_requantises_every_operand_in_place_to_the_fresh_bytes(tiny, monkeypatch):
    moe = _moe_fp8(tiny)
    x = torch.randn(2, 16, tiny.hidden_size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    moe(x).square().sum().backward()  # x stands for the previous layer's output: every Dgrad runs
    ents = W.cached_operands()
    assert len(ents) > 3 and all(e.kind == W.TORCH and e.qt is not None for e in ents)  # experts + shared
    ptrs = [_ptrs(e) for e in ents]
    torch.optim.AdamW(moe.parameters(), lr=1e-2).step()
    assert W.requantize_weights() == len(ents)
    assert W.cached_operands() == ents and [_ptrs(e) for e in ents] == ptrs  # the same buffers, no second copy
    assert all(_same_bytes(e, _fresh(e)) for e in ents)
    assert W.requantize_weights() == 0  # once per step
    calls = []
    monkeypatch.setattr(W, "quantize_128x128", lambda *a, **k: calls.append(1) or quantize_128x128(*a, **k))
    moe(x).square().sum().backward()  # the next step's micro-batch: its operands are ready
    assert len(calls) == len(W.cached_operands()) - len(ents)  # only experts the new routing reaches first


def test_expert_views_are_rebuilt_from_their_parameter(tiny):
    moe = _moe_fp8(tiny)
    moe(torch.randn(1, 8, tiny.hidden_size)).sum().backward()
    ex = moe.experts
    stacks = (ex.gate_proj, ex.up_proj, ex.down_proj)
    views = [e for e in W.cached_operands() if any(e.owners[0]() is p for p in stacks)]
    assert views
    for e in views:
        for w, r in zip(e.weights(), e.owners):
            base = r()
            assert w.data_ptr() in {base[j].data_ptr() for j in range(base.shape[0])}


def test_stale_operand_is_requantised_before_use():
    g = torch.Generator().manual_seed(2)
    w = torch.nn.Parameter(torch.randn(256, 384, generator=g))
    x = torch.randn(8, 384, generator=g)
    F8.fp8_linear(x, w)
    e = W.weight_operands((w,))
    with torch.no_grad():
        w.add_(torch.randn(w.shape, generator=g))  # an update with no requantize_weights after it
    y = F8.fp8_linear(x, w)
    assert torch.equal(y, F8.fp8_linear(x, w.detach().clone()))  # what a never-cached weight gives
    assert W.weight_operands((w,)) is e and _same_bytes(e, _fresh(e))


def test_lookup_and_step_requantisation_share_one_staleness_rule(monkeypatch):
    """Whichever of the lookup and ``requantize_weights`` sees a changed (or dropped) entry first quantises it;
    the other then finds it fresh and quantises nothing."""
    calls = []
    real = W.quantise
    monkeypatch.setattr(W, "quantise", lambda *a, **k: calls.append(1) or real(*a, **k))
    w = torch.nn.Parameter(torch.randn(128, 256))
    e = W.weight_operands((w,))
    assert len(calls) == 1 and W.weight_operands((w,)) is e and W.requantize_weights() == 0 and len(calls) == 1
    with torch.no_grad():
        w.mul_(2.0)
    assert W.weight_operands((w,)) is e and len(calls) == 2 and W.requantize_weights() == 0 and len(calls) == 2
    with torch.no_grad():
        w.mul_(2.0)
    assert W.requantize_weights() == 1 and len(calls) == 3 and W.weight_operands((w,)) is e and len(calls) == 3
    e.transposed()
    assert W.drop_forward_operands() == 1 and W.weight_operands((w,)).complete and len(calls) == 4
    assert W.requantize_weights() == 0 and _same_bytes(e, _fresh(e))


def test_drop_keeps_transposed_copies_and_requantisation_restores_forward_ones():
    g = torch.Generator().manual_seed(3)
    w = torch.nn.Parameter(torch.randn(384, 256, generator=g) * 0.05)
    x = torch.randn(16, 256, generator=g, requires_grad=True)
    inference = torch.nn.Parameter(torch.randn(128, 256, generator=g))
    F8.fp8_linear(x.detach(), inference)  # forward only: no transposed copy, never dropped
    F8.fp8_linear(x, w).sum().backward()  # the step's first micro-batch
    grads = (x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    y = F8.fp8_linear(x, w)  # the rank's last forward of the step
    e = W.weight_operands((w,))
    qt = _ptrs(e)[2:]
    assert W.drop_forward_operands() == 1 and e.q is None and not e.complete
    assert W.weight_operands((inference,)).complete
    y.sum().backward()  # the backward reads the transposed copy only
    assert torch.equal(x.grad, grads[0]) and torch.equal(w.grad, grads[1])
    assert W.requantize_weights() == 1 and e.complete and _ptrs(e)[2:] == qt
    assert _same_bytes(e, _fresh(e))
    with torch.no_grad():
        w.mul_(0.5)
    ptrs = _ptrs(e)
    assert W.requantize_weights() == 1 and _ptrs(e) == ptrs and _same_bytes(e, _fresh(e))


def test_entry_dies_with_its_weights_and_never_serves_another_tensor_at_its_address():
    w = torch.randn(128, 256)
    e = W.weight_operands((w,))
    alias = torch.empty(0).set_(w.untyped_storage(), w.storage_offset(), w.shape, w.stride())  # same key
    a = W.weight_operands((alias,))
    assert a is not e and W.cached_operands() == [a]
    del alias, a
    gc.collect()
    assert W.cached_operands() == []
    e = W.weight_operands((w,))
    del w
    gc.collect()
    assert W.cached_operands() == [] and W.requantize_weights() == 0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind 'fp4'"):
        W.quantise((torch.randn(128, 128),), "fp4")


def _reference_weight_quant(ws, out=None):
    """nn/fp8_triton.py ``weight_quant`` in torch: per group the 128x128 quantisation of the stacked weights and
    its transpose (tests/nn/test_fp8_experts_gpu.py checks the kernel against exactly this)."""
    per = [quantize_128x128(torch.cat([w[i] for w in ws])) for i in range(ws[0].shape[0])]
    q = torch.stack([p[0] for p in per])
    s = torch.stack([p[1] for p in per])
    new = (q, s, q.view(torch.uint8).transpose(1, 2).contiguous().view(q.dtype), s.transpose(1, 2).contiguous())
    out = out or (None,) * 4
    return tuple(n if o is None else o.copy_(n) for o, n in zip(out, new))


@pytest.fixture
def stand_in_kernels(monkeypatch):
    mod = types.ModuleType("dsv3sim.nn.fp8_triton")
    mod.weight_quant = _reference_weight_quant
    monkeypatch.setitem(sys.modules, "dsv3sim.nn.fp8_triton", mod)
    monkeypatch.setattr(sys.modules["dsv3sim.nn"], "fp8_triton", mod, raising=False)


def test_grouped_expert_operands_drop_and_requantise_in_place(stand_in_kernels):
    g = torch.Generator().manual_seed(4)
    e_, i_, h_ = 3, 128, 256
    ws = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in ((e_, i_, h_), (e_, i_, h_), (e_, h_, i_))]
    ops = X.expert_operands(*ws)
    assert ops.w13.complete and ops.wd.complete
    assert ops.w13.q.shape == (e_, 2 * i_, h_) and ops.wd.qt.shape == (e_, i_, h_)
    assert X.expert_operands(*ws) == ops and len(W.cached_operands()) == 2
    t_ptrs = [_ptrs(o)[2:] for o in (ops.w13, ops.wd)]
    assert W.drop_forward_operands() == 2 and not ops.w13.complete and not ops.wd.complete
    assert [_ptrs(o)[2:] for o in (ops.w13, ops.wd)] == t_ptrs  # the backward's copies stay
    for w in ws:
        w.grad = torch.randn(w.shape, generator=g)
    torch.optim.SGD(ws, lr=0.1).step()
    assert W.requantize_weights() == 2 and ops.w13.complete and ops.wd.complete
    assert [_ptrs(o)[2:] for o in (ops.w13, ops.wd)] == t_ptrs
    assert all(_same_bytes(o, _fresh(o)) for o in (ops.w13, ops.wd))
    ptrs = [_ptrs(o) for o in (ops.w13, ops.wd)]
    torch.optim.SGD(ws, lr=0.1).step()
    assert W.requantize_weights() == 2 and [_ptrs(o) for o in (ops.w13, ops.wd)] == ptrs  # fully in place
    assert all(_same_bytes(o, _fresh(o)) for o in (ops.w13, ops.wd))
    dense = torch.nn.Parameter(torch.randn(256, 128, generator=g))
    assert W.weight_operands((dense,), W.GROUPED).q.shape == (1, 256, 128)  # a dense linear: one group
    assert W.weight_operands((dense,), W.TORCH).q.shape == (256, 128)  # its other layout: another entry


def test_forward_bytes_count_what_a_drop_frees_and_the_keep_rule_adds_them_to_the_peak():
    """``forward_operand_bytes`` is the q + s bytes of the entries with a transposed copy (what
    ``drop_forward_operands`` frees); keeping them fits when the dropped step's peak plus them is inside the
    margin of the card."""
    g = torch.Generator().manual_seed(5)
    w = torch.nn.Parameter(torch.randn(384, 256, generator=g))
    inference = torch.nn.Parameter(torch.randn(128, 256, generator=g))
    x = torch.randn(4, 256, generator=g, requires_grad=True)
    F8.fp8_linear(x.detach(), inference)  # no transposed copy: not counted
    F8.fp8_linear(x, w).sum().backward()
    e = W.weight_operands((w,))
    expected = e.q.numel() * 1 + e.s.numel() * 4
    assert expected == 384 * 256 + 3 * 2 * 4 and W.forward_operand_bytes() == expected
    assert W.drop_forward_operands() == 1 and W.forward_operand_bytes() == 0
    cap = 100 << 30
    assert W.keep_forward_operands(80 << 30, 10 << 30, cap)  # 90 GiB of 100: inside 0.9
    assert not W.keep_forward_operands(81 << 30, 10 << 30, cap)
    with pytest.raises(ValueError, match="forward_bytes = -1"):
        W.keep_forward_operands(0, -1, cap)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_step_that_fits_keeps_its_forward_copies_on_the_device():
    """validate's rule on a card: a small FP8 step's peak plus its forward copies fits, so the measured steps keep
    them (no re-allocation per step); a card 'smaller' than the peak (capacity given) would drop them."""
    from dsv3sim.validate.train import _must_drop_fp8_forward

    dev = torch.device("cuda")
    w = torch.nn.Parameter(torch.randn(512, 512, device=dev, dtype=torch.bfloat16) * 0.02)
    x = torch.randn(256, 512, device=dev, dtype=torch.bfloat16, requires_grad=True)
    torch.cuda.reset_peak_memory_stats(dev)
    F8.fp8_linear(x, w).float().sum().backward()
    assert W.forward_operand_bytes() > 0
    assert not _must_drop_fp8_forward(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    assert not W.keep_forward_operands(peak, W.forward_operand_bytes(), peak)
