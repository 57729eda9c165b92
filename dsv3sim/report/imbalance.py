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


def _pair(v) -> tuple[list, list] | None:
    if isinstance(v, list) and v and all(num(x) is not None for x in v):
        return list(range(len(v))), [num(x) for x in v]
    if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
        pts = [(num(r.get("step")), num(r.get(VALUE, r.get("value")))) for r in v]
        pts = [(s, y) for s, y in pts if s is not None and y is not None]
        return ([s for s, _ in pts], [y for _, y in pts]) if pts else None
    if isinstance(v, dict):
        ys = v.get(VALUE, v.get("values", v.get("value")))
        if isinstance(ys, list) and ys:
            st = v.get("step", v.get("steps"))
            st = st if isinstance(st, list) and len(st) == len(ys) else list(range(len(ys)))
            return [num(s) for s in st], [num(y) for y in ys]
    return None


def extract(obj) -> dict[str, tuple[list, list]]:
    """{mode: (steps, values)} from any of the shapes in the module docstring."""
    out: dict[str, tuple[list, list]] = {}
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        if any(k in obj[0] for k in MODE_KEYS):
            by: dict[str, list] = {}
            for r in obj:
                m = next((str(r[k]) for k in MODE_KEYS if k in r), "series")
                by.setdefault(m, []).append(r)
            for m, rs in by.items():
                p = _pair(rs)
                if p:
                    out[m] = p
            return out
        p = _pair(obj)
        return {"series": p} if p else {}
    if not isinstance(obj, dict):
        return out
    if isinstance(obj.get("runs"), list):  # dsv3sim.trace.imbalance.imbalance_from_files
        for i, run in enumerate(obj["runs"]):
            if not isinstance(run, dict):
                continue
            ys = next((run[k] for k in WORST_KEYS if isinstance(run.get(k), list)), None)
            if not ys:
                continue
            st = run.get("step", run.get("steps"))
            st = st if isinstance(st, list) and len(st) == len(ys) else list(range(len(ys)))
            label = str(run.get("label") or run.get("balance") or f"run {i}")
            label = label if label not in out else f"{label} ({i})"
            out[label] = ([num(x) for x in st], [num(y) for y in ys])
            yw = run.get("max_over_mean_worst_windowed")
            if isinstance(yw, list) and len(yw) == len(ys):  # loads summed over a window of steps
                out[f"{label} (windowed)"] = ([num(x) for x in st], [num(y) for y in yw])
        if out:
            return out
    mode = next((str(obj[k]) for k in MODE_KEYS if isinstance(obj.get(k), str)), None)
    if mode and _pair(obj):
        return {mode: _pair(obj)}
    for k in ("series", "modes", "by_mode", "curves", VALUE):
        if isinstance(obj.get(k), (dict, list)):
            sub = extract(obj[k]) if isinstance(obj[k], dict) else ({"series": _pair(obj[k])} if _pair(obj[k]) else {})
            if sub:
                return sub
    steps = obj.get("step", obj.get("steps"))
    for k, v in obj.items():
        if k in ("step", "steps"):
            continue
        if isinstance(v, list) and isinstance(steps, list) and len(v) == len(steps) and all(num(x) is not None for x in v):
            out[k] = ([num(s) for s in steps], [num(x) for x in v])
        else:
            p = _pair(v)
            if p and (isinstance(v, dict) or k not in MODE_KEYS):
                out[k] = p
    return out


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
