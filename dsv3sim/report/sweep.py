"""Sweep charts: a metric against each swept parameter, infeasible points kept with their reason.

Rows as ``dsv3sim sweep`` writes them (``{"sweep": [rows]}``): ``scenario``, the values it varied under
``params``, ``comm_model``, the result's headline numbers, or ``infeasible: reason``. A parameter is a column
whose value differs between rows; the metrics are the first ``MAX_METRICS`` of ``METRICS`` present, side by
side. One chart per parameter (up to ``MAX_CHARTS``), coloured by the next parameter, so the knee of a curve is
visible.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_num, num
from dsv3sim.report.page import Section, esc, missing, note, plot, table

METRICS = ("step_time_s", "tokens_per_s", "mfu", "gpu_hours_per_trillion_tokens", "decode_tokens_per_s_per_node",
           "prefill_tokens_per_s_per_node", "ttft_s", "tpot_s")
TOP_PARAMS = ("scenario", "n_gpus")
SKIP = ("sim_wall_s", "infeasible")
MAX_CHARTS = 6
MAX_METRICS = 4  # metrics side by side in each chart
MAX_PARAM_CHARS = 40
MAX_TABLE = 60


def flatten(row: dict) -> tuple[dict, dict, str | None]:
    """(params, metrics, infeasible reason) of one sweep row: params are the ``params`` group, the scenario and
    any other non-numeric scalar; metrics every other number."""
    params, metrics = {}, {}
    for k, v in row.items():
        if k == "params":
            params.update({kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
        elif k in SKIP or isinstance(v, (dict, list)):
            continue
        elif k in TOP_PARAMS or num(v) is None:
            params[k] = v
        else:
            metrics[k] = num(v)
    reason = row.get("infeasible")
    return params, metrics, (str(reason) if reason else None)


def sweep_rows(result: dict) -> list[dict] | None:
    v = result.get("sweep")
    return [r for r in v if isinstance(r, dict)] if isinstance(v, list) else None


def sweep_section(result: dict, ctx) -> Section:
    """Charts and table of sweep rows."""
    rows = sweep_rows(result)
    if not rows:
        return missing("sweep", "Sweep", "not a sweep (no rows in this result)")
    sec = Section(key="sweep", title="Sweep")
    flat = [({k: v for k, v in p.items() if not (isinstance(v, str) and len(v) > MAX_PARAM_CHARS)}, ms, r)
            for p, ms, r in map(flatten, rows)]  # long strings (notes, sources) are not parameters
    varying, axes = _sweep_axes(rows, flat)
    mcols = _metric_columns(flat)
    charts = [plot(sec, ctx, f"sweep{i}", _sweep_chart(flat, x, axes, mcols))
              for i, x in enumerate(axes[:MAX_CHARTS] if mcols else [])]
    sec.body = "".join(
        [note(f"{len(rows)} configurations; {sum(1 for *_, r in flat if r)} infeasible (kept, with reason). "
              f"Swept: {esc(', '.join(varying) or 'nothing varies')}.")] + charts + [_sweep_table(flat, varying, mcols)])
    return sec


def _metric_columns(flat: list) -> list[str]:
    """The headline metrics present (at most MAX_METRICS), else the first metric any row has."""
    present = {m for _, ms, _ in flat for m in ms}
    metric = next((m for m in METRICS if m in present), next(iter(sorted(present)), None))
    return [m for m in METRICS if m in present][:MAX_METRICS] or ([metric] if metric else [])


def _sweep_table(flat: list, varying: list[str], mcols: list[str]) -> str:
    trows = [[p.get(k, "") for k in varying] + [fmt_num(ms[m]) if m in ms else "" for m in mcols] + [r or ""]
             for p, ms, r in flat[:MAX_TABLE]]
    return table(varying + mcols + ["infeasible because"], trows) + (
        note(f"first {MAX_TABLE} of {len(flat)} rows shown; the JSON holds them all") if len(flat) > MAX_TABLE else "")


def _identifying(varying: list[str], flat: list) -> set[str]:
    """Parameters with a distinct, non-numeric value on every row (a scenario name): they name rows."""
    if len(flat) <= 3:
        return set()
    return {k for k in varying if len({repr(p.get(k)) for p, _, _ in flat}) == len(flat)
            and any(num(p.get(k)) is None for p, _, _ in flat)}


def _sweep_axes(rows: list[dict], flat: list) -> tuple[list[str], list[str]]:
    """(the parameters that vary across rows, those charted on an x axis: not the row-identifying ones)."""
    keys = list(dict.fromkeys(k for p, _, _ in flat for k in p))
    varying = [k for k in keys if len({repr(p.get(k)) for p, _, _ in flat}) > 1]
    knobs = {k for r in rows if isinstance(r.get("params"), dict) for k in r["params"]}
    ident = _identifying(varying, flat)
    if knobs:  # dsv3sim sweep: its grid axes are the parameters; derived fields stay in the table
        varying = [k for k in varying if k in knobs or k in ident]
    axes = [k for k in varying if k not in ident] or varying
    return varying, axes


def _sweep_chart(flat: list, x: str, axes: list[str], mcols: list[str]):
    """One figure: each metric of ``mcols`` against ``x``, one line per value of the next axis."""
    from plotly.subplots import make_subplots

    colour_by = next((k for k in axes if k != x), None)
    groups: dict[str, list] = {}
    for p, ms, r in flat:
        groups.setdefault("" if colour_by is None else f"{colour_by}={p.get(colour_by)}", []).append((p, ms, r))
    numeric_x = all(num(p.get(x)) is not None for p, _, _ in flat)
    fig = make_subplots(rows=1, cols=len(mcols), subplot_titles=mcols, horizontal_spacing=0.06)
    for col, m in enumerate(mcols, start=1):
        _metric_traces(fig, flat, groups, x, m, col, numeric_x)
    fig.update_layout(title=f"vs {x}" + (f", coloured by {colour_by}" if colour_by else ""), height=340,
                      margin={"l": 10, "r": 10, "t": 70, "b": 40}, showlegend=bool(colour_by) or
                      any(r for *_, r in flat))
    return fig


def _metric_traces(fig, flat: list, groups: dict, x: str, m: str, col: int, numeric_x: bool) -> None:
    """Metric ``m`` against ``x`` in subplot ``col``: a line per group, infeasible points as crosses below."""
    import plotly.graph_objects as go

    palette = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")
    for gi, (g, pts) in enumerate(list(groups.items())[:24]):
        ok = [(p.get(x), ms[m]) for p, ms, r in pts if not r and m in ms]
        if numeric_x:
            ok.sort(key=lambda t: num(t[0]))
        fig.add_trace(go.Scatter(x=[a for a, _ in ok], y=[b for _, b in ok], name=g or m, legendgroup=g,
                                 showlegend=col == 1 and bool(g), mode="lines+markers",
                                 line={"color": palette[gi % len(palette)]}), row=1, col=col)
    if any(r for *_, r in flat):
        fig.add_trace(_infeasible_trace(flat, x, m, col), row=1, col=col)
    fig.update_xaxes(title_text=x, type="linear" if numeric_x else "category", row=1, col=col)


def _infeasible_trace(flat: list, x: str, m: str, col: int):
    """Infeasible points as crosses just below the lowest feasible value of ``m``."""
    import plotly.graph_objects as go

    bad = [(p.get(x), r) for p, _, r in flat if r]
    ys = [ms[m] for _, ms, r in flat if not r and m in ms]
    floor = (min(ys) - 0.05 * ((max(ys) - min(ys)) or abs(min(ys)) or 1.0)) if ys else 0.0
    return go.Scatter(x=[a for a, _ in bad], y=[floor] * len(bad), mode="markers",
                      marker={"symbol": "x", "color": "#e45756", "size": 10},
                      name="infeasible", legendgroup="infeasible", showlegend=col == 1,
                      hovertext=[r for _, r in bad], hoverinfo="text+x")
