"""Summary sections: a result's headline numbers, every field of it, and a study's comparison of scenarios."""

from __future__ import annotations

from dsv3sim.config.units import fmt_si, fmt_time, num
from dsv3sim.report.page import COLOURS, cards, details, esc, fmt, need, note, say, spec_table, table
from dsv3sim.report.timeline import color_of
from dsv3sim.results.reading import FIELDS_LIMIT, gpu_hours_per_trillion, scalar_fields
from dsv3sim.workload.limits import bottleneck
from dsv3sim.workload.study import StudyRow, study_rows


def _pct(v: float) -> str:
    return f"{v * 100:.1f} %"


CARDS = (("step time", "step_time_s", fmt_time), ("MFU (causal FLOPs / BF16 dense peak)", "mfu", _pct),
         ("MFU (non-causal: full S x S attention, DeepSeek's ISCA'25 count)", "mfu_noncausal",
          lambda v: _pct(v) if v else ""),
         ("tokens / s (cluster)", "tokens_per_s", fmt_si),
         ("GPU-hours / trillion tokens", "gph", lambda v: f"{v / 1e3:,.1f} K"),
         ("cost / trillion tokens at ${price:g}/GPU-hour", "cost", lambda v: f"${v / 1e6:,.3f} M"),
         ("prefill tokens / s / node", "prefill_tokens_per_s_per_node", fmt_si),
         ("decode tokens / s / node", "decode_tokens_per_s_per_node", fmt_si),
         ("TTFT", "ttft_s", fmt_time), ("TPOT", "tpot_s", fmt_time),
         ("exposed communication{ep}", "exposed_communication_s", fmt_time))
IDENTITY = (("scenario", "scenario"), ("model", "model"), ("GPU", "gpu"), ("GPUs", "n_gpus"), ("topology", "topology"))


def _head(result: dict, reason) -> str:
    """The infeasibility reason or the bottleneck sentence, the result's notes and warnings, then the table of what
    was simulated: scenario, model, GPU(s), topology, schedule, parallel layout."""
    limit = None if reason else bottleneck(result)
    out = f'<p class="err-pos"><b>Infeasible:</b> {esc(reason)}</p>' if reason else (
        f'<p class="bottleneck" data-bottleneck><b>Bottleneck.</b> {esc(limit)}</p>' if limit else "")
    out += "".join(f'<p class="{"warn" if str(n).startswith("warning") else "note"}" data-note>{esc(n)}</p>'
                   for n in result.get("notes") or ())
    layout = result.get("parallel") if isinstance(result.get("parallel"), dict) else None
    rows = [(k, result.get(key)) for k, key in IDENTITY] + [("schedule", (layout or {}).get("schedule"))]
    rows = [[k, v.get("name", "…") if isinstance(v, dict) else v] for k, v in rows if v is not None]
    if layout is not None:
        rows.append(["layout", ", ".join(f"{k}={v}" for k, v in layout.items() if not isinstance(v, (dict, list)))])
    return out + (table(["", ""], rows) if rows else "")


def _bars(ctx, items, name: str, title: str, scale: float, unit: str, colour) -> str:
    """Horizontal bars of ``items`` ({label: seconds}) in ``unit``; '' without numbers."""
    items = [(str(k).removesuffix("_s"), v) for k, x in (items.items() if isinstance(items, dict) else ())
             if (v := num(x)) is not None]
    return ctx.plot(name, [{"type": "bar", "x": [v * scale for _, v in items], "y": [k for k, _ in items],
                            "orientation": "h", "text": [fmt_time(v) for _, v in items], "textposition": "auto",
                            "marker": {"color": [colour(k) for k, _ in items]}}], title=title, xaxis_title=unit,
                    height=120 + 28 * len(items), yaxis={"autorange": "reversed"}) if items else ""


