"""Timelines: the simulated pipeline per rank (F/B/W/F&B and communication) and a real trace beside it.

Slices come from the result JSON (``timeline`` events, or an embedded/sibling Chrome trace written by
``dsv3sim/results.py``), and optionally from a torch.profiler trace of a real run (``--chrome-trace``).
Each lane (rank x stream) is one row; slices are horizontal bars coloured by DeepSeek's profile-data names
(``attn(F)`` ... ``combine(B)``) or by pipeline kind (F, B, W, F&B). Above ``BAR_LIMIT`` slices a panel draws
line segments (one SVG path per colour) instead of bars, so a full DualPipe step stays responsive.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from dsv3sim.report.chrome_trace import Slice, category, merged_trace, read_slices
from dsv3sim.report.chrome_trace import sort_key as _k
from dsv3sim.report.data import num
from dsv3sim.report.page import Section, absent, esc, fmt, missing, note, plot, table
from dsv3sim.results import Timeline, group

BAR_LIMIT = 3000
MIN_VISIBLE = 1e-3  # slices shorter than this fraction of the time span are drawn this wide

COLORS = {
    # DeepSeek profile-data slice names
    "attn(F)": "#4c78a8", "mlp(F)": "#72b7b2", "dispatch(F)": "#f58518", "combine(F)": "#e45756",
    "attn(B)": "#54a24b", "mlp(B)": "#88d27a", "attn(W)": "#b279a2", "mlp(W)": "#d6a5c9",
    "dispatch(B)": "#ff9d45", "combine(B)": "#ff7f7f",
    # pipeline kinds
    "F": "#4c78a8", "B": "#54a24b", "W": "#b279a2", "F&B": "#eeca3b", "BW": "#2f7d32", "F&BW": "#d4a017", "send": "#9d755d", "recv": "#bab0ac",
    "optimizer": "#79706e", "bubble": "#e5e5e5", "dp_comm(exposed)": "#8c564b",
}
CATEGORY_COLORS = {"attn": "#4c78a8", "mlp": "#72b7b2", "dispatch": "#f58518", "combine": "#e45756",
                   "comm": "#9d755d", "pipeline": "#eeca3b", "optimizer": "#79706e", "idle": "#e5e5e5",
                   "other": "#bab0ac"}
MAX_LEGEND = 16
MAX_LANES = 64  # a figure shows at most this many lanes (the first ranks); Perfetto shows them all


def color_of(name: str) -> str:
    return COLORS.get(name) or CATEGORY_COLORS[category(name)]


def legend_key(name: str, names_by_time: list[str]) -> str:
    """Exact name when it is a known or frequent one, else its family (keeps the legend short)."""
    if name in COLORS or name in names_by_time[:MAX_LEGEND]:
        return name
    return f"other {category(name)}"


# ---------------------------------------------------------------- slices from a result

def slices_from_result(result: dict, base_dir: Path | None = None) -> tuple[list[Slice], str]:
    """Simulated slices stored in a result: its ``timeline`` (``{"events": [...]}`` from a simulation,
    ``{"per_rank": {rank: [...]}}`` from ``dsv3sim validate``), else the Chrome trace file it names
    (``chrome_trace_path``, written by ``dsv3sim run --chrome-trace``; ``chrome_trace``, by ``dsv3sim schedule``).
    A bare Chrome trace (``{"traceEvents": [...]}``) works too."""
    if isinstance(result.get("traceEvents"), list):
        return read_slices(result)[0], "Chrome trace"
    tl = result.get("timeline")
    ev = g.events if (g := group(Timeline, tl)) else None
    if isinstance(tl, dict) and isinstance(tl.get("per_rank"), dict):
        ev = [dict(e, rank=r) for r, es in tl["per_rank"].items() for e in es]
    if ev and (ss := _slices_from_events(ev)):
        return ss, "timeline"
    path = result.get("chrome_trace_path") or result.get("chrome_trace")
    if not isinstance(path, str):
        return [], ""
    p = Path(path)
    if not p.is_absolute() and base_dir is not None and not p.exists():
        p = base_dir / p
    return (read_slices(p)[0], f"Chrome trace {p.name}") if p.exists() else ([], "")


def _slices_from_events(events: list[dict]) -> list[Slice]:
    """Events ``{rank, stream, name, start_s, end_s}`` (validate's: ``t0``, ``t1``) as slices from time 0; the
    micro-batch, chunk, stage and layer they carry go to the hover text."""
    out = []
    for e in events:
        detail = "" if e.get("microbatch") is None else f"microbatch {e['microbatch']}"
        for k in ("chunk", "stage", "layer", "step"):
            if e.get(k) is not None and e.get(k) != -1:
                detail += f" {k} {e[k]}"
        start, end = num(e.get("start_s", e.get("t0"))), num(e.get("end_s", e.get("t1")))
        if start is None or end is None:
            continue
        rank, stream = e.get("rank", 0), e.get("stream", "compute")
        out.append(Slice(lane=f"rank {rank} / {stream}", lane_key=(_k(rank), _k(stream)), name=str(e.get("name")),
                         start_s=start, dur_s=max(0.0, end - start), detail=detail.strip()))
    t0 = min((s.start_s for s in out), default=0.0)
    if t0 != 0:
        out = [Slice(lane=s.lane, lane_key=s.lane_key, name=s.name, start_s=s.start_s - t0, dur_s=s.dur_s,
                     detail=s.detail) for s in out]
    return out


# ---------------------------------------------------------------- figure

def cap_lanes(ss: list[Slice], max_lanes: int = MAX_LANES) -> tuple[list[Slice], int]:
    """The slices of the first ``max_lanes`` lanes (by rank, then stream) and the number of lanes dropped."""
    lanes = sorted({(x.lane_key, x.lane) for x in ss})
    if len(lanes) <= max_lanes:
        return ss, 0
    keep = {lane for _, lane in lanes[:max_lanes]}
    return [x for x in ss if x.lane in keep], len(lanes) - max_lanes


def _panel_rows(panels: list[tuple[str, list[Slice]]]) -> tuple[list[int], bool]:
    """Row height (lanes) of each panel, and whether the panels share one time axis (spans within 3x)."""
    heights = [max(2, len({x.lane for x in ss})) for _, ss in panels]
    spans = [max(x.end_s for x in ss) for _, ss in panels]
    return heights, len(panels) < 2 or max(spans) <= 3 * max(min(spans), 1e-12)


def timeline_figure(panels: list[tuple[str, list[Slice]]], title: str):
    """One subplot per panel (e.g. simulated, real), lanes as rows, shared time axis."""
    from plotly.subplots import make_subplots

    panels = [(t, cap_lanes(s)[0]) for t, s in panels if s]
    span = max((x.end_s for _, ss in panels for x in ss), default=0.0)
    scale, unit = (1e3, "ms") if span >= 1e-3 else (1e6, "µs")
    heights, shared = _panel_rows(panels)  # not shared: each panel its own time axis
    many = len(panels) > 1
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=shared,
                        vertical_spacing=(0.08 if shared else 0.2) if many else 0,
                        subplot_titles=[t for t, _ in panels] if many else None,
                        row_heights=[h / sum(heights) for h in heights])
    names_by_time = _names_by_time(panels)
    shown: set[str] = set()
    for row, (_, ss) in enumerate(panels, start=1):
        _draw_panel(fig, row, ss, names_by_time, shown, span=span, scale=scale, unit=unit)
    for row in range(1, len(panels) + 1) if not shared else (len(panels),):
        fig.update_xaxes(title_text=f"time ({unit})", row=row, col=1)
    height = max(140 + 22 * sum(heights) + 60 * len(panels), 80 + 21 * len(shown))  # lanes, or the legend
    if not shared:
        title += " (each panel on its own time axis: their spans differ more than 3x)"
    fig.update_layout(barmode="overlay", title=title, height=min(2400, height),
                      margin={"l": 10, "r": 10, "t": 60, "b": 40}, legend={"orientation": "v"}, bargap=0.1,
                      plot_bgcolor="#fafbfc")
    return fig


def _names_by_time(panels: list[tuple[str, list[Slice]]]) -> list[str]:
    """Slice names by total busy time over all panels, busiest first (the legend keeps the busiest)."""
    by_time: dict[str, float] = defaultdict(float)
    for _, ss in panels:
        for x in ss:
            by_time[x.name] += x.dur_s
    return sorted(by_time, key=lambda n: -by_time[n])


def _draw_panel(fig, row: int, ss: list[Slice], names_by_time: list[str], shown: set[str], *, span: float,
                scale: float, unit: str) -> None:
    """Panel ``row``: one trace per legend key (bars, or lines past BAR_LIMIT slices); adds the keys to ``shown``."""
    lanes = sorted({(x.lane_key, x.lane) for x in ss})
    order = [lane for _, lane in lanes]
    groups: dict[str, list[Slice]] = defaultdict(list)
    for x in ss:
        groups[legend_key(x.name, names_by_time)].append(x)
    use_bars = len(ss) <= BAR_LIMIT
    durs = sorted(x.dur_s for x in ss)
    edge = 0.6 if durs[len(durs) // 2] > span / 300 else 0.0  # white borders only where slices are wide
    width = max(2.0, min(16.0, 360.0 / max(1, len(order))))
    min_w = span * MIN_VISIBLE  # drawn width floor, so sub-pixel slices stay visible (hover: true duration)
    known = list(COLORS)
    for key in sorted(groups, key=lambda k: (known.index(k) if k in known else len(known),
                                             -sum(x.dur_s for x in groups[k]))):
        xs = groups[key]
        col = CATEGORY_COLORS[key[6:]] if key.startswith("other ") and key[6:] in CATEGORY_COLORS \
            else color_of(key)
        common = {"name": key, "legendgroup": key, "showlegend": key not in shown, "marker_color": col}
        shown.add(key)
        if use_bars:
            trace = _bar_trace(xs, common, min_w=min_w, scale=scale, unit=unit, edge=edge)
        else:
            trace = _line_trace(xs, common, min_w=min_w, scale=scale, unit=unit, width=width)
        fig.add_trace(trace, row=row, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed", row=row, col=1,
                     type="category", tickfont={"size": 10})


def _bar_trace(xs: list[Slice], common: dict, *, min_w: float, scale: float, unit: str, edge: float):
    """Slices as horizontal bars (hover: name, lane, start, true duration)."""
    import plotly.graph_objects as go

    return go.Bar(
        orientation="h", y=[x.lane for x in xs], x=[max(x.dur_s, min_w) * scale for x in xs],
        base=[x.start_s * scale for x in xs], width=0.8,
        hovertext=[f"{x.name} {x.detail}<br>{x.lane}<br>start {x.start_s * scale:.4g} {unit}, "
                   f"dur {x.dur_s * scale:.4g} {unit}" for x in xs],
        hoverinfo="text", marker_line_width=edge, marker_line_color="#ffffff", **common)


def _line_trace(xs: list[Slice], common: dict, *, min_w: float, scale: float, unit: str, width: float):
    """Slices as thick line segments, one trace for many slices (cheaper than bars)."""
    import plotly.graph_objects as go

    px, py, tx = [], [], []
    for x in xs:
        px += [x.start_s * scale, (x.start_s + max(x.dur_s, min_w)) * scale, None]
        py += [x.lane, x.lane, None]
        t = f"{x.name} {x.dur_s * scale:.4g} {unit}"
        tx += [t, t, None]
    key, col = common["name"], common["marker_color"]
    return go.Scatter(x=px, y=py, mode="lines", line={"width": width, "color": col, "simplify": False},
                      hovertext=tx, hoverinfo="text", name=key, legendgroup=key, showlegend=common["showlegend"])


def summarize_slices(ss: list[Slice]) -> list[tuple[str, float, int]]:
    """(name, total busy seconds, count) per slice name, busiest first."""
    tot: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for x in ss:
        tot[x.name][0] += x.dur_s
        tot[x.name][1] += 1
    return sorted(((n, v[0], v[1]) for n, v in tot.items()), key=lambda r: -r[1])


# ---------------------------------------------------------------- sections

def pipeline_section(result: dict, ctx) -> Section:
    ss, src = slices_from_result(result, ctx.base_dir)
    title = "Pipeline timeline per rank"
    if not ss:
        return missing("timeline", title, "no timeline in this result (run with a timeline / --chrome-trace to "
                                          "record one)")
    sec = Section(key="timeline", title=title)
    dropped = cap_lanes(ss)[1]
    fig = timeline_figure([("simulated", ss)], f"Simulated step: {len({x.lane for x in ss})} lanes, {len(ss)} "
                          f"slices (from {src})" + (f"; first {MAX_LANES} lanes shown" if dropped else ""))
    sec.body = (note("Each row is one rank's stream (compute, communication). F/B/W are forward, backward-input "
                     "and weight-gradient chunks; F&amp;B an overlapped forward-backward pair (DualPipe); "
                     "attn/mlp/dispatch/combine use DeepSeek's profile-data names. Zoom by dragging; slices shorter than "
                     "0.1 % of the step are drawn 0.1 % wide so they stay visible (hover gives the true duration). "
                     "The full trace opens in Perfetto: <code>dsv3sim run --chrome-trace</code>.")
                + plot(sec, ctx, "timeline", fig))
    return sec


def _merged(ctx, sim: list[Slice], real: list[Slice]) -> str:
    """Write simulated + real lanes as one Chrome trace beside the report; the sentence linking it."""
    if ctx.merged_trace_out is None:
        return ""
    ctx.merged_trace_out.write_text(json.dumps(merged_trace([("simulated", sim), ("real", real)])))
    name = esc(ctx.merged_trace_out.name)
    return (f" Both timelines in one file for Perfetto: <a href=\"{name}\">{name}</a> (simulated lanes first, "
            "real lanes below).")


def comparison_section(result: dict, ctx) -> Section | None:
    """Simulated vs real (torch.profiler) timelines side by side; None when no real trace was given."""
    if ctx.chrome_trace is None:
        return None
    sec = Section(key="compare", title="Simulated vs real trace")
    real, info = read_slices(ctx.chrome_trace)
    sim, src = slices_from_result(result, ctx.base_dir)
    if not real:
        sec.body = absent(f"{ctx.chrome_trace}: no complete events found")
        return sec
    fig = timeline_figure([("simulated" + (f" ({src})" if src else ""), sim), (f"real: {info['kind']}", real)],
                          "Simulated (top) and measured (bottom)")
    s_tot = {n: t for n, t, _ in summarize_slices(sim)}
    rows = [[n, c, f"{t * 1e3:.4g}", fmt(s_tot.get(n), lambda v: f"{v * 1e3:.4g}")]
            for n, t, c in summarize_slices(real)[:20]]
    dropped = f", {info['dropped']} later slices dropped" if info["dropped"] else ""
    sec.body = (
        note(f"Real trace <code>{esc(Path(str(ctx.chrome_trace)).name)}</code>: {info['kind']}, {info['kept']} "
             f"slices on {info['lanes']} lanes{dropped}. Both files are Chrome Trace Event JSON: open them in "
             "<a href='https://ui.perfetto.dev'>ui.perfetto.dev</a> (Open trace file) or chrome://tracing to see "
             "every slice." + _merged(ctx, sim, real))
        + plot(sec, ctx, "compare", fig)
        + table(["slice name (real)", "count", "busy ms (real)", "busy ms (simulated)"], rows, {1, 2, 3}))
    return sec
