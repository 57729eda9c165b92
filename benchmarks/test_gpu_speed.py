"""GPU kernels as the profiler runs them (``-m gpu``, needs CUDA): the BF16 GEMM and the FP8 GEMM with
DeepSeek-V3's 1x128 / 128x128 block scales (§3.3.2) at a V3 MoE down-projection shape, and a grouped GEMM."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

M, N, K = 4096, 7168, 2048  # tokens x hidden <- expert intermediate (V3 down projection)


def _bench(benchmark, case) -> None:
    args = case.sets[0]

    def run():
        out = case.fn(*args)
        torch.cuda.synchronize()
        return out

    benchmark.pedantic(run, rounds=20, iterations=5, warmup_rounds=3)


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_gemm(benchmark, dtype):
    from dsv3sim.profile import ops

    _bench(benchmark, ops.gemm(m=M, n=N, k=K, dtype=dtype, device="cuda"))


def test_grouped_gemm_bf16(benchmark):
    from dsv3sim.profile import ops

    _bench(benchmark, ops.grouped_gemm(e=32, m=512, n=N, k=K, dtype="bf16", device="cuda"))
