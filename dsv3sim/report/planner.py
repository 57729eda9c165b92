"""Planner section: the ranked layouts of ``dsv3sim plan`` with the best highlighted and why, cost columns, one
sentence naming the best layout's bottleneck, the Pareto plot (serving) and the network table.

Reads a plan result (``type: plan``; ``kind`` train, serve or network): ``candidates`` / ``best`` / ``totals`` /
``user_layout`` for training, ``ranked`` / ``pareto`` / ``best`` / ``sla_unmet`` / ``fleet`` for serving, ``rows``
for the network. Anything else gets "not a plan result".
"""

from __future__ import annotations

from dsv3sim.report.page import Section, absent, esc, figure_html, note, table

BEST_STYLE = ' style="background:#e8f5e9;font-weight:600"'
MAX_ROWS = 25


def _f(v, spec: str) -> str:
    if v is None:
        return ""
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return esc(v)


def _table_hl(header: list[str], rows: list[list[str]], best_index: int | None) -> str:
    """Like page.table, with the best row highlighted (cells are already escaped/formatted)."""
    h = "".join(f"<th>{esc(x)}</th>" for x in header)
    body = []
    for i, r in enumerate(rows):
        style = BEST_STYLE if i == best_index else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def planner_section(result: dict, ctx) -> Section | None:
    if result.get("type") != "plan":
        return None
    sec = Section(key="planner", title=f"Capacity plan ({result.get('kind')})")
    kind = result.get("kind")
    body = {"train": _train, "serve": _serve, "network": _network}.get(kind)
    if body is None:
        sec.body, sec.present = absent("not a plan result"), False
        return sec
    sec.body = body(result, ctx, sec)
    return sec


def _best_line(best: dict | None, q: dict) -> str:
    if not best:
        return '<p class="err-pos"><b>No layout fits.</b></p>'
    return (f"<p><b>Best:</b> {esc(best['key'])} — {best['step_time_s']:.2f} s per step "
            f"({esc(best['comm_model'])} all-to-all), MFU {best['mfu']:.1%}, {best['days']:.1f} days, "
            f"{best['gpu_hours'] / 1e6:.3f}M GPU-hours, ${best['cost_usd_run'] / 1e6:.3f}M at "
            f"${q.get('price_per_gpu_hour', 2):g}/GPU-hour. Its bottleneck is <b>{esc(best['limits'])}</b>: "
            f"{esc(best['limits_why'])}.</p>")


def _train_table(ok: list[dict]) -> str:
    rows = [[str(x.get("rank", "")), esc(x["key"]), esc(x["comm_model"]), _f(x["step_time_s"], ".3f"),
             _f(x["mfu"], ".1%"), _f(x["memory_headroom"], ".0%"), _f(x["days"], ".1f"), _f(x["gpu_hours"], ",.0f"),
             _f(x["cost_usd_run"], ",.0f"), _f(x["cost_usd_per_trillion_tokens"], ",.0f"), esc(x["limits"])]
            for x in ok[:MAX_ROWS]]
    return _table_hl(["#", "layout", "all-to-all", "step s", "MFU", "HBM free", "days", "GPU-hours",
                      "cost $", "$ / T tokens", "limit"], rows, 0 if rows else None)


def _train_figure(ok: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[x["days"] for x in ok], y=[x["cost_usd_run"] for x in ok], mode="markers",
                             text=[x["key"] for x in ok], hoverinfo="text+x+y", name="feasible",
                             marker={"color": ["#2e7d32" if i == 0 else "#4c78a8" for i in range(len(ok))]}))
    fig.update_layout(title="Feasible layouts: days vs dollars", xaxis_title="days", yaxis_title="$",
                      height=340, margin={"l": 10, "r": 10, "t": 50, "b": 40})
    return fig


def _user_layout(u: dict | None) -> str:
    if not u:
        return ""
    if u.get("feasible"):
        return note(f"Your layout {esc(u['key'])}: rank {u['rank']}, {u['step_time_s']:.2f} s per step.")
    nf = u.get("nearest_feasible") or {}
    return (f'<p class="err-pos">Your layout {esc(u["key"])} does not run: {esc(u["reason"])}. '
            + (f"Nearest that fits: {esc(nf.get('key'))} (changes {esc(', '.join(nf.get('changed', [])))})"
               if nf else "Nothing feasible.") + "</p>")


def _totals(t: dict | None) -> str:
    if not t:
        return ""
    return table(["phase", "GPU-hours", "days", "cost $"],
                 [[p["phase"], f"{p['gpu_hours']:,.0f}", _f(p.get("days"), ".1f"), f"{p['cost_usd']:,.0f}"]
                  for p in t["phases"]] + [["total", f"{t['gpu_hours_total']:,.0f}", "", f"{t['cost_usd_total']:,.0f}"]])


def _infeasible_reasons(bad: list[dict]) -> str:
    if not bad:
        return ""
    reasons: dict[str, int] = {}
    for x in bad:
        k = x["infeasible"].split(":")[0][:60]
        reasons[k] = reasons.get(k, 0) + 1
    return note("Infeasible, by reason: " + "; ".join(f"{esc(k)} ({n})" for k, n in
                                                       sorted(reasons.items(), key=lambda kv: -kv[1])[:8]))


