"""GPU routes agree with the CPU ones: torch._scaled_mm block-scaled FP8 GEMM == the emulation; grouped BF16
expert GEMM == the per-expert loop; FP8 linear on GPU within the FP8 bound. Run on the H200 with -m gpu."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn import fp8 as F8
from dsv3sim.nn.moe import routed_experts

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("b_block", [True, False])
def test_scaled_mm_blockwise_equals_emulation(b_block):
    dev = torch.device("cuda")
    assert F8.gpu_blockwise_ok(dev, True), "torch._scaled_mm has no (1x128, 128x128) block-scaled path here"
    if not b_block and not F8.gpu_blockwise_ok(dev, False):
        pytest.skip("no (1x128, 1x128) Wgrad scaling in this torch; Wgrad falls back to dequantised BF16")
    g = torch.Generator(device=dev).manual_seed(0)
    a, b = torch.randn(256, 1024, device=dev, generator=g), torch.randn(512, 1024, device=dev, generator=g)
    aq, sa = F8.quantize_1x128(a)
    bq, sb = F8.quantize_128x128(b) if b_block else F8.quantize_1x128(b)
    gpu = F8._scaled_mm(aq, sa, bq, sb, b_block, torch.float32)
    emu = F8.gemm_emulated(aq, sa, bq, sb, b_block=b_block)
    assert float((gpu - emu).norm() / emu.norm()) < 5e-3  # the GPU path writes BF16 (2^-9 rounding)


def test_grouped_mm_equals_loop():
    dev = "cuda"
    E, H, I = 8, 256, 128
    g = torch.Generator(device=dev).manual_seed(0)
    counts = torch.tensor([16, 0, 48, 32, 16, 64, 0, 80], device=dev)
    x = torch.randn(int(counts.sum()), H, device=dev, generator=g).bfloat16()
    w = [torch.randn(E, *s, device=dev, generator=g).bfloat16() * 0.05 for s in ((I, H), (I, H), (H, I))]
    grouped = routed_experts(x, counts, *w)
    loop = routed_experts(x.float(), counts, *(t.float() for t in w))
    assert float((grouped.float() - loop).norm() / loop.norm()) < 2e-2


def test_fp8_linear_gpu_within_bound():
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(512, 1024, device=dev, generator=g).bfloat16().requires_grad_()
    w = (torch.randn(768, 1024, device=dev, generator=g) * 0.05).bfloat16().requires_grad_()
    y8 = F8.fp8_linear(x, w)
    y = x.float() @ w.float().t()
    assert float((y8.float() - y).norm() / y.norm()) < 0.06
    y8.float().sum().backward()
    assert x.grad is not None and w.grad is not None and torch.isfinite(w.grad).all()
