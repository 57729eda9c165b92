"""Numbers read from result JSON and written for people: ``num`` (a finite float or None), ``fmt_time`` (SI
seconds), ``fmt_si`` (SI prefixes), ``fmt_bytes`` (binary prefixes), ``fmt_num`` (table cells)."""

from __future__ import annotations

import math
from typing import Any

SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))  # (divisor, prefix), largest first


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


def fmt_si(x: float | None, unit: str = "", digits: int = 3) -> str:
    steps = [(d, lambda v, d=d, s=s: f"{v / d:.{digits}g} {s}{unit}".rstrip()) for d, s in SI]
    return scaled(x, steps, lambda v: f"{v:.{digits}g} {unit}".rstrip())


def fmt_bytes(b: float | None) -> str:
    steps = [(2 ** p, lambda v, p=p, s=s: f"{v / 2 ** p:.4g} {s}")
             for p, s in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB"))]
    return scaled(b, steps, lambda v: f"{v:.0f} B")


def fmt_num(v: float) -> str:
    """Plain numbers for tables: thousands separators from 10,000 up, 4 significant digits below."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
