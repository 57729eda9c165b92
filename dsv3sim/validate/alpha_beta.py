"""Hockney's alpha-beta model of a transport, t(n) = alpha + n / beta (Hockney 1994, "The communication
challenge for MPP"), and its fit to measured (size, time) points; no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class AlphaBeta:
    """t(n) = alpha_s + n / beta_Bps."""

    alpha_s: float
    beta_Bps: float

    def time(self, n_bytes: float) -> float:
        return self.alpha_s + max(n_bytes, 0.0) / self.beta_Bps

    def to_dict(self) -> dict[str, float]:
        return {"latency_us": self.alpha_s * 1e6, "bandwidth_GBps": self.beta_Bps / 1e9}

    @staticmethod
    def from_dict(d: dict[str, float]) -> AlphaBeta:
        return AlphaBeta(alpha_s=d["latency_us"] * 1e-6, beta_Bps=d["bandwidth_GBps"] * 1e9)


def fit(sizes: list[float], times: list[float]) -> AlphaBeta:
    """Weighted least squares t = a + b n minimising the RELATIVE error (weights 1/t^2), so the small sizes
    pin the latency and the large ones the bandwidth; a >= 0 and b > 0 (clamped); beta = 1/b."""
    if len(sizes) != len(times) or len(sizes) < 2:
        raise ValueError(f"need >= 2 (size, time) points, got {len(sizes)} sizes and {len(times)} times")
    w = [1.0 / max(t, 1e-12) ** 2 for t in times]
    sw = sum(w)
    mx = sum(wi * x for wi, x in zip(w, sizes)) / sw
    my = sum(wi * y for wi, y in zip(w, times)) / sw
    sxx = sum(wi * (x - mx) ** 2 for wi, x in zip(w, sizes))
    b = sum(wi * (x - mx) * (y - my) for wi, x, y in zip(w, sizes, times)) / sxx if sxx else 0.0
    b = max(b, 1e-15)
    a = max(my - b * mx, 0.0)
    return AlphaBeta(alpha_s=a, beta_Bps=1.0 / b)


def interpolate(points: dict[float, float], n_bytes: float, tail: AlphaBeta) -> float:
    """t(n_bytes) read off measured {size: time} points: piecewise linear in log(size) and log(time) between the
    two sizes around it, the smallest size's time below them (latency-bound), the largest one's plus the extra
    bytes over ``tail``'s bandwidth above them. Where the transport is not one line (on a loopback socket a
    message above the socket buffer waits for both sides' progress threads: 64-128 KB took 0.5-0.8 ms one way
    against the 0.14 ms of the relative-error fit, MEASUREMENTS.md 2026-12-05) the points, not the fit, price
    the size a run sends."""
    if not points:
        return tail.time(n_bytes)
    xs = sorted(points)
    if n_bytes <= xs[0]:
        return points[xs[0]]
    if n_bytes >= xs[-1]:
        return points[xs[-1]] + (n_bytes - xs[-1]) / tail.beta_Bps
    hi = next(i for i, x in enumerate(xs) if x >= n_bytes)
    x0, x1 = xs[hi - 1], xs[hi]
    t0, t1 = max(points[x0], 1e-12), max(points[x1], 1e-12)
    f = math.log(n_bytes / x0) / math.log(x1 / x0)
    return math.exp(math.log(t0) + f * math.log(t1 / t0))


def line_through(n1: float, t1: float, n2: float, t2: float) -> tuple[float, float]:
    """(c, b) of t = c + b n through (n1, t1) and the smaller point (n2, t2), both clamped at 0 (a time that did
    not grow with n is all per-call cost); n1 == n2: all per-element cost. Extrapolates a memory-bound, element-
    wise step timed at two sizes to a size too large to time."""
    b = max((t1 - t2) / (n1 - n2), 0.0) if n1 > n2 else t1 / n1
    return max(t1 - b * n1, 0.0), b