def summary(result: dict, ctx) -> str:
    price = num(result.get("price_per_gpu_hour")) or ctx.price_per_gpu_hour
    gph, how = gpu_hours_per_trillion(result)
    vals = dict(result, gph=gph, cost=None if gph is None else gph * price)
    ep = " (EP + DP)" if isinstance(result.get("breakdown_s"), dict) else ""
    kv = [(label.format(price=price, ep=ep), f(v)) for label, key, f in CARDS if (v := num(vals.get(key))) is not None]
    kv, reason = [(k, v) for k, v in kv if v], result.get("infeasible")
    bd = result.get("step_breakdown_s") or result.get("breakdown_s")  # DeepSeek's terms, else the executor's
    need(kv or bd or reason, "no summary metrics in this result")
    srcs = result.get("sources") if isinstance(result.get("sources"), (list, tuple)) else ()
    return "".join([
        _head(result, reason), cards(kv) if kv else "",
        note(say("summary.cost", price=price, how=how)) if gph is not None else "",
        _bars(ctx, bd, "breakdown", "Step time breakdown", 1e3, "ms", lambda _: "#4c78a8"),
        _bars(ctx, result.get("layer_time_s"), "layer", "One layer of one micro-batch, by slice (before overlap)",
              1e6, "µs", color_of),
        details(f"{len(srcs)} source{'s' if len(srcs) > 1 else ''} of the constants behind this result",
                "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in srcs) + "</ul>") if srcs else ""])


def fields(result: dict, ctx) -> str:
    rows = need(scalar_fields(result), "empty result")
    more = " (the first ones; the JSON holds the rest)" if len(rows) >= FIELDS_LIMIT else ""
    return details(f"{len(rows)} fields (every scalar, as written by the simulator){more}", table(
        ["field", "value"], [[k, fmt(v, ".6g") if isinstance(v, float) else v] for k, v in rows]))


# ---------------------------------------------------------------- study: several scenarios in one JSON

STUDY_COLS = (("scenario", "scenario", str), ("kind", "kind", str), ("step / TTFT / TPOT", "latency", str),
              ("throughput", "tp", str), ("vs baseline", "vs", str), ("MFU", "mfu", lambda v: f"{v * 100:.1f}%"),
              ("GPU-h / T tokens", "gph", lambda v: f"{v / 1e3:,.1f} K" if v else ""),
              ("limited by", "why", str))
KIND_COLOUR = COLOURS["kind"]


def _study_traces(rows: list[StudyRow], cells: list[dict]) -> list[dict]:
    """Per kind: bars of throughput vs its baseline, and its infeasible scenarios as crosses on zero."""
    traces = []
    for kind in dict.fromkeys(r.kind for r in rows):
        ok = [(r, c) for r, c in zip(rows, cells) if r.kind == kind and r.vs_baseline is not None]
        bad = [r for r in rows if r.kind == kind and r.infeasible]
        traces.append({"type": "bar", "y": [r.scenario for r, _ in ok], "x": [r.vs_baseline * 100 for r, _ in ok],
                       "orientation": "h", "name": kind, "marker": {"color": KIND_COLOUR.get(kind, "#9d755d")},
                       "text": [c["vs"] for _, c in ok], "textposition": "outside", "cliponaxis": False,
                       "customdata": [[fmt_si(r.throughput), r.unit, c["latency"], r.limit] for r, c in ok],
                       "hovertemplate": "%{y}<br>%{customdata[0]} %{customdata[1]} (%{x:+.1f}%)<br>%{customdata[2]}"
                                        "<br>limited by %{customdata[3]}<extra></extra>"})
        traces += [{"type": "scatter", "y": [r.scenario for r in bad], "x": [0] * len(bad), "mode": "markers",
                    "marker": {"symbol": "x", "color": "#e45756", "size": 11}, "name": "infeasible",
                    "hovertext": [r.infeasible for r in bad], "hoverinfo": "text+y"}] if bad else []
    return traces


def study(results: list[tuple[str, dict]], ctx) -> str:
    """One table and one horizontal-bar chart comparing the scenarios (long names stay legible)."""
    rows = study_rows(results)  # workload.study's rows as the table shows them
    cells = [{"scenario": r.scenario, "kind": r.kind, "mfu": r.mfu, "gph": r.gph, "why": r.infeasible or r.limit,
              "latency": f"{r.latency[0]} {fmt_time(r.latency[1])}" if r.latency else "",
              "tp": f"{fmt_si(r.throughput)} {r.unit}" if r.throughput else "",
              "vs": "baseline" if r.scenario == r.baseline else fmt(r.vs_baseline, lambda v: f"{v * 100:+.1f}%")}
             for r in rows]
    fig = ctx.plot("study", _study_traces(rows, cells), title="Throughput vs the baseline of its kind (%)",
                   barmode="overlay", height=140 + 24 * len(rows), margin={"l": 10, "r": 40, "t": 50, "b": 40},
                   xaxis={"title": "% change in throughput (higher is better)", "zeroline": True,
                          "zerolinecolor": "#555"},
                   yaxis={"categoryorder": "array", "categoryarray": [r.scenario for r in rows][::-1],
                          "automargin": True, "tickfont": {"size": 13}, "ticksuffix": "  "},
                   legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.3, "xanchor": "left"})
    cols = [c for c in STUDY_COLS if any(fmt(x[c[1]], c[2]) for x in cells)]  # no all-empty column (serving: MFU)
    bases = ", ".join(f"{k}: {v}" for k, v in {r.kind: r.baseline for r in rows if r.baseline}.items())
    return (note(say("study.compare", bases=bases)) + fig
            + "<div data-study-table>" + spec_table(cells, cols, numeric={
                i for i, c in enumerate(cols) if c[1] in ("vs", "mfu", "gph")}) + "</div>")