def _train(r: dict, ctx, sec: Section) -> str:
    c = r.get("counts", {})
    cands = r.get("candidates", [])
    ok = [x for x in cands if "infeasible" not in x]
    parts = [_best_line(r.get("best"), r.get("query", {})),
             note(f"{c.get('layouts', 0)} layouts; {c.get('pruned_before_simulation', 0)} pruned by structure or "
                  f"memory before any simulation; {c.get('simulated_bound', 0)} screened with the busiest-link "
                  f"all-to-all bound; the best {c.get('simulated_event', 0)} re-simulated event by event. "
                  "Highlighted: the best."), _train_table(ok)]
    if ok:
        parts.append(figure_html(_train_figure(ok), ctx.fig_id("plan-train")))
        sec.n_figures += 1
    parts += [_user_layout(r.get("user_layout")), _totals(r.get("totals")),
              _infeasible_reasons([x for x in cands if "infeasible" in x])]
    parts += [note(esc(n)) for n in r.get("notes", [])]
    return "".join(parts)


def _serve(r: dict, ctx, sec: Section) -> str:
    import plotly.graph_objects as go

    q, best = r.get("query", {}), r.get("best")
    parts = []
    if best:
        parts.append(f"<p><b>Best:</b> {best['tokens_per_s_per_gpu']:,.0f} output tokens/s/GPU at "
                     f"{best['tokens_per_s_per_user']:.1f} tokens/s/user: {best['n_prefill_instances']} x "
                     f"{esc(best['prefill'])} + {best['n_decode_instances']} x {esc(best['decode'])} "
                     f"({best['gpus_used']} of {q.get('gpus')} GPUs). Its bottleneck is <b>{esc(best['limits'])}</b> "
                     f"({esc(best['bottleneck_side'])} side saturates first). ${best['cost_usd_per_million_input_tokens']:.3f}"
                     f" per million input and ${best['cost_usd_per_million_output_tokens']:.3f} per million output "
                     f"tokens.</p>")
    elif r.get("sla_unmet"):
        parts.append(f'<p class="err-pos"><b>{esc(r["sla_unmet"]["message"])}.</b> Closest:</p>')
        parts.append(table(["prefill", "decode", "tok/s/GPU", "misses by"],
                           [[c["prefill"], c["decode"], f"{c['tokens_per_s_per_gpu']:,.0f}", c["misses"]]
                            for c in r["sla_unmet"]["closest"]]))
    rows = [[esc(c["prefill"]), str(c["n_prefill_instances"]), esc(c["decode"]), str(c["n_decode_instances"]),
             f"{c['tokens_per_s_per_gpu']:,.0f}", f"{c['tokens_per_s_per_user']:.1f}", f"{c['ttft_s']:.2f}",
             f"{c['tpot_s'] * 1e3:.1f}", f"{c['cost_usd_per_million_input_tokens']:.3f}",
             f"{c['cost_usd_per_million_output_tokens']:.3f}", esc(c["limits"])] for c in r.get("ranked", [])[:MAX_ROWS]]
    if rows:
        parts.append(_table_hl(["prefill", "xP", "decode", "xD", "tok/s/GPU", "tok/s/user", "TTFT s", "TPOT ms",
                                "$/M in", "$/M out", "limit"], rows, 0))
    front = r.get("pareto", [])
    if front:
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=[c["tokens_per_s_per_user"] for c in front],
                                 y=[c["tokens_per_s_per_gpu"] for c in front], mode="lines+markers",
                                 text=[f"{c['prefill']} + {c['decode']}" for c in front], name="Pareto frontier"))
        if best:
            fig.add_trace(go.Scatter(x=[best["tokens_per_s_per_user"]], y=[best["tokens_per_s_per_gpu"]],
                                     mode="markers", marker={"size": 14, "color": "#2e7d32", "symbol": "star"},
                                     name="best meeting the SLA"))
        fig.add_vline(x=1000.0 / q.get("tpot_ms", 50.0), line_dash="dot", annotation_text="TPOT SLA")
        fig.update_layout(title="tokens/s/GPU vs tokens/s/user (disaggregated)", xaxis_title="tokens/s/user",
                          yaxis_title="output tokens/s/GPU", height=360, margin={"l": 10, "r": 10, "t": 50, "b": 40})
        parts.append(figure_html(fig, ctx.fig_id("plan-pareto")))
        sec.n_figures += 1
    f = r.get("fleet")
    if f and "infeasible" not in f:
        parts.append(note(f"Fleet for {f['daily_input_tokens']:.3g} input + {f['daily_output_tokens']:.3g} output "
                          f"tokens per day: {f['nodes']:.1f} nodes on average ({f['prefill_nodes']:.1f} prefill + "
                          f"{f['decode_nodes']:.1f} decode), ${f['cost_usd_per_day']:,.0f} per day "
                          f"({esc(f['rates_from'])})."))
    parts += [note(esc(n)) for n in r.get("notes", [])]
    return "".join(parts)


def _network(r: dict, ctx, sec: Section) -> str:
    rows = []
    best_i = None
    for i, x in enumerate(r.get("rows", [])):
        if x.get("chosen"):
            best_i = i
        if "infeasible" in x:
            rows.append([esc(x["topology"]), "", "", "", "", "", esc(x["infeasible"])])
        else:
            rows.append([esc(x["topology"]), f"{x['capacity']:,}", f"{x['switches']:,}", f"{x['links']:,}",
                         f"{x['cost_usd'] / 1e6:,.1f}", f"{x['cost_usd_per_endpoint'] / 1e3:.2f}",
                         "chosen" if x.get("chosen") else ""])
    return (f"<p>{r.get('endpoints'):,} endpoints with {r.get('radix')}-port switches; the cheapest per endpoint is "
            f"<b>{esc(r.get('chosen'))}</b>.</p>"
            + _table_hl(["topology", "endpoints", "switches", "links", "cost $M", "$k / endpoint", ""], rows, best_i))
