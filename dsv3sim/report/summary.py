"""Summary section: step time, MFU, tokens/s, GPU-hours and cost at a stated $/GPU-hour; serving metrics.

Reads the top-level keys ``dsv3sim/results.py`` writes (a training result's ``step_breakdown_s``, a serving
result's ``layer_time_s``, the layout under ``parallel``). GPU-hours per trillion tokens = n_gpus x 1e12 /
tokens_per_s / 3600 (when the result does not carry it). DeepSeek-V3 (report §1, Table 1): 180K H800 GPU-hours
per trillion tokens, $2 per GPU-hour, 14.8T tokens.
"""

from __future__ import annotations

from dsv3sim.report.bottleneck import bottleneck
from dsv3sim.report.data import fmt_si, fmt_time, num
from dsv3sim.report.page import Section, absent, cards, esc, missing, note, plot, table
from dsv3sim.report.timeline import color_of


def gpu_hours_per_trillion(result: dict) -> tuple[float | None, str]:
    v = num(result.get("gpu_hours_per_trillion_tokens"))
    if v is not None:
        return v, "from the result"
    n, tps = num(result.get("n_gpus")), num(result.get("tokens_per_s"))
    if n and tps:
        return n * 1e12 / tps / 3600.0, f"= {n:g} GPUs x 1e12 tokens / {tps:.4g} tokens/s / 3600"
    return None, ""


def summary_section(result: dict, ctx) -> Section:
    sec = Section(key="summary", title="Summary")
    price = num(result.get("price_per_gpu_hour")) or ctx.price_per_gpu_hour
    reason = result.get("infeasible")
    parts = _verdict(result, reason) + _identity(result)
    kv, gph, how = _metric_cards(result, price)
    if kv:
        parts.append(cards(kv))
    if gph is not None:
        parts.append(note(f"Cost stated at <b>${price:g} per GPU-hour</b> (DeepSeek-V3 report's H800 rental "
                          f"assumption; change with <code>dsv3sim report RESULT.json --price-per-gpu-hour USD</code>). GPU-hours {esc(how)}."))
    bd = result.get("step_breakdown_s") or result.get("breakdown_s")  # DeepSeek's terms, else the executor's
    parts.append(_bars(sec, ctx, bd, "breakdown", "Step time breakdown", (1e3, "ms"), lambda _: "#4c78a8"))
    parts.append(_bars(sec, ctx, result.get("layer_time_s"), "layer",
                       "One layer of one micro-batch, by slice (before overlap)", (1e6, "µs"), color_of))
    srcs = result.get("sources")
    if isinstance(srcs, (list, tuple)) and srcs:
        parts.append(f"<details><summary>{len(srcs)} source{'s' if len(srcs) > 1 else ''} of the constants behind "
                     "this result</summary><ul>"
                     + "".join(f"<li>{esc(x)}</li>" for x in srcs) + "</ul></details>")
    if not kv and not bd and not reason:
        parts.append(absent("no summary metrics in this result"))
        sec.present = False
    sec.body = "".join(parts)
    return sec


def _verdict(result: dict, reason) -> list[str]:
    """The infeasibility reason or the bottleneck, then the result's notes and warnings."""
    parts = []
    if reason:
        parts.append(f'<p class="err-pos"><b>Infeasible:</b> {esc(reason)}</p>')
    else:
        limit = bottleneck(result)
        if limit:
            parts.append(f'<p class="bottleneck" data-bottleneck><b>Bottleneck.</b> {esc(limit)}</p>')
    for n in result.get("notes") or ():
        cls = "warn" if str(n).startswith("warning") else "note"
        parts.append(f'<p class="{cls}" data-note>{esc(n)}</p>')
    return parts


def _identity(result: dict) -> list[str]:
    """The table of what was simulated: scenario, model, GPU(s), topology, schedule, parallel layout."""
    layout = result.get("parallel")
    ident = [(k, result.get(key)) for k, key in (("scenario", "scenario"), ("model", "model"), ("GPU", "gpu"),
                                                 ("GPUs", "n_gpus"), ("topology", "topology"))]
    ident.append(("schedule", layout.get("schedule") if isinstance(layout, dict) else None))
    ident = [(k, v if not isinstance(v, dict) else v.get("name", "…")) for k, v in ident if v is not None]
    if isinstance(layout, dict):
        ident.append(("layout", ", ".join(f"{k}={v}" for k, v in layout.items() if not isinstance(v, (dict, list)))))
    return [table(["", ""], [[k, v] for k, v in ident])] if ident else []


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


def _metric_cards(result: dict, price: float) -> tuple[list[tuple[str, str]], float | None, str]:
    """(headline metric cards by ``CARDS``, GPU-hours per trillion tokens or None, how they were derived)."""
    gph, how = gpu_hours_per_trillion(result)
    vals = dict(result, gph=gph, cost=None if gph is None else gph * price)
    ep = " (EP + DP)" if isinstance(result.get("breakdown_s"), dict) else ""
    kv = [(label.format(price=price, ep=ep), f(v)) for label, key, f in CARDS if (v := num(vals.get(key))) is not None]
    return [(k, v) for k, v in kv if v], gph, how


def _bars(sec: Section, ctx, items: dict | None, name: str, title: str, unit: tuple[float, str], colour) -> str:
    """Horizontal bars of ``items`` ({label: seconds}) in ``unit`` (scale, name); '' without numbers."""
    items = [(str(k).removesuffix("_s"), num(v)) for k, v in items.items()] if isinstance(items, dict) else []
    items = [(k, v) for k, v in items if v is not None]
    if not items:
        return ""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[v * unit[0] for _, v in items], y=[k for k, _ in items], orientation="h",
                           text=[fmt_time(v) for _, v in items], textposition="auto",
                           marker_color=[colour(k) for k, _ in items]))
    return plot(sec, ctx, name, fig, title=title, xaxis_title=unit[1], height=120 + 28 * len(items),
                yaxis={"autorange": "reversed"})


FIELDS_LIMIT = 500


def scalar_fields(d, prefix: str = "", out: list | None = None, limit: int = FIELDS_LIMIT) -> list[tuple[str, object]]:
    """Every scalar in the result as (dotted path, value), lists summarised by length; at most ``limit``."""
    out = [] if out is None else out
    if isinstance(d, dict):
        for k, v in d.items():
            if len(out) >= limit:
                break
            scalar_fields(v, f"{prefix}.{k}" if prefix else str(k), out, limit)
    elif isinstance(d, list):
        if d and len(d) <= 8 and all(not isinstance(x, (dict, list)) for x in d):
            out.append((prefix, ", ".join(str(x) for x in d)))
        else:
            out.append((prefix, f"[{len(d)} items]"))
    else:
        out.append((prefix, d))
    return out


def fields_section(result: dict, ctx) -> Section:
    rows = scalar_fields(result)
    if not rows:
        return missing("fields", "All fields of the result", "empty result")
    sec = Section(key="fields", title="All fields of the result")
    shown = [[k, f"{v:.6g}" if isinstance(v, float) else v] for k, v in rows]
    more = " (the first ones; the JSON holds the rest)" if len(rows) >= FIELDS_LIMIT else ""
    sec.body = ("<details><summary>" + esc(f"{len(rows)} fields (every scalar, as written by the simulator){more}")
                + "</summary>" + table(["field", "value"], shown) + "</details>")
    return sec

