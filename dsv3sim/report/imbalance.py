"""Training imbalance over steps: the worst layer's max/mean expert load per step, one line per balancing mode.

DeepSeek-V3 §2.1.2 replaces the auxiliary balance loss with a per-expert bias updated each step (speed gamma);
`dsv3sim train --json` records each step's expert loads and `dsv3sim trace imbalance` turns several such runs
into ``{"quantity": ..., "runs": [{"label", "step", "max_over_mean_worst", "max_over_mean_worst_windowed"}]}``
(``dsv3sim.trace.imbalance``). The section reads JSON files of either kind under ``traces/`` (a train output
through the same ``imbalance_series``); the windowed series (loads summed over a window of steps) is drawn bold.
"""

from __future__ import annotations

import json
from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.report.data import num
from dsv3sim.report.page import Section, esc, missing, note, plot
from dsv3sim.trace.imbalance import imbalance_series

VALUE = "expert_load_max_over_mean"
MAX_FILE_BYTES = 20 * 2 ** 20


def extract(obj) -> dict[str, tuple[list, list]]:
    """{label: (steps, worst-layer max/mean)} (and "label (windowed)") of a ``dsv3sim trace imbalance`` output
    or of one ``dsv3sim train --json`` output; {} for anything else."""
    if not isinstance(obj, dict):
        return {}
    if isinstance(obj.get("history"), list):
        try:
            runs = [imbalance_series(obj)]
        except ConfigError:  # a train output without per-step expert loads (a dense model)
            return {}
    else:
        runs = obj.get("runs") if isinstance(obj.get("runs"), list) else []
    out: dict[str, tuple[list, list]] = {}
    for i, run in enumerate(runs):
        ys = run.get("max_over_mean_worst")
        if not ys:
            continue
        st = [num(x) for x in run.get("step", range(len(ys)))]
        label = str(run.get("label") or run.get("balance") or f"run {i}")
        label = label if label not in out else f"{label} ({i})"
        out[label] = (st, [num(y) for y in ys])
        yw = run.get("max_over_mean_worst_windowed")
        if isinstance(yw, list) and len(yw) == len(ys):
            out[f"{label} (windowed)"] = (st, [num(y) for y in yw])
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

    title = "Expert-load imbalance during training"
    series: dict[str, tuple[list, list]] = {}
    origin = ""
    if result.get("type", "training") == "training" and "sweep" not in result:
        series, used = from_traces_dir(ctx.traces_dir)  # training runs only: serving reports skip this
        origin = f"traces/ ({', '.join(used)})" if used else ""
    if not series:
        return missing("imbalance", title, "no imbalance-over-steps series under traces/")
    sec = Section(key="imbalance", title=title)
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
    last = ", ".join(f"{esc(m)}: {series[m][1][-1]:.2f}" for m in sorted(series) if series[m][1])
    sec.body = (note(f"Aux-loss-free balancing (DeepSeek-V3 §2.1.2) vs an auxiliary loss vs none, from "
                     f"{esc(origin)}. Final step: {last}.") + plot(sec, ctx, "imb", fig, title="Worst-layer max/mean expert load per training step", xaxis_title="step",
                     yaxis_title="max / mean load", height=360))
    return sec
