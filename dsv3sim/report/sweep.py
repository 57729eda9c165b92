"""Sweep charts: a metric against each swept parameter, infeasible points kept with their reason.

Rows come from ``dsv3sim sweep`` (a list of results, each with the parameters it varied — at the top level or
under ``params``/``config``/``overrides`` — and its metrics, or ``infeasible: reason``). A parameter is a
column whose value differs between rows; the metric is the first of ``METRICS`` present. One chart per
parameter (up to ``MAX_CHARTS``), coloured by the next parameter, so the knee of a curve is visible.
"""

from __future__ import annotations

from dsv3sim.report.data import num, pick
from dsv3sim.report.page import Section, absent, esc, figure_html, note, table

METRICS = ("step_time_s", "tokens_per_s", "mfu", "gpu_hours_per_trillion_tokens", "decode_tokens_per_s_per_node",
           "prefill_tokens_per_s_per_node", "ttft_s", "tpot_s", "cost_usd", "time_s", "value")
PARAM_GROUPS = ("params", "config", "overrides", "point", "knobs")
MAX_CHARTS = 6
MAX_TABLE = 60


def flatten(row: dict) -> tuple[dict, dict, str | None]:
    """(params, metrics, infeasible reason) of one sweep row."""
    params, metrics = {}, {}
    for g in PARAM_GROUPS:
        if isinstance(row.get(g), dict):
            params.update({k: v for k, v in row[g].items() if not isinstance(v, (dict, list))})
    for k, v in row.items():
        if k in PARAM_GROUPS:
            continue
        if k in METRICS or k.endswith(("_s", "_per_s", "_bytes")) or k in ("mfu",):
            if num(v) is not None:
                metrics[k] = num(v)
        elif not isinstance(v, (dict, list)) and k not in ("infeasible", "reason", "error", "feasible"):
            params.setdefault(k, v)
    for sub in ("metrics", "result", "summary"):
        if isinstance(row.get(sub), dict):
            for k, v in row[sub].items():
                if num(v) is not None:
                    metrics.setdefault(k, num(v))
    reason = row.get("infeasible") or row.get("reason") or row.get("error")
    if row.get("feasible") is False and not reason:
        reason = "infeasible"
    return params, metrics, (str(reason) if reason else None)


def sweep_rows(result: dict) -> list[dict] | None:
    v = pick(result, "sweep", "rows", "points", depth=1)
    if isinstance(v, dict):
        v = pick(v, "rows", "results", "points", depth=0)
    if v is None and isinstance(result.get("results"), list):
        v = result["results"]
    return [r for r in v if isinstance(r, dict)] if isinstance(v, list) else None


def sweep_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    sec = Section(key="sweep", title="Sweep")
    rows = sweep_rows(result)
    if not rows:
        sec.body, sec.present = absent("not a sweep (no rows in this result)"), False
        return sec
    flat = [flatten(r) for r in rows]
    keys: list[str] = []
    for p, _, _ in flat:
        keys += [k for k in p if k not in keys]
    varying = [k for k in keys if len({repr(p.get(k)) for p, _, _ in flat}) > 1]
    present = {m for _, ms, _ in flat for m in ms}
    metric = next((m for m in METRICS if m in present), next(iter(sorted(present)), None))
    parts = [note(f"{len(rows)} configurations; {sum(1 for *_, r in flat if r)} infeasible (kept, with reason). "
                  f"Swept: {esc(', '.join(varying) or 'nothing varies')}.")]
    if metric and varying:
        for i, x in enumerate(varying[:MAX_CHARTS]):
            colour_by = next((k for k in varying if k != x), None)
            groups: dict[str, list] = {}
            for p, ms, r in flat:
                groups.setdefault("" if colour_by is None else f"{colour_by}={p.get(colour_by)}", []).append((p, ms, r))
            fig = go.Figure()
            numeric_x = all(num(p.get(x)) is not None for p, _, _ in flat)
            for g, pts in list(groups.items())[:24]:
                ok = [(p.get(x), ms[metric]) for p, ms, r in pts if not r and metric in ms]
                if numeric_x:
                    ok.sort(key=lambda t: num(t[0]))
                fig.add_trace(go.Scatter(x=[a for a, _ in ok], y=[b for _, b in ok], name=g or metric,
                                         mode="lines+markers"))
            # infeasible points drawn on the x axis
            bad_all = [(p.get(x), r) for p, _, r in flat if r]
            if bad_all:
                fig.add_trace(go.Scatter(x=[a for a, _ in bad_all], y=[0] * len(bad_all), mode="markers",
                                         marker={"symbol": "x", "color": "#e45756", "size": 10}, name="infeasible",
                                         hovertext=[r for _, r in bad_all], hoverinfo="text+x"))
            fig.update_layout(title=f"{metric} vs {x}", xaxis_title=x, yaxis_title=metric, height=360,
                              margin={"l": 10, "r": 10, "t": 50, "b": 40},
                              xaxis={"type": "linear" if numeric_x else "category"})
            parts.append(figure_html(fig, ctx.fig_id(f"sweep{i}")))
            sec.n_figures += 1
    mcols = [m for m in METRICS if m in present][:4]
    trows = [[p.get(k, "") for k in varying] + [f"{ms[m]:.4g}" if m in ms else "" for m in mcols] + [r or ""]
             for p, ms, r in flat[:MAX_TABLE]]
    parts.append(table(varying + mcols + ["infeasible because"], trows))
    if len(flat) > MAX_TABLE:
        parts.append(note(f"first {MAX_TABLE} of {len(flat)} rows shown; the JSON holds them all"))
    sec.body = "".join(parts)
    return sec
