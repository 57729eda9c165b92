"""FP8 weight-operand cache and fused operands (nn/fp8.py): a cached weight is re-quantised after an in-place
update (optimizer step), several weights as one operand equal separate FP8 linears, and the GPU-layout
quantiser (rows padded to 4, K to 128, outer-dim-major scales) equals the plain one on the unpadded part."""

from __future__ import annotations

import torch

from dsv3sim.nn import fp8 as F8


def test_cache_requantises_after_in_place_update():
    F8.clear_weight_cache()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(128, 256, generator=g)
    x = torch.randn(8, 256, generator=g)
    y1 = F8.fp8_linear(x, w)
    assert F8.weight_operands((w,)) is F8.weight_operands((w,))  # a hit: same entry, no re-quantisation
    with torch.no_grad():
        w.mul_(2.0)  # power of two: the FP8 codes are unchanged, the scales double
    y2 = F8.fp8_linear(x, w)
    assert torch.allclose(y2, 2 * y1, rtol=1e-6, atol=0)
    q, s = F8.quantize_128x128(w)
    e = F8.weight_operands((w,))
    assert torch.equal(e.q.float(), q.float()) and torch.equal(e.s, s)


def test_fused_operand_equals_separate_linears():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 256, generator=g, requires_grad=True)
    w1 = (torch.randn(128, 256, generator=g) * 0.05).requires_grad_()
    w2 = (torch.randn(256, 256, generator=g) * 0.05).requires_grad_()
    y = F8.fp8_linear(x, (w1, w2))
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    grads = [t.grad.clone() for t in (x, w1, w2)]
    for t in (x, w1, w2):
        t.grad = None
    y_sep = torch.cat([F8.fp8_linear(x, w1), F8.fp8_linear(x, w2)], -1)
    y_sep.backward(dy)
    assert torch.equal(y, y_sep)
    assert torch.equal(grads[1], w1.grad) and torch.equal(grads[2], w2.grad)  # Wgrad rows are independent
    # Dgrad: one GEMM over K = N1 + N2 vs the sum of two; same FP8 tiles (N1 % 128 == 0), FP32 sums reordered
    assert torch.allclose(grads[0], x.grad, rtol=1e-5, atol=1e-6)


def test_gpu_layout_quantiser_matches_plain():
    x = torch.randn(10, 300, generator=torch.Generator().manual_seed(2)).bfloat16()
    q, s = F8.quantize_1x128(x, row_align=4, crop=False)
    assert q.shape == (12, 384) and s.shape == (12, 3) and s.stride() == (1, 12)  # outer-dim-major
    assert (q[10:].float() == 0).all() and (q[:, 300:].float() == 0).all()
    q0, s0 = F8.quantize_1x128(x)
    assert torch.equal(q[:10, :300].float(), q0.float()) and torch.equal(s[:10], s0)
