"""Planner section: the ranked layouts of ``dsv3sim plan`` with the best highlighted and why, cost columns, one
sentence naming the best layout's bottleneck, the Pareto plot (serving) and the network table.

Reads a plan result (``type: plan``; ``kind`` train, serve or network): ``candidates`` / ``best`` / ``totals`` /
``user_layout`` for training, ``ranked`` / ``pareto`` / ``best`` / ``sla_unmet`` / ``fleet`` for serving, ``rows``
for the network. Anything else gets "not a plan result". Each table is a column spec: (header, key, format).
"""

from __future__ import annotations

from collections import Counter

from dsv3sim.report.page import BEST_STYLE, Section, esc, missing, note, plot, spec_rows, table

__all__ = ["BEST_STYLE", "planner_section"]

MAX_ROWS = 25
TRAIN_COLS = (("#", "rank", "d"), ("layout", "key", str), ("all-to-all", "comm_model", str),
              ("step s", "step_time_s", ".3f"), ("MFU", "mfu", ".1%"), ("HBM free", "memory_headroom", ".0%"),
              ("days", "days", ".1f"), ("GPU-hours", "gpu_hours", ",.0f"), ("cost $", "cost_usd_run", ",.0f"),
              ("$ / T tokens", "cost_usd_per_trillion_tokens", ",.0f"), ("limit", "limits", str))
SERVE_COLS = (("prefill", "prefill", str), ("xP", "n_prefill_instances", "d"), ("decode", "decode", str),
              ("xD", "n_decode_instances", "d"), ("tok/s/GPU", "tokens_per_s_per_gpu", ",.0f"),
              ("tok/s/user", "tokens_per_s_per_user", ".1f"), ("TTFT s", "ttft_s", ".2f"),
              ("TPOT ms", "tpot_s", lambda v: f"{v * 1e3:.1f}"), ("$/M in", "cost_usd_per_million_input_tokens", ".3f"),
              ("$/M out", "cost_usd_per_million_output_tokens", ".3f"), ("limit", "limits", str))
CLOSEST_COLS = (("prefill", "prefill", str), ("decode", "decode", str),
                ("tok/s/GPU", "tokens_per_s_per_gpu", ",.0f"), ("misses by", "misses", str))
NETWORK_COLS = (("topology", "topology", str), ("endpoints", "capacity", ","), ("switches", "switches", ","),
                ("links", "links", ","), ("cost $M", "cost_usd", lambda v: f"{v / 1e6:,.1f}"),
                ("$k / endpoint", "cost_usd_per_endpoint", lambda v: f"{v / 1e3:.2f}"),
                ("", "verdict", str))
TOTALS_COLS = (("phase", "phase", str), ("GPU-hours", "gpu_hours", ",.0f"), ("days", "days", ".1f"),
               ("cost $", "cost_usd", ",.0f"))


def planner_section(result: dict, ctx) -> Section | None:
    if result.get("type") != "plan":
        return None
    title = f"Capacity plan ({result.get('kind')})"
    body = {"train": _train, "serve": _serve, "network": _network}.get(result.get("kind"))
    if body is None:
        return missing("planner", title, "not a plan result")
    sec = Section(key="planner", title=title)
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
    header, rows = spec_rows(t["phases"] + [{"phase": "total", "gpu_hours": t["gpu_hours_total"],
                                             "cost_usd": t["cost_usd_total"]}], TOTALS_COLS)
    return table(header, rows)


def _infeasible_reasons(bad: list[dict]) -> str:
    reasons = Counter(x["infeasible"].split(":")[0][:60] for x in bad)
    return note("Infeasible, by reason: " + "; ".join(f"{esc(k)} ({n})" for k, n in reasons.most_common(8))
                ) if bad else ""


def _train(r: dict, ctx, sec: Section) -> str:
    import plotly.graph_objects as go

    c = r.get("counts", {})
    cands = r.get("candidates", [])
    ok = [x for x in cands if "infeasible" not in x]
    parts = [_best_line(r.get("best"), r.get("query", {})),
             note(f"{c.get('layouts', 0)} layouts; {c.get('pruned_before_simulation', 0)} pruned by structure or "
                  f"memory before any simulation; {c.get('simulated_bound', 0)} screened with the busiest-link "
                  f"all-to-all bound; the best {c.get('simulated_event', 0)} re-simulated event by event. "
                  "Highlighted: the best."), table(*spec_rows(ok[:MAX_ROWS], TRAIN_COLS), best=0 if ok else None)]
    if ok:
        fig = go.Figure(go.Scatter(x=[x["days"] for x in ok], y=[x["cost_usd_run"] for x in ok], mode="markers",
                                   text=[x["key"] for x in ok], hoverinfo="text+x+y", name="feasible",
                                   marker={"color": ["#2e7d32"] + ["#4c78a8"] * (len(ok) - 1)}))
        parts.append(plot(sec, ctx, "plan-train", fig, title="Feasible layouts: days vs dollars", xaxis_title="days",
                          yaxis_title="$", height=340))
    parts += [_user_layout(r.get("user_layout")), _totals(r.get("totals")),
              _infeasible_reasons([x for x in cands if "infeasible" in x])]
    return "".join(parts + [note(esc(n)) for n in r.get("notes", [])])


