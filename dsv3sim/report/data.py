"""Numbers and matrices as the report shows them."""

from __future__ import annotations

from typing import Any

from dsv3sim.config.units import num, scaled

SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))  # (divisor, prefix), largest first


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


def as_matrix(x: Any) -> list[list[float]] | None:
    """A rectangular list of lists of numbers (layers x experts); a flat list of numbers is one row; else None."""
    if isinstance(x, list) and x and all(num(v) is not None for v in x):
        x = [x]
    if not isinstance(x, list) or not x or not all(isinstance(r, list) and len(r) == len(x[0]) for r in x):
        return None
    out = [[num(v) for v in r] for r in x]
    return None if not out[0] or any(v is None for r in out for v in r) else out  # type: ignore[return-value]
