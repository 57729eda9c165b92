"""The tensor throughput a GPU sustains at its power limit: a ceiling on GEMM kernels in a training step.

Measured on the H200 (``benchmarks/probe_sustained_clock.py`` -> ``profiles/h200/sustained_clock.json``,
NVML sampled every 10 ms): a GEMM timed in a short burst after light work runs at the 1980 MHz boost clock
(8192^3 BF16: 1.41 ms, 782 TFLOP/s); after 1.5 s of back-to-back GEMMs the board sits at its 700 W limit
(692 W, throttle reason SW power cap), the SM clock drops to 1440-1590 MHz and every BF16 GEMM of the probe,
large or small, runs at 671-695 TFLOP/s (8192^3: 1.63 ms), every FP8 block-scaled GEMM at 999-1116 TFLOP/s.
L2 is not the cause (the inputs rotate in both), nor graph vs eager (20 eager calls after idle = the graph
burst within 1 %). A device copy does not slow down (memory-bound: HBM clock unchanged).

A training step keeps the GPU at its power limit, so a GEMM cannot beat the sustained rate whatever the
profile table says: t = max(t_table, flops / (ceiling x SM fraction^(1 - PARTIAL_SM_EXPONENT))). The kernel tables
(``profiles/h200/kernels.csv``) time each shape in ~10-20 ms graph bursts, at whatever clock the preceding
shapes left the board at: rows measured after light work hold boost-clock times (faster than a step can run),
rows measured hot already hold sustained ones (the ceiling leaves them alone). Ceilings as fractions of the
datasheet dense peak, so other GPUs of the family scale with their peak.
"""

from __future__ import annotations

# the highest sustained rate of the probe's shapes over the datasheet dense peak (989.4 / 1978.9 TFLOP/s)
SUSTAINED_FRACTION = {"bf16": 695.0 / 989.4, "fp8": 1116.0 / 1978.9}

# A GEMM on a fraction s of the SMs, with a copy (communication) looping on the others, holds a higher clock than
# one on every SM: the power limit is shared by fewer busy SMs. Measured on the H200 at s = 112/132
# (``benchmarks/probe_sustained_partial.py`` -> ``profiles/h200/sustained_partial.json``, each way after 2 s at the
# power limit): FP8 1453-1500 -> 1563-1570 MHz, sustained rate 0.867-0.888 of the all-SM rate where s alone would
# give 0.848 (BF16: 0.887). Rate(s) = rate(1) x s^(1 - PARTIAL_SM_EXPONENT), the exponent being the median over
# the probe's shapes of ln((rate(s)/rate(1)) / s) / ln(1/s); one partition size was measured, so other s are
# extrapolated by the same power law (dynamic power ~ busy SMs x f^3 would give 1/3 with nothing beside the GEMM;
# the copy's own power brings it lower).
PARTIAL_SM_EXPONENT = 0.268
GEMM_OPS = ("gemm", "grouped_gemm")
SOURCE = "power-limited ceiling (workload/sustained.py, profiles/h200/sustained_clock.json)"


def ceiling_time(op: str, dtype: str, flops: float, peak_flops: float, sm_fraction: float = 1.0) -> float:
    """The shortest time a GEMM of ``flops`` can take at the sustained rate (0 for other kernels)."""
    f = SUSTAINED_FRACTION.get(dtype)
    if op not in GEMM_OPS or f is None or flops <= 0 or peak_flops <= 0:
        return 0.0
    return flops / (f * peak_flops * sm_fraction ** (1.0 - PARTIAL_SM_EXPONENT))
