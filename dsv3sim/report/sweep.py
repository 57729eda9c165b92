"""Sweep charts: each metric against each swept parameter, infeasible points kept with their reason."""

from __future__ import annotations

from dsv3sim.config.units import fmt_num, num
from dsv3sim.report.page import PALETTE, need, note, say, table
from dsv3sim.workload.sweep import split_row, sweep_axes

METRICS = ("step_time_s", "tokens_per_s", "mfu", "gpu_hours_per_trillion_tokens", "decode_tokens_per_s_per_node",
           "prefill_tokens_per_s_per_node", "ttft_s", "tpot_s")
MAX_CHARTS, MAX_METRICS, MAX_PARAM_CHARS, MAX_TABLE, MAX_LINES = 6, 4, 40, 60, 24


def _metric(fig, col: int, m: str, x: str, groups: dict, numeric_x: bool) -> None:
    """Metric ``m`` against ``x`` in subplot ``col``: a line per group."""
    for gi, (g, pts) in enumerate(list(groups.items())[:MAX_LINES]):
        ok = [(p.get(x), ms[m]) for p, ms, r in pts if not r and m in ms]
        ok = sorted(ok, key=lambda t: num(t[0])) if numeric_x else ok
        fig.add_scatter(x=[a for a, _ in ok], y=[b for _, b in ok], name=g or m, legendgroup=g, row=1, col=col,
                        showlegend=col == 1 and bool(g), mode="lines+markers",
                        line={"color": PALETTE[gi % len(PALETTE)]})
    fig.update_xaxes(title_text=x, type="linear" if numeric_x else "category", row=1, col=col)


def _infeasible(fig, col: int, m: str, x: str, flat: list) -> None:
    """Infeasible points as crosses just below the lowest feasible value of ``m``."""
    bad = [(p.get(x), r) for p, _, r in flat if r]
    ys = [ms[m] for _, ms, r in flat if not r and m in ms]
    floor = (min(ys) - 0.05 * ((max(ys) - min(ys)) or abs(min(ys)) or 1.0)) if ys else 0.0
    fig.add_scatter(x=[a for a, _ in bad], y=[floor] * len(bad), mode="markers", name="infeasible",
                    marker={"symbol": "x", "color": "#e45756", "size": 10}, legendgroup="infeasible",
                    showlegend=col == 1, hovertext=[r for _, r in bad], hoverinfo="text+x", row=1, col=col)


def _chart(ctx, i: int, flat: list, x: str, axes: list[str], mcols: list[str]) -> str:
    """Each metric of ``mcols`` side by side against ``x``, a line per value of the next axis."""
    from plotly.subplots import make_subplots

    colour_by = next((k for k in axes if k != x), None)
    groups: dict[str, list] = {}
    for p, ms, r in flat:
        groups.setdefault("" if colour_by is None else f"{colour_by}={p.get(colour_by)}", []).append((p, ms, r))
    fig = make_subplots(rows=1, cols=len(mcols), subplot_titles=mcols, horizontal_spacing=0.06)
    numeric_x, bad = all(num(p.get(x)) is not None for p, _, _ in flat), any(r for *_, r in flat)
    for col, m in enumerate(mcols, start=1):
        _metric(fig, col, m, x, groups, numeric_x)
        if bad:
            _infeasible(fig, col, m, x, flat)
    return ctx.plot(f"sweep{i}", fig, title=f"vs {x}" + (f", coloured by {colour_by}" if colour_by else ""),
                    height=340, margin={"l": 10, "r": 10, "t": 70, "b": 40}, showlegend=bool(colour_by) or bad)


def _table(flat: list, varying: list[str], mcols: list[str]) -> str:
    trows = [[p.get(k, "") for k in varying] + [fmt_num(ms[m]) if m in ms else "" for m in mcols] + [r or ""]
             for p, ms, r in flat[:MAX_TABLE]]
    return table(varying + mcols + ["infeasible because"], trows) + (note(
        f"first {MAX_TABLE} of {len(flat)} rows shown; the JSON holds them all") if len(flat) > MAX_TABLE else "")


def sweep(result: dict, ctx) -> str:
    """Charts and table of sweep rows."""
    v = result.get("sweep") if isinstance(result.get("sweep"), list) else []
    rows = need([r for r in v if isinstance(r, dict)], "not a sweep (no rows in this result)")
    flat = [split_row(r, MAX_PARAM_CHARS) for r in rows]
    varying, axes = sweep_axes(rows, flat)
    present = {m for _, ms, _ in flat for m in ms}
    mcols = [m for m in METRICS if m in present][:MAX_METRICS] or sorted(present)[:1]
    charts = [_chart(ctx, i, flat, x, axes, mcols) for i, x in enumerate(axes[:MAX_CHARTS] if mcols else [])]
    swept = ", ".join(varying) or "nothing varies"
    return "".join([note(say("sweep.how", n=len(rows), bad=sum(1 for *_, r in flat if r), swept=swept)), *charts,
                    _table(flat, varying, mcols)])