def _serve_best(best: dict, q: dict) -> str:
    return (f"<p><b>Best:</b> {best['tokens_per_s_per_gpu']:,.0f} output tokens/s/GPU at "
            f"{best['tokens_per_s_per_user']:.1f} tokens/s/user: {best['n_prefill_instances']} x "
            f"{esc(best['prefill'])} + {best['n_decode_instances']} x {esc(best['decode'])} "
            f"({best['gpus_used']} of {q.get('gpus')} GPUs). Its bottleneck is <b>{esc(best['limits'])}</b> "
            f"({esc(best['bottleneck_side'])} side saturates first). ${best['cost_usd_per_million_input_tokens']:.3f}"
            f" per million input and ${best['cost_usd_per_million_output_tokens']:.3f} per million output "
            f"tokens.</p>")


def _pareto(sec: Section, ctx, front: list[dict], best: dict | None, q: dict) -> str:
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[c["tokens_per_s_per_user"] for c in front],
                               y=[c["tokens_per_s_per_gpu"] for c in front], mode="lines+markers",
                               text=[f"{c['prefill']} + {c['decode']}" for c in front], name="Pareto frontier"))
    if best:
        fig.add_trace(go.Scatter(x=[best["tokens_per_s_per_user"]], y=[best["tokens_per_s_per_gpu"]],
                                 mode="markers", marker={"size": 14, "color": "#2e7d32", "symbol": "star"},
                                 name="best meeting the SLA"))
    fig.add_vline(x=1000.0 / q.get("tpot_ms", 50.0), line_dash="dot", annotation_text="TPOT SLA")
    return plot(sec, ctx, "plan-pareto", fig, title="tokens/s/GPU vs tokens/s/user (disaggregated)",
                xaxis_title="tokens/s/user", yaxis_title="output tokens/s/GPU", height=360)


def _serve(r: dict, ctx, sec: Section) -> str:
    q, best, unmet = r.get("query", {}), r.get("best"), r.get("sla_unmet")
    parts = []
    if best:
        parts.append(_serve_best(best, q))
    elif unmet:
        parts += [f'<p class="err-pos"><b>{esc(unmet["message"])}.</b> Closest:</p>',
                  table(*spec_rows(unmet["closest"], CLOSEST_COLS))]
    if r.get("ranked"):
        parts.append(table(*spec_rows(r["ranked"][:MAX_ROWS], SERVE_COLS), best=0))
    if r.get("pareto"):
        parts.append(_pareto(sec, ctx, r["pareto"], best, q))
    f = r.get("fleet")
    if f and "infeasible" not in f:
        parts.append(note(f"Fleet for {f['daily_input_tokens']:.3g} input + {f['daily_output_tokens']:.3g} output "
                          f"tokens per day: {f['nodes']:.1f} nodes on average ({f['prefill_nodes']:.1f} prefill + "
                          f"{f['decode_nodes']:.1f} decode), ${f['cost_usd_per_day']:,.0f} per day "
                          f"({esc(f['rates_from'])})." + _load_model_note(f)))
    return "".join(parts + [note(esc(n)) for n in r.get("notes", [])])


def _load_model_note(f: dict) -> str:
    """The load model's peak and where each pool's node-hours go (ideal -> burst -> interval -> whole units)."""
    lm = f.get("load_model")
    if not isinstance(lm, dict):
        return ""
    pools = []
    for name in ("prefill", "decode"):
        p = lm.get(name) or {}
        causes = p.get("node_hours_by_cause") or {}
        steps = ", ".join(f"{esc(k)} {v:,.0f}" for k, v in causes.items())
        pools.append(f"{name}: {p.get('utilisation', 0.0):.0%} of capacity on average ({steps} node-hours)")
    load = lm.get("load") or {}
    return (f" Peak {lm.get('peak_nodes', 0):.0f} nodes (peak/average {lm.get('peak_to_average_nodes', 0):.2f}) "
            f"under {esc(load.get('source', 'the load model'))}; " + "; ".join(pools) + ".")


def _network(r: dict, ctx, sec: Section) -> str:
    rows = [dict(x, verdict=x["infeasible"] if "infeasible" in x else "chosen" if x.get("chosen") else "")
            for x in r.get("rows", [])]
    best = next((i for i, x in enumerate(rows) if x.get("chosen")), None)
    return (f"<p>{r.get('endpoints'):,} endpoints with {r.get('radix')}-port switches; the cheapest per endpoint is "
            f"<b>{esc(r.get('chosen'))}</b>.</p>" + table(*spec_rows(rows, NETWORK_COLS), best=best))
