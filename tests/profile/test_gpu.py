"""On a CUDA GPU: the block-scaled FP8 path is found and correct, and a timed GEMM is plausible."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_fp8_blockwise_layout_probe_and_accuracy():
    from dsv3sim.nn import fp8 as fp8m
    assert fp8m.gpu_blockwise_ok(torch.device("cuda"), True)
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(512, 1024, device="cuda", generator=g)
    w = torch.randn(768, 1024, device="cuda", generator=g)
    aq, sa = fp8m.quantize_1x128(a)
    wq, sw = fp8m.quantize_128x128(w)
    out = fp8m.fp8_gemm(aq, sa, wq, sw, b_block=True, out_dtype=torch.float32)
    ref = fp8m.dequantize(aq, sa, 1) @ fp8m.dequantize(wq, sw, 128).t()
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2


def test_timed_gemm_is_plausible():
    from dsv3sim.config.hardware import get_gpu
    from dsv3sim.profile.ops import gemm
    from dsv3sim.profile.timing import time_fn
    c = gemm(m=4096, n=4096, k=4096, dtype="bf16", device="cuda")
    t = time_fn(c.fn, c.sets, "cuda", graph=c.graph)
    tflops = c.flops / t.time_s / 1e12
    peak = get_gpu(torch.cuda.get_device_name(0)).peak("bf16") / 1e12 if "H" in torch.cuda.get_device_name(0) else 1e9
    assert 50 < tflops <= 1.05 * peak
