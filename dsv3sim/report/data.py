"""Reading a result JSON for the report: load it, split a multi-scenario file, format numbers.

Reports render from the result JSON only (house style 13: reports never re-run a simulation). Sections read the
keys ``dsv3sim/results.py`` (and ``dsv3sim sweep``, ``dsv3sim validate``, ``dsv3sim plan``) write, where they
write them; ``dsv3sim run`` of a study nests whole results by scenario name, which ``split_results`` undoes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError

# Keys that mark a dict as one result (not a {scenario name: result} wrapper).
RESULT_MARKERS = (
    "step_time_s", "mfu", "tokens_per_s", "schema", "scenario", "kind", "timeline", "chrome_trace",
    "prefill_tokens_per_s_per_node", "decode_tokens_per_s_per_node", "sweep", "rows", "validation",
    "memory_per_gpu", "infeasible", "gpu_hours_per_trillion_tokens", "breakdown", "traceEvents",
)


def load(source) -> dict:
    """A result as a dict: from a dict, a Result object (``to_dict``), a list of rows (a sweep) or a JSON path."""
    if hasattr(source, "to_dict") and not isinstance(source, dict):
        return source.to_dict()
    if isinstance(source, list):
        return {"sweep": [r.to_dict() if hasattr(r, "to_dict") else r for r in source]}
    if isinstance(source, dict):
        return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in source.items()}
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"result JSON not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not JSON: {e}") from e
    if isinstance(data, list):  # a bare sweep: list of rows
        return {"sweep": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object (a result) or a list (sweep rows), got {type(data).__name__}")
    return data


def split_results(data: dict) -> list[tuple[str, dict]]:
    """[(scenario name, result)]: one entry for a plain result, several when the file nests by scenario."""
    if any(k in data for k in RESULT_MARKERS):
        return [("", data)]
    subs = [(k, v) for k, v in data.items() if isinstance(v, dict) and any(m in v for m in RESULT_MARKERS)]
    if subs and len(subs) == sum(isinstance(v, dict) for v in data.values()):
        return subs
    return [("", data)]


def num(x: Any) -> float | None:
    """A finite float, or None (strings like "12.5" are accepted; bools are not numbers)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_si(x: float | None, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "n/a"
    for div, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.{digits}g} {s}{unit}".rstrip()
    return f"{x:.{digits}g} {unit}".rstrip()


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    a = abs(seconds)
    if a >= 3600:
        return f"{seconds / 3600:.3g} h"
    if a >= 1:
        return f"{seconds:.4g} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.4g} ms"
    return f"{seconds * 1e6:.4g} µs"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "n/a"
    for div, s in ((2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if abs(b) >= div:
            return f"{b / div:.4g} {s}"
    return f"{b:.0f} B"


def as_matrix(x: Any) -> list[list[float]] | None:
    """A rectangular list of lists of numbers (layers x experts), or None."""
    if not isinstance(x, list) or not x or not all(isinstance(r, list) for r in x):
        return None
    w = len(x[0])
    if w == 0 or any(len(r) != w for r in x):
        return None
    out = [[num(v) for v in r] for r in x]
    return None if any(v is None for r in out for v in r) else out  # type: ignore[return-value]


def fmt_num(v: float) -> str:
    """Plain numbers for tables: thousands separators from 10,000 up, 4 significant digits below."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
