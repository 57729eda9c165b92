"""GPU FP8 linear (padded rows, gate+up fused, ragged N) stays on the _scaled_mm path and agrees with the CPU
emulation of the same quantised operands. Run on the H200 with -m gpu."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn import fp8 as F8

pytestmark = pytest.mark.gpu
DEVS = ("cpu", "cuda")


@pytest.mark.parametrize("triton_linear", [True, False])
@pytest.mark.parametrize(("m", "ns", "k"), [(301, (256, 256), 512), (64, (576,), 512), (130, (384,), 512),
                                            (96, (512,), 384), (200, (640,), 1280), (64, (2112,), 7168)])
def test_fp8_linear_gpu_equals_emulation(m, ns, k, triton_linear, monkeypatch):
    """k = 384 / 1280 (3 / 10 blocks) and N = 384 / 576 / 2112 (Dgrad's reduction) exercise SCALE_K_ALIGN on the
    _scaled_mm path and ragged K / N blocks on the Triton path (nn/fp8_triton_linear.py)."""
    if triton_linear:
        pytest.importorskip("triton")
    monkeypatch.setattr(F8, "TRITON_LINEAR", triton_linear)
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, k, generator=g)
    ws = [torch.randn(n, k, generator=g) * 0.05 for n in ns]
    dy = torch.randn(m, sum(ns), generator=g)
    outs = {}
    for dev in DEVS:
        xd = x.to(dev).detach().clone().requires_grad_()  # a leaf on each device
        wd = [w.to(dev).detach().clone().requires_grad_() for w in ws]
        fb = F8.FALLBACKS["dequant_bf16"]
        fbd = F8.FALLBACKS["dgrad_dequant_bf16"]
        y = F8.fp8_linear(xd, tuple(wd))
        y.backward(dy.to(dev))
        outs[dev] = [t.detach().cpu().float() for t in (y, xd.grad, *(w.grad for w in wd))]
        if dev == "cuda":
            ragged = any(n % 128 for n in ns) and not F8.gpu_blockwise_ok(torch.device("cuda"), True, ragged=True)
            assert ragged or F8.FALLBACKS["dequant_bf16"] == fb, "a GEMM left the FP8 path"
            assert F8.FALLBACKS["dgrad_dequant_bf16"] == fbd, "Dgrad left _scaled_mm"
    for a, b in zip(outs[DEVS[1]], outs[DEVS[0]]):
        assert float((a - b).norm() / b.norm()) < 1e-2  # GPU writes BF16 (2^-9); same FP8 operands otherwise
