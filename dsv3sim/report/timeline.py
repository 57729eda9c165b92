"""Timelines: the simulated pipeline per rank (F/B/W/F&B, communication) and a real trace beside it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from dsv3sim.report.page import COLOURS, absent, fmt, need, note, say, table
from dsv3sim.results import trace_events as te
from dsv3sim.results.trace_events import Slice, busy_by_name, category, first_lanes

BAR_LIMIT = 3000
MIN_VISIBLE = 1e-3  # slices shorter than this fraction of the time span are drawn this wide
MAX_LEGEND = 16
MAX_LANES = 64  # a figure shows at most this many lanes (the first ranks); Perfetto shows them all
COLORS, CATEGORY_COLORS = COLOURS["slice"], COLOURS["family"]  # by slice name (in legend order), by family


def color_of(name: str) -> str:
    """The colour of a slice name, or of a legend key "other <family>"."""
    if name.startswith("other ") and name[6:] in CATEGORY_COLORS:
        return CATEGORY_COLORS[name[6:]]
    return COLORS.get(name) or CATEGORY_COLORS[category(name)]


def _subplots(panels: list[tuple[str, list[Slice], list[str]]]):
    """(figure with a row per panel, row heights in lanes, whether the panels share one time axis: spans within 3x)."""
    from plotly.subplots import make_subplots

    heights = [max(2, len(order)) for _, _, order in panels]
    spans = [max(x.end_s for x in ss) for _, ss, _ in panels]
    shared, many = len(panels) < 2 or max(spans) <= 3 * max(min(spans), 1e-12), len(panels) > 1
    return make_subplots(rows=len(panels), cols=1, shared_xaxes=shared,
                         vertical_spacing=(0.08 if shared else 0.2) if many else 0,
                         subplot_titles=[t for t, _, _ in panels] if many else None,
                         row_heights=[h / sum(heights) for h in heights]), heights, shared


def timeline_figure(panels: list[tuple[str, list[Slice]]], title: str):
    """One subplot per panel (e.g. simulated, real), lanes as rows, at most MAX_LANES each (their order sorted once)."""
    panels = [(t, *first_lanes(s, MAX_LANES)[:2]) for t, s in panels if s]  # (title, slices, lanes in order)
    span = max((x.end_s for _, ss, _ in panels for x in ss), default=0.0)
    axis = (span, *((1e3, "ms") if span >= 1e-3 else (1e6, "µs")))
    fig, heights, shared = _subplots(panels)
    by_time, shown = list(busy_by_name([x for _, ss, _ in panels for x in ss])), set()
    for row, (_, ss, order) in enumerate(panels, start=1):
        _draw_panel(fig, row, ss, order, by_time[:MAX_LEGEND], shown, axis)
        if not shared or row == len(panels):
            fig.update_xaxes(title_text=f"time ({axis[2]})", row=row, col=1)
    title += "" if shared else " (each panel on its own time axis: their spans differ more than 3x)"
    height = max(140 + 22 * sum(heights) + 60 * len(panels), 80 + 21 * len(shown))  # lanes, or the legend
    return fig.update_layout(barmode="overlay", title=title, height=min(2400, height), bargap=0.1,
                             margin={"l": 10, "r": 10, "t": 60, "b": 40}, legend={"orientation": "v"},
                             plot_bgcolor="#fafbfc")


def _draw_panel(fig, row: int, ss: list[Slice], order: list[str], frequent: list[str], shown: set, axis: tuple):
    """Panel ``row``: one trace per legend key (a known or frequent name, else "other <family>"), its lanes in
    ``order`` (rank order); bars, or past BAR_LIMIT slices line segments (one SVG path per colour)."""
    groups: dict[str, list[Slice]] = defaultdict(list)
    for x in ss:
        groups[x.name if x.name in COLORS or x.name in frequent else f"other {category(x.name)}"].append(x)
    durs, rank = sorted(x.dur_s for x in ss), {k: i for i, k in enumerate(COLORS)}
    edge = 0.6 if durs[len(durs) // 2] > axis[0] / 300 else 0.0  # white borders only where slices are wide
    width = max(2.0, min(16.0, 360.0 / max(1, len(order)))) if len(ss) > BAR_LIMIT else None
    for key in sorted(groups, key=lambda k: (rank.get(k, len(rank)), -sum(x.dur_s for x in groups[k]))):
        fig.add_trace(_trace(key, groups[key], key not in shown, axis, edge, width), row=row, col=1)
        shown.add(key)
    fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed", row=row, col=1,
                     type="category", tickfont={"size": 10})


def _trace(key: str, xs: list[Slice], legend: bool, axis: tuple, edge: float, width: float | None):
    """Bars (hover: name, lane, start, true duration), or thick line segments of ``width``; slices shorter than
    MIN_VISIBLE of the span are drawn that wide."""
    import plotly.graph_objects as go

    (span, scale, unit), common = axis, {"name": key, "legendgroup": key, "showlegend": legend}
    drawn = [max(x.dur_s, span * MIN_VISIBLE) for x in xs]
    if width is None:
        return go.Bar(orientation="h", y=[x.lane for x in xs], x=[w * scale for w in drawn],
                      base=[x.start_s * scale for x in xs], width=0.8, marker_color=color_of(key), hoverinfo="text",
                      hovertext=[f"{x.name} {x.detail}<br>{x.lane}<br>start {x.start_s * scale:.4g} {unit}, "
                                 f"dur {x.dur_s * scale:.4g} {unit}" for x in xs],
                      marker_line_width=edge, marker_line_color="#ffffff", **common)
    return go.Scatter(x=[v for x, w in zip(xs, drawn) for v in (x.start_s * scale, (x.start_s + w) * scale, None)],
                      y=[v for x in xs for v in (x.lane, x.lane, None)],
                      mode="lines", line={"width": width, "color": color_of(key), "simplify": False},
                      hovertext=[v for x in xs for v in [f"{x.name} {x.dur_s * scale:.4g} {unit}"] * 2 + [None]],
                      hoverinfo="text", **common)


def pipeline(result: dict, ctx) -> str:
    ss, src = te.slices_from_result(result, ctx.base_dir)
    need(ss, "no timeline in this result (run with a timeline / --chrome-trace to record one)")
    n = len({(x.lane_key, x.lane) for x in ss})  # the lanes (``lanes``), counted without sorting them
    fig = timeline_figure([("simulated", ss)], f"Simulated step: {n} lanes, {len(ss)} slices (from {src})"
                          + (f"; first {MAX_LANES} lanes shown" if n > MAX_LANES else ""))
    return note(say("timeline.how")) + ctx.plot("timeline", fig)


def compare(result: dict, ctx) -> str | None:
    """Simulated vs real (torch.profiler) timelines one above the other; None when no real trace was given.
    Writes both as one Chrome trace beside the report (``ctx.merged_trace_out``)."""
    if ctx.chrome_trace is None:
        return None
    real, info = te.read_slices(ctx.chrome_trace)
    sim, src = te.slices_from_result(result, ctx.base_dir)
    if not real:
        return absent(f"{ctx.chrome_trace}: no complete events found")
    if out := ctx.merged_trace_out:
        out.write_text(json.dumps(te.merged_trace([("simulated", sim), ("real", real)])))
    merged = say("timeline.merged", name=out.name) if out else ""
    fig = timeline_figure([("simulated" + (f" ({src})" if src else ""), sim), (f"real: {info['kind']}", real)],
                          "Simulated (top) and measured (bottom)")
    sim_busy = busy_by_name(sim)
    rows = [[n, c, f"{t * 1e3:.4g}", fmt(sim_busy.get(n, [None])[0], lambda v: f"{v * 1e3:.4g}")]
            for n, (t, c) in list(busy_by_name(real).items())[:20]]
    dropped = f", {info['dropped']} later slices dropped" if info["dropped"] else ""
    return (note(say("timeline.real", name=Path(str(ctx.chrome_trace)).name, **info | {"dropped": dropped}) + merged)
            + ctx.plot("compare", fig)
            + table(["slice name (real)", "count", "busy ms (real)", "busy ms (simulated)"], rows, {1, 2, 3}))
