"""Speed of the kernel-time predictor (``dsv3sim.profile.predict``) from the committed H200 tables, cold:
table build, then interpolated and scaled answers for a spread of GEMM and grouped-GEMM shapes."""

from __future__ import annotations

from dsv3sim.profile.predict import kernel_time

SHAPES = [(m, n, k) for m in (128, 1000, 4096, 16384) for n in (1536, 2048, 7168) for k in (512, 2048, 7168)]


def test_kernel_time_gemm_h200_and_h800(cold):
    def predict():
        return [kernel_time(gpu, "gemm", dt, m=m, n=n, k=k).time_s
                for gpu in ("H200", "H800") for dt in ("bf16", "fp8") for m, n, k in SHAPES]

    ts = cold(predict, rounds=3)
    assert len(ts) == 4 * len(SHAPES) and min(ts) > 0


def test_kernel_time_grouped_gemm_skewed(cold):
    tokens = [int(4096 / (1 + i) ** 1.1) for i in range(32)]
    p = cold(lambda: kernel_time("H200", "grouped_gemm", "fp8", tokens=tokens, n=4096, k=7168), rounds=3)
    assert p.time_s > 0
