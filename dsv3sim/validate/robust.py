"""Statistics of timings on a shared machine (used by both sides of a validation).

Other jobs on a shared CPU take cores away from a run: a sample's wall time is the CPU time it needed over the
share of a core the rank got meanwhile. CPU time (``time.thread_time``) barely moves with the load (cache and
frequency effects only); the share moves with it. So the calibration keeps both for every component sample
(``components.py``), the component table divides the expected CPU time per call (``expected``) by the share the rank got
during the quick probes interleaved with the measured steps (the same window as the steps, ``component_table.py``), and
the measured side takes the median over steps. On a GPU the host thread waits in the device sync and wall time
is what counts: medians of wall samples.

The spread is the interquartile range over 1.349 (a normal's sigma) relative to the median, robust to the rare
long preemption.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

LOW_Q = 0.25


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default); 0.0 for no samples."""
    return float(np.quantile(xs, q)) if len(xs) else 0.0


def expected(xs: list[float]) -> float:
    """The mean of the samples without far-out outliers (above Q3 + 3 IQR, Tukey's outer fence); 0.0 for none.
    A step is a sum of component calls, and the expectation of a sum is the sum of the expectations: the
    per-call time a step pays on average is the mean, not the median. CPU time per call is right-skewed (cache
    refills after a preemption, page faults, interrupts): on `tiny` the mean is 1-6 % above the median of the
    same samples (MEASUREMENTS.md, 2026-12-05). The fence drops only gross outliers (a sample an unrelated
    stall stretched several-fold), which one of a few dozen samples would otherwise carry into the mean."""
    xs = list(xs)
    if len(xs) < 4:
        return statistics.fmean(xs) if xs else 0.0
    q1, q3 = quantile(xs, 0.25), quantile(xs, 0.75)
    fence = q3 + 3.0 * (q3 - q1)
    return statistics.fmean(x for x in xs if x <= fence)


def low(xs: list[float]) -> float:
    """The lower quartile (reported beside the median)."""
    return quantile(list(xs), LOW_Q)


def rel_spread(xs: list[float]) -> float:
    """Robust relative sigma: IQR / 1.349 / median (0 for < 2 samples)."""
    xs = list(xs)
    m = statistics.median(xs) if xs else 0.0
    if len(xs) < 2 or m <= 0:
        return 0.0
    return (quantile(xs, 0.75) - quantile(xs, 0.25)) / 1.349 / m


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: the order statistics x_(k) and x_(n+1-k) with the
    largest k such that P(Binomial(n, 1/2) < k) <= (1 - level) / 2 (the sign-test interval; no normality
    assumed: step times on a shared machine are skewed by preemption). Coverage >= ``level``; with few samples
    it is the whole range (n = 8 steps: [min, max], 99.2 %)."""
    x = sorted(xs)
    n = len(x)
    if n == 0:
        return (0.0, 0.0)
    tail, k, cum = (1.0 - level) / 2.0, 1, 0.0
    while k < (n + 1) // 2:
        cum += math.comb(n, k - 1) / 2.0 ** n  # P(Binomial(n, 1/2) <= k - 1)
        if cum + math.comb(n, k) / 2.0 ** n > tail:
            break
        k += 1
    return (x[k - 1], x[n - k])
