"""Numbers read from result JSON and SI seconds written for people: ``num`` (a finite float or None), ``fmt_time``."""

from __future__ import annotations

import math
from typing import Any


def num(x: Any) -> float | None:
    """A finite float, or None (strings like "12.5" are accepted; bools are not numbers)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def scaled(x: float | None, steps, last) -> str:
    """``x`` written by the first (threshold, writer) of ``steps`` whose threshold |x| reaches, else by ``last``."""
    return "n/a" if x is None else next((f(x) for t, f in steps if abs(x) >= t), None) or last(x)


def fmt_time(seconds: float | None) -> str:
    return scaled(seconds, ((3600, lambda v: f"{v / 3600:.3g} h"), (1, lambda v: f"{v:.4g} s"),
                            (1e-3, lambda v: f"{v * 1e3:.4g} ms")), lambda v: f"{v * 1e6:.4g} µs")
