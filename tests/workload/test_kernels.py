"""Kernel times: the profile tables and DeepSeek's published kernel throughput agree on a large FP8 GEMM;
fewer SMs never make a kernel faster."""
from __future__ import annotations

from dsv3sim.workload.kernels import FP8_GEMM_EFF, _roofline, gpu_perf, op_time


def test_large_fp8_gemm_profile_vs_published_deepgemm():
    m = n = 4096
    k = 7168
    flops = 2.0 * m * n * k
    prof = op_time("H800", "gemm", "fp8", flops=flops, bytes_=m * k + n * k + 2 * m * n, m=m, n=n, k=k)
    pub = _roofline("H800", "fp8", flops, 0.0)  # DeepGEMM's 1350 TFLOPS on H800
    assert abs(pub.time_s * FP8_GEMM_EFF * gpu_perf("H800").fp8_flops / flops - 1) < 1e-9
    # two routes: measured-and-scaled vs published; within 40 % of each other
    assert 0.6 < prof.time_s / pub.time_s < 1.4, (prof, pub)


def test_partial_sms_never_faster():
    for op, dt, shape in (("gemm", "fp8", {"m": 4096, "n": 2048, "k": 7168}),
                          ("grouped_gemm", "fp8", {"e": 4, "m": 4096, "n": 4096, "k": 7168}),
                          ("attn_prefill", "bf16", {"s": 4096, "h": 128, "b": 1, "dqk": 192, "dv": 128})):
        full = op_time("H800", op, dt, flops=1e12, bytes_=1e9, **shape).time_s
        part = op_time("H800", op, dt, flops=1e12, bytes_=1e9, sm_fraction=112 / 132, **shape).time_s
        assert part >= full * (1 - 1e-9)
