"""Hockney's alpha-beta model of a transport, t(n) = alpha + n / beta (Hockney 1994, "The communication
challenge for MPP"), and its fit to measured (size, time) points; no torch."""

from __future__ import annotations

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


def line_through(n1: float, t1: float, n2: float, t2: float) -> tuple[float, float]:
    """(c, b) of t = c + b n through (n1, t1) and the smaller point (n2, t2), both clamped at 0 (a time that did
    not grow with n is all per-call cost); n1 == n2: all per-element cost. Extrapolates a memory-bound, element-
    wise step timed at two sizes to a size too large to time."""
    b = max((t1 - t2) / (n1 - n2), 0.0) if n1 > n2 else t1 / n1
    return max(t1 - b * n1, 0.0), b
