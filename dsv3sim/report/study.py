"""A study (several named scenarios in one result JSON): one comparison table and one chart, on top of the page.

Each scenario is compared with the baseline of its kind (the first training, prefill or decode scenario of the
study, as ``scenarios/studies.py`` puts the published setup first): throughput relative to it in percent, so
every row reads on one axis whatever its metric. Throughput: cluster tokens/s for training, tokens/s per node for
prefill and decode (DeepSeek's Day-6 unit). The chart is horizontal bars, one per scenario, so long scenario
names stay legible; hover shows the absolute numbers and what limits each step (``bottleneck.limiter``).
"""

from __future__ import annotations

from dsv3sim.report.bottleneck import limiter
from dsv3sim.report.data import fmt_si, fmt_time, num
from dsv3sim.report.page import Section, esc, note, plot, table

THROUGHPUT = {"training": ("tokens_per_s", "tokens/s (cluster)"),
              "prefill": ("prefill_tokens_per_s_per_node", "prefill tokens/s/node"),
              "decode": ("decode_tokens_per_s_per_node", "decode tokens/s/node")}
KIND_COLOUR = {"training": "#4c78a8", "prefill": "#f58518", "decode": "#54a24b"}


def _kind(res: dict) -> str:
    k = res.get("kind")
    if k in THROUGHPUT:
        return k
    return "training" if isinstance(res.get("breakdown_s"), dict) else str(k or "?")


def _latency(res: dict) -> str:
    for key, label in (("step_time_s", "step"), ("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
        v = num(res.get(key))
        if v is not None:
            return f"{label} {fmt_time(v)}"
    return ""


def study_rows(results: list[tuple[str, dict]]) -> list[dict]:
    """One dict per scenario: name, kind, throughput and its ratio to the kind's baseline, latency, limiter."""
    base: dict[str, tuple[str, float]] = {}
    rows = []
    for name, res in results:
        kind = _kind(res)
        key, unit = THROUGHPUT.get(kind, ("tokens_per_s", "tokens/s"))
        reason = res.get("infeasible")
        tp = None if reason else num(res.get(key))
        if tp and kind not in base:
            base[kind] = (name, tp)
        rows.append({"scenario": name, "kind": kind, "throughput": tp, "unit": unit, "infeasible": reason,
                     "latency": "" if reason else _latency(res), "mfu": num(res.get("mfu")),
                     "gph": num(res.get("gpu_hours_per_trillion_tokens")), "limit": limiter(res)})
    for r in rows:
        b = base.get(r["kind"])
        r["baseline"] = b[0] if b else None
        r["vs_baseline"] = r["throughput"] / b[1] - 1.0 if b and r["throughput"] else None
    return rows


def _vs(r: dict) -> str:
    if r["scenario"] == r["baseline"]:
        return "baseline"
    return f"{r['vs_baseline'] * 100:+.1f}%" if r["vs_baseline"] is not None else ""


def _kind_traces(go, kind: str, mine: list[dict]) -> list:
    """One kind's bars (throughput vs its baseline) and its infeasible scenarios as crosses on zero."""
    ok = [r for r in mine if r["vs_baseline"] is not None]
    traces = [go.Bar(
        y=[r["scenario"] for r in ok], x=[r["vs_baseline"] * 100 for r in ok], orientation="h", name=kind,
        marker_color=KIND_COLOUR.get(kind, "#9d755d"), text=[_vs(r) for r in ok],
        textposition="outside", cliponaxis=False,
        customdata=[[fmt_si(r["throughput"]), r["unit"], r["latency"], r["limit"]] for r in ok],
        hovertemplate="%{y}<br>%{customdata[0]} %{customdata[1]} (%{x:+.1f}%)<br>%{customdata[2]}"
                      "<br>limited by %{customdata[3]}<extra></extra>")]
    bad = [r for r in mine if r["infeasible"]]
    if bad:
        traces.append(go.Scatter(y=[r["scenario"] for r in bad], x=[0] * len(bad), mode="markers",
                                 marker={"symbol": "x", "color": "#e45756", "size": 11}, name="infeasible",
                                 hovertext=[r["infeasible"] for r in bad], hoverinfo="text+y"))
    return traces


def _study_figure(rows: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for tr in _kind_traces(go, kind, [r for r in rows if r["kind"] == kind]):
            fig.add_trace(tr)
    order = [r["scenario"] for r in rows]
    fig.update_layout(title="Throughput vs the baseline of its kind (%)", barmode="overlay",
                      height=140 + 24 * len(rows), margin={"l": 10, "r": 40, "t": 50, "b": 40},
                      xaxis={"title": "% change in throughput (higher is better)", "zeroline": True,
                             "zerolinecolor": "#555"},
                      yaxis={"categoryorder": "array", "categoryarray": order[::-1], "automargin": True,
                             "tickfont": {"size": 13}, "ticksuffix": "  "},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.3, "xanchor": "left"})
    return fig


def _study_table(rows: list[dict]) -> str:
    trs = [[r["scenario"], r["kind"], r["latency"],
            f"{fmt_si(r['throughput'])} {r['unit']}" if r["throughput"] else "", _vs(r),
            f"{r['mfu'] * 100:.1f}%" if r["mfu"] is not None else "",
            f"{r['gph'] / 1e3:,.1f} K" if r["gph"] else "", r["infeasible"] or r["limit"]] for r in rows]
    header = ["scenario", "kind", "step / TTFT / TPOT", "throughput", "vs baseline", "MFU", "GPU-h / T tokens",
              "limited by"]
    keep = [i for i in range(len(header)) if any(tr[i] for tr in trs)]  # no all-empty columns (serving: MFU)
    return '<div data-study-table>' + table(
        [header[i] for i in keep], [[tr[i] for i in keep] for tr in trs],
        {keep.index(i) for i in (4, 5, 6) if i in keep}) + "</div>"


def study_section(results: list[tuple[str, dict]], ctx) -> Section:
    sec = Section(key="study", title=f"Comparison of the {len(results)} scenarios")
    rows = study_rows(results)
    bases = {r["kind"]: r["baseline"] for r in rows if r["baseline"]}
    sec.body = (note("Throughput of each scenario relative to the baseline of its kind ("
                     + esc(", ".join(f"{k}: {v}" for k, v in bases.items()))
                     + "); the last column names what limits its step. Infeasible scenarios keep their reason.")
                + plot(sec, ctx, "study", _study_figure(rows)) + _study_table(rows))
    return sec
