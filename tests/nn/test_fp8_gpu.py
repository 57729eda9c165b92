"""GPU FP8 linear (padded rows, gate+up fused, ragged N) stays on the _scaled_mm path and agrees with the CPU
emulation of the same quantised operands. Run on the H200 with -m gpu."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn import fp8 as F8

pytestmark = pytest.mark.gpu
DEVS = ("cpu", "cuda")


@pytest.mark.parametrize(("m", "ns"), [(301, (256, 256)), (64, (576,)), (130, (384,))])
def test_fp8_linear_gpu_equals_emulation(m, ns):
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, 512, generator=g)
    ws = [torch.randn(n, 512, generator=g) * 0.05 for n in ns]
    dy = torch.randn(m, sum(ns), generator=g)
    outs = {}
    for dev in DEVS:
        xd = x.to(dev).detach().clone().requires_grad_()  # a leaf on each device
        wd = [w.to(dev).detach().clone().requires_grad_() for w in ws]
        fb = F8.FALLBACKS["dequant_bf16"]
        y = F8.fp8_linear(xd, tuple(wd))
        y.backward(dy.to(dev))
        outs[dev] = [t.detach().cpu().float() for t in (y, xd.grad, *(w.grad for w in wd))]
        if dev == "cuda":
            ragged = any(n % 128 for n in ns) and not F8.gpu_blockwise_ok(torch.device("cuda"), True, ragged=True)
            assert ragged or F8.FALLBACKS["dequant_bf16"] == fb, "a GEMM left the FP8 path"
    for a, b in zip(outs[DEVS[1]], outs[DEVS[0]]):
        assert float((a - b).norm() / b.norm()) < 1e-2  # GPU writes BF16 (2^-9); same FP8 operands otherwise
