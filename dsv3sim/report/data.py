"""Reading a result JSON for the report: load it, split a study into its scenarios, format numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.units import fmt_time, num, scaled  # noqa: F401 -- fmt_time: the report formats through here

# Keys that mark a dict as one result (not a {scenario name: result} wrapper).
RESULT_MARKERS = (
    "step_time_s", "mfu", "tokens_per_s", "schema", "scenario", "kind", "timeline", "chrome_trace",
    "prefill_tokens_per_s_per_node", "decode_tokens_per_s_per_node", "sweep", "rows", "validation",
    "memory_per_gpu", "infeasible", "gpu_hours_per_trillion_tokens", "breakdown", "traceEvents", "cases",
)


def _plain(v):
    return v.to_dict() if hasattr(v, "to_dict") and not isinstance(v, dict) else v


def load(source) -> dict:
    """A result as a dict: from a dict, a Result object (``to_dict``), a list of rows (a sweep) or a JSON path."""
    if not isinstance(source, (str, Path)):
        data = _plain(source)
        return {"sweep": [_plain(r) for r in data]} if isinstance(data, list) else {
            k: _plain(v) for k, v in data.items()}
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"result JSON not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not JSON: {e}") from e
    if not isinstance(data, (dict, list)):
        raise ConfigError(f"{p}: expected a JSON object (a result) or a list (sweep rows), got {type(data).__name__}")
    return {"sweep": data} if isinstance(data, list) else data


def is_result(d) -> bool:
    return isinstance(d, dict) and any(k in d for k in RESULT_MARKERS)


def split_results(data: dict) -> list[tuple[str, dict]]:
    """[(scenario name, result)]: one entry for a plain result, several when the file nests by scenario."""
    subs = [(k, v) for k, v in data.items() if is_result(v)]
    if is_result(data) or not subs or len(subs) != sum(isinstance(v, dict) for v in data.values()):
        return [("", data)]
    return subs


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
