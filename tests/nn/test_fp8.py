"""FP8: tile/block quantisation error bounds (E4M3: 3 mantissa bits -> relative rounding <= 2^-4); the CPU
emulation equals exact math on the dequantised operands; FP8 linear (forward and both backward GEMMs) vs
FP32 within a stated bound, BF16 for scale."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn import fp8 as F8
from dsv3sim.nn.fp8 import (
    E4M3_MAX,
    dequantize,
    fp8_linear,
    gemm_emulated,
    gemm_reference,
    quantize_1x128,
    quantize_128x128,
)

# Bound used below: per element |x - deq(q(x))| <= 2^-4 |x| + s * 2^-10 (E4M3 normal numbers keep 3 mantissa
# bits -> half-ulp 2^-4 relative; subnormal spacing 2^-9 of the scale s). For Gaussian GEMM operands the
# relative Frobenius error of the product is then ~ 2^-4 / sqrt(3) * sqrt(2) ~ 0.05; we assert < 0.06.
FP8_REL_BOUND = 0.06


@pytest.mark.parametrize("shape", [(4, 256), (3, 200), (130, 64)])
def test_quantize_1x128_bound_and_scale(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3
    q, s = quantize_1x128(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (shape[0], -(-shape[1] // 128)) and s.dtype == torch.float32
    d = dequantize(q, s, 1)
    se = s.repeat_interleave(128, 1)[:, :shape[1]]
    assert ((x - d).abs() <= x.abs() * 2 ** -4 + se * 2 ** -10 + 1e-12).all()
    assert torch.allclose(q.float().abs().view(shape[0], -1).amax(1)[:, None] if shape[1] <= 128 else
                          q.float().abs()[:, :128].amax(1, keepdim=True), torch.full((shape[0], 1), E4M3_MAX))


@pytest.mark.parametrize("shape", [(256, 384), (200, 130)])
def test_quantize_128x128_bound(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    q, s = quantize_128x128(w)
    assert s.shape == (-(-shape[0] // 128), -(-shape[1] // 128))
    d = dequantize(q, s, 128)
    se = s.repeat_interleave(128, 0)[:shape[0]].repeat_interleave(128, 1)[:, :shape[1]]
    assert ((w - d).abs() <= w.abs() * 2 ** -4 + se * 2 ** -10 + 1e-12).all()


@pytest.mark.parametrize("b_block", [True, False])
def test_emulation_equals_exact_math(b_block):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 384, generator=g), torch.randn(256, 384, generator=g)
    aq, sa = quantize_1x128(a)
    bq, sb = quantize_128x128(b) if b_block else quantize_1x128(b)
    emu = gemm_emulated(aq, sa, bq, sb, b_block=b_block).double()
    ref = gemm_reference(aq, sa, bq, sb, b_block=b_block)
    assert ((emu - ref).abs() <= 1e-5 * ref.abs().max()).all()  # FP32 accumulation only


def _rel(a, b):
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


def test_fp8_linear_forward_backward_within_bound():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 256, generator=g, requires_grad=True)
    w = (torch.randn(384, 256, generator=g) * 0.05).requires_grad_()
    dy = torch.randn(96, 384, generator=g)
    y8 = fp8_linear(x, w)
    y8.backward(dy)
    gx8, gw8 = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    y = x @ w.t()
    y.backward(dy)
    errs = {"fprop": _rel(y8, y), "dgrad": _rel(gx8, x.grad), "wgrad": _rel(gw8, w.grad)}
    assert all(e < FP8_REL_BOUND for e in errs.values()), errs
    assert all(e > 1e-3 for e in errs.values()), errs  # it really is FP8, not a silent high-precision path
    yb = (x.bfloat16() @ w.bfloat16().t()).float()
    assert _rel(yb, y) < 0.01 < errs["fprop"]  # BF16 is ~10x more accurate than FP8 here


def test_fp8_model_close_to_fp32(tiny):
    from dsv3sim.nn.transformer import Transformer

    torch.manual_seed(0)
    m = Transformer(tiny)
    tok = torch.randint(0, tiny.vocab_size, (2, 8 + 2))
    with torch.no_grad():
        ref = m(tok)
        m.set_fp8(True)
        out = m(tok)
    # ~15 FP8 GEMMs per block compound over 4 blocks, and a few top-k choices flip: looser whole-model bound
    assert 1e-4 < _rel(out, ref) < 0.25


def test_k_padding_for_the_scale_row_rule_changes_nothing():
    """SCALE_K_ALIGN padding (FP8 zeros, scale 1) leaves the product exactly as it was (emulated on CPU)."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(8, 384, generator=g), torch.randn(256, 384, generator=g)
    aq, sa = F8.quantize_1x128(x)
    bq, sb = F8.quantize_128x128(w)
    a2, sa2, b2, sb2 = F8._pad_k_blocks(aq, sa, bq, sb)
    assert a2.shape[1] == b2.shape[1] == 512 and sa2.shape == (8, 4) and sb2.shape == (2, 4)
    ref = F8.gemm_emulated(aq, sa, bq, sb, b_block=True)
    assert torch.equal(F8.gemm_emulated(a2, sa2, b2, sb2, b_block=True), ref)
