"""Tile and wave quantisation of GEMM work: the FLOPs a tiled kernel really spends (no torch).

A tiled GEMM kernel cuts C[M, N] into TM x TN output tiles and runs them in waves of one tile per SM, so its
time steps with ``waves = ceil(ceil(M/TM) * ceil(N/TN) / SMs)``, not with M*N. Each wave costs one tile's
``2 * TM * TN * K`` FLOPs on every SM, so the work the roofline should see is

    W(M, N, K) = 2 * waves * SMs * TM * TN * K                                                (1)

and ``W / peak`` is the wave-quantised compute time (equal to 2MNK / peak when tiles and waves are full).

Which kernels this fits, measured on the H200 (``benchmarks/bench_predictor.py``; NOTES.md):
* cuBLAS block-scaled FP8 (``torch._scaled_mm`` with 1x128 / 128x128 scales): 128 x 128 tiles, one wave per
  132 SMs. With (1) as the roofline, interpolated efficiency misses fewer random shapes (share beyond 20%
  2.3% instead of 6.2%) and leave-one-out p90 halves. The 128 x 128 tile matches the weights' 128 x 128
  scale blocks (DeepSeek-V3 report §3.3.2; DeepGEMM uses BLOCK_M/N of 64-256 but multiples of the 128 block).
* cuBLAS BF16 on Hopper is *not* wave-quantised in our data: every fixed tile (64..256 per side) made the
  predictions worse, consistent with its persistent / stream-K kernels that split the last wave's work.
  BF16 keeps the plain roofline (``tile=None``).
"""

from __future__ import annotations

FP8_TILE = (128, 128)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def waves(m: int, n: int, sms: int, tile: tuple[int, int]) -> int:
    """Waves of ``sms`` SMs needed for the ceil(M/TM) x ceil(N/TN) output tiles."""
    tm, tn = tile
    return ceil_div(ceil_div(m, tm) * ceil_div(n, tn), sms)


def gemm_work(m: int, n: int, k: int, sms: int, tile: tuple[int, int] | None) -> float:
    """Eq. (1): FLOPs of a tiled kernel including its idle tile slots; 2MNK when ``tile`` is None."""
    if tile is None:
        return 2.0 * m * n * k
    return 2.0 * waves(m, n, sms, tile) * sms * tile[0] * tile[1] * k
