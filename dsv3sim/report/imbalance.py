"""Training imbalance over steps: expert_load_max_over_mean per step for aux-loss-free, aux-loss and none.

DeepSeek-V3 §2.1.2 replaces the auxiliary balance loss with a per-expert bias updated each step (speed gamma);
`dsv3sim train` writes the worst-layer max/mean expert load per step for each balancing
mode (see ``dsv3sim/trace/FORMAT.md``). The series is taken from the result when it carries one, else from
JSON files under ``traces/`` that hold ``expert_load_max_over_mean``. Shapes read:
``{mode: [v...]}``, ``{mode: {"step": [...], "expert_load_max_over_mean": [...]}}``, ``{"series"|"modes": ...}``,
a list of ``{"step", "mode"|"balancing", "expert_load_max_over_mean"}`` and one file per mode
``{"balancing": mode, "step"|"steps": [...], "expert_load_max_over_mean": [...]}``, and
``dsv3sim.trace.imbalance.imbalance_from_files`` output ``{"quantity": ..., "runs": [{"label", "step",
"max_over_mean_worst"}]}`` (the worst layer per step is plotted).
"""

from __future__ import annotations

import json
from pathlib import Path

from dsv3sim.report.data import num, pick
from dsv3sim.report.page import Section, absent, esc, figure_html, note

VALUE = "expert_load_max_over_mean"
MODE_KEYS = ("mode", "balancing", "balance", "method", "bias_mode")
RESULT_KEYS = ("training_imbalance", "imbalance_over_steps", "imbalance", "balance_curves")
MAX_FILE_BYTES = 20 * 2 ** 20
WORST_KEYS = ("max_over_mean_worst", VALUE, "values")


def _steps_for(d: dict, ys: list) -> list:
    st = d.get("step", d.get("steps"))
    return st if isinstance(st, list) and len(st) == len(ys) else list(range(len(ys)))


def _numbers(v) -> bool:
    return isinstance(v, list) and bool(v) and all(num(x) is not None for x in v)


