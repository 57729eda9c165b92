"""Ranks on a shared CPU lose their core in whole scheduler slices: lockstep waits from preemption.

Model (compound Poisson): while a rank computes, other runnable tasks preempt it at rate lambda per CPU second,
each preemption costing one slice delta of wall time (CFS hands the core to another task for its slice).
A stretch of c CPU seconds then takes c + K delta with K ~ Poisson(lambda c); its mean, c (1 + lambda delta),
is the CPU time over the core share the calibration measured (share = 1 / (1 + lambda delta)). When n ranks
meet in a collective, the meeting waits for the most-preempted one: the lateness beyond the mean is
delta (E[max of n Poisson(mu)] - mu), mu = lambda c. For short stretches (mu << 1) a preemption of any of the
n ranks stalls all: ~ (n - 1) mu delta, n - 1 times the mean delay, far more than a normal jitter of the same
variance gives. lambda and delta come from the calibration's samples (wall - CPU of each component sample:
delta = the median of the delays that are preemptions, lambda from the mean delay per CPU second).
"""

from __future__ import annotations

import math


def expected_max_poisson(mu: float, n: int) -> float:
    """E[max of n iid Poisson(mu)] = sum_{k >= 0} (1 - F(k)^n), F the Poisson CDF."""
    if mu <= 0 or n < 1:
        return 0.0
    if n == 1:
        return mu
    total, p, cdf, k = 0.0, math.exp(-mu), 0.0, 0
    kmax = int(mu + 12 * math.sqrt(mu) + 30)
    while k <= kmax:
        cdf += p
        total += 1.0 - min(cdf, 1.0) ** n
        k += 1
        p *= mu / k
    return total


def lateness(cpu_s: float, rate_per_cpu_s: float, slice_s: float, n: int) -> float:
    """Expected wait beyond the mean for the slowest of n ranks that each computed ``cpu_s`` CPU seconds."""
    mu = rate_per_cpu_s * max(cpu_s, 0.0)
    return slice_s * (expected_max_poisson(mu, n) - mu) if n > 1 and mu > 0 else 0.0


def fit(walls: list[float], cpus: list[float]) -> dict:
    """{rate_per_cpu_s, slice_s} from paired wall / CPU samples: delays = wall - CPU; a preemption is a delay of
    more than a quarter of the sample's CPU time and 0.2 ms; slice = their median; rate = mean delay per CPU
    second / slice. No preemptions: rate 0."""
    delays = [max(w - c, 0.0) for w, c in zip(walls, cpus)]
    big = sorted(d for d, c in zip(delays, cpus) if d > max(0.25 * c, 2e-4))
    tot_cpu = sum(cpus)
    if not big or tot_cpu <= 0:
        return {"rate_per_cpu_s": 0.0, "slice_s": 0.0}
    slice_s = big[len(big) // 2]
    return {"rate_per_cpu_s": sum(delays) / tot_cpu / slice_s, "slice_s": slice_s}