def _rows(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def _pair(v) -> tuple[list, list] | None:
    if _numbers(v):
        return list(range(len(v))), [num(x) for x in v]
    if _rows(v):
        pts = [(num(r.get("step")), num(r.get(VALUE, r.get("value")))) for r in v]
        pts = [(s, y) for s, y in pts if s is not None and y is not None]
        return ([s for s, _ in pts], [y for _, y in pts]) if pts else None
    if isinstance(v, dict):
        ys = v.get(VALUE, v.get("values", v.get("value")))
        if isinstance(ys, list) and ys:
            return [num(s) for s in _steps_for(v, ys)], [num(y) for y in ys]
    return None


def _from_rows(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """A list of {"step", mode key, value} rows: one series per mode (or one unnamed series)."""
    if not any(k in rows[0] for k in MODE_KEYS):
        p = _pair(rows)
        return {"series": p} if p else {}
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(next((str(r[k]) for k in MODE_KEYS if k in r), "series"), []).append(r)
    return {m: p for m, rs in by.items() if (p := _pair(rs))}


def _from_runs(runs: list) -> dict[str, tuple[list, list]]:
    """``imbalance_from_files`` output: the worst layer per step of each run, and its windowed series."""
    out: dict[str, tuple[list, list]] = {}
    for i, run in enumerate(runs):
        ys = next((run[k] for k in WORST_KEYS if isinstance(run.get(k), list)), None) if isinstance(run, dict) else None
        if not ys:
            continue
        st = [num(x) for x in _steps_for(run, ys)]
        label = str(run.get("label") or run.get("balance") or f"run {i}")
        label = label if label not in out else f"{label} ({i})"
        out[label] = (st, [num(y) for y in ys])
        yw = run.get("max_over_mean_worst_windowed")
        if isinstance(yw, list) and len(yw) == len(ys):  # loads summed over a window of steps
            out[f"{label} (windowed)"] = (st, [num(y) for y in yw])
    return out


def _from_nested(obj: dict) -> dict[str, tuple[list, list]]:
    """The series under one of the grouping keys ("series", "modes", ...), if any."""
    for k in ("series", "modes", "by_mode", "curves", VALUE):
        v = obj.get(k)
        if isinstance(v, dict):
            sub = extract(v)
        elif isinstance(v, list):
            sub = {"series": p} if (p := _pair(v)) else {}
        else:
            continue
        if sub:
            return sub
    return {}


def _from_columns(obj: dict) -> dict[str, tuple[list, list]]:
    """{"step": [...], mode: [values]} columns, or {mode: series of any shape}."""
    out: dict[str, tuple[list, list]] = {}
    steps = obj.get("step", obj.get("steps"))
    for k, v in obj.items():
        if k in ("step", "steps"):
            continue
        if _numbers(v) and isinstance(steps, list) and len(v) == len(steps):
            out[k] = ([num(s) for s in steps], [num(x) for x in v])
        elif (p := _pair(v)) and (isinstance(v, dict) or k not in MODE_KEYS):
            out[k] = p
    return out


def extract(obj) -> dict[str, tuple[list, list]]:
    """{mode: (steps, values)} from any of the shapes in the module docstring."""
    if _rows(obj):
        return _from_rows(obj)
    if not isinstance(obj, dict):
        return {}
    if isinstance(obj.get("runs"), list) and (runs := _from_runs(obj["runs"])):
        return runs
    mode = next((str(obj[k]) for k in MODE_KEYS if isinstance(obj.get(k), str)), None)
    if mode and (p := _pair(obj)):
        return {mode: p}
    return _from_nested(obj) or _from_columns(obj)


def from_traces_dir(d: Path | None) -> tuple[dict[str, tuple[list, list]], list[str]]:
    series: dict[str, tuple[list, list]] = {}
    used: list[str] = []
    if d is None or not d.is_dir():
        return series, used
    for p in sorted(d.rglob("*.json")):
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                continue
            text = p.read_text()
        except OSError:
            continue
        if VALUE not in text:
            continue
        try:
            s = extract(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError):
            continue
        for m, v in s.items():
            key = m if m not in series else f"{m} ({p.stem})"
            series[key] = v
        if s:
            used.append(str(p.name))
    return series, used


def imbalance_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    sec = Section(key="imbalance", title="Expert-load imbalance during training")
    src = pick(result, *RESULT_KEYS, depth=2)
    series = extract(src) if src is not None else {}
    origin = "the result"
    if not series and result.get("type", "training") == "training" and "sweep" not in result:
        series, used = from_traces_dir(ctx.traces_dir)  # training runs only: serving reports skip this
        origin = f"traces/ ({', '.join(used)})" if used else ""
    if not series:
        sec.body, sec.present = absent("no imbalance-over-steps series in this result or under traces/"), False
        return sec
    fig = go.Figure()
    palette = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#72b7b2")
    bases = list(dict.fromkeys(m.removesuffix(" (windowed)") for m in sorted(series)))
    for m in sorted(series):
        st, ys = series[m]
        windowed = m.endswith(" (windowed)")
        col = palette[bases.index(m.removesuffix(" (windowed)")) % len(palette)]
        fig.add_trace(go.Scatter(x=st, y=ys, name=m, mode="lines", opacity=1.0 if windowed else 0.45,
                                 line={"color": col, "width": 2.5 if windowed else 1.2}))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888", annotation_text="perfect balance",
                  annotation_position="bottom left")
    fig.update_layout(title="Worst-layer max/mean expert load per training step", xaxis_title="step",
                      yaxis_title="max / mean load", height=360, margin={"l": 10, "r": 10, "t": 50, "b": 40})
    last = ", ".join(f"{esc(m)}: {series[m][1][-1]:.2f}" for m in sorted(series) if series[m][1])
    sec.body = (note(f"Aux-loss-free balancing (DeepSeek-V3 §2.1.2) vs an auxiliary loss vs none, from "
                     f"{esc(origin)}. Final step: {last}.") + figure_html(fig, ctx.fig_id("imb")))
    sec.n_figures = 1
    return sec
