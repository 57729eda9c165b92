"""Planner section: the ranked layouts of ``dsv3sim plan`` (train, serve or network) with the best highlighted and
why, cost columns, the best layout's bottleneck, the Pareto plot (serving). Each table is a column spec: (header,
key, format). Keys read: NOTES.md.
"""

from __future__ import annotations

from collections import Counter

from dsv3sim.report.page import BEST_STYLE, Absent, esc, note, spec_table

__all__ = ["BEST_STYLE", "plan"]

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
                ("$k / endpoint", "cost_usd_per_endpoint", lambda v: f"{v / 1e3:.2f}"), ("", "verdict", str))
TOTALS_COLS = (("phase", "phase", str), ("GPU-hours", "gpu_hours", ",.0f"), ("days", "days", ".1f"),
               ("cost $", "cost_usd", ",.0f"))


def plan(result: dict, ctx) -> str | None:
    if result.get("type") != "plan":
        return None
    ctx.section.title = f"Capacity plan ({result.get('kind')})"
    if (body := {"train": _train, "serve": _serve, "network": _network}.get(result.get("kind"))) is None:
        raise Absent("not a plan result")
    return body(result, ctx) + "".join(note(esc(n)) for n in result.get("notes", []) if body is not _network)


def _train_best(best: dict | None, q: dict) -> str:
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


def _train(r: dict, ctx) -> str:
    c, cands, t = r.get("counts", {}), r.get("candidates", []), r.get("totals")
    ok, bad = [x for x in cands if "infeasible" not in x], [x for x in cands if "infeasible" in x]
    reasons = Counter(x["infeasible"].split(":")[0][:60] for x in bad).most_common(8)
    return "".join([
        _train_best(r.get("best"), r.get("query", {})),
        note(f"{c.get('layouts', 0)} layouts; {c.get('pruned_before_simulation', 0)} pruned by structure or memory "
             f"before any simulation; {c.get('simulated_bound', 0)} screened with the busiest-link all-to-all bound; "
             f"the best {c.get('simulated_event', 0)} re-simulated event by event. Highlighted: the best."),
        spec_table(ok[:MAX_ROWS], TRAIN_COLS, best=0 if ok else None),
        ctx.plot("plan-train", [{"type": "scatter", "x": [x["days"] for x in ok], "mode": "markers",
                                 "y": [x["cost_usd_run"] for x in ok], "text": [x["key"] for x in ok],
                                 "hoverinfo": "text+x+y", "name": "feasible",
                                 "marker": {"color": ["#2e7d32"] + ["#4c78a8"] * (len(ok) - 1)}}],
                 title="Feasible layouts: days vs dollars", xaxis_title="days", yaxis_title="$", height=340)
        if ok else "", _user_layout(r.get("user_layout")),
        spec_table(t["phases"] + [{"phase": "total", "gpu_hours": t["gpu_hours_total"],
                                   "cost_usd": t["cost_usd_total"]}], TOTALS_COLS) if t else "",
        note("Infeasible, by reason: " + "; ".join(f"{esc(k)} ({n})" for k, n in reasons)) if bad else ""])


def _serve_best(best: dict, q: dict) -> str:
    return (f"<p><b>Best:</b> {best['tokens_per_s_per_gpu']:,.0f} output tokens/s/GPU at "
            f"{best['tokens_per_s_per_user']:.1f} tokens/s/user: {best['n_prefill_instances']} x "
            f"{esc(best['prefill'])} + {best['n_decode_instances']} x {esc(best['decode'])} "
            f"({best['gpus_used']} of {q.get('gpus')} GPUs). Its bottleneck is <b>{esc(best['limits'])}</b> "
            f"({esc(best['bottleneck_side'])} side saturates first). ${best['cost_usd_per_million_input_tokens']:.3f}"
            f" per million input and ${best['cost_usd_per_million_output_tokens']:.3f} per million output "
            f"tokens.</p>")


def _pareto(ctx, front: list[dict], best: dict | None, q: dict) -> str:
    traces = [{"type": "scatter", "x": [c["tokens_per_s_per_user"] for c in front], "mode": "lines+markers",
               "y": [c["tokens_per_s_per_gpu"] for c in front], "name": "Pareto frontier",
               "text": [f"{c['prefill']} + {c['decode']}" for c in front]}]
    traces += [{"type": "scatter", "x": [best["tokens_per_s_per_user"]], "y": [best["tokens_per_s_per_gpu"]],
                "mode": "markers", "marker": {"size": 14, "color": "#2e7d32", "symbol": "star"},
                "name": "best meeting the SLA"}] if best else []
    return ctx.plot("plan-pareto", traces, lines=[("v", {"x": 1000.0 / q.get("tpot_ms", 50.0), "line_dash": "dot",
                                                         "annotation_text": "TPOT SLA"})],
                    title="tokens/s/GPU vs tokens/s/user (disaggregated)", xaxis_title="tokens/s/user",
                    yaxis_title="output tokens/s/GPU", height=360)


def _fleet(f: dict) -> str:
    """The fleet for the daily tokens; the load model's peak and where each pool's node-hours go."""
    lm, pools = f.get("load_model"), []
    for name in ("prefill", "decode") if isinstance(lm, dict) else ():
        p = lm.get(name) or {}
        steps = ", ".join(f"{esc(k)} {v:,.0f}" for k, v in (p.get("node_hours_by_cause") or {}).items())
        pools.append(f"{name}: {p.get('utilisation', 0.0):.0%} of capacity on average ({steps} node-hours)")
    source = esc((lm.get("load") or {}).get("source", "the load model")) if pools else ""
    load = (f" Peak {lm.get('peak_nodes', 0):.0f} nodes (peak/average {lm.get('peak_to_average_nodes', 0):.2f}) "
            f"under {source}; " + "; ".join(pools) + ".") if pools else ""
    return note(f"Fleet for {f['daily_input_tokens']:.3g} input + {f['daily_output_tokens']:.3g} output tokens per "
                f"day: {f['nodes']:.1f} nodes on average ({f['prefill_nodes']:.1f} prefill + {f['decode_nodes']:.1f} "
                f"decode), ${f['cost_usd_per_day']:,.0f} per day ({esc(f['rates_from'])})." + load)


def _serve(r: dict, ctx) -> str:
    q, best, unmet, f = r.get("query", {}), r.get("best"), r.get("sla_unmet"), r.get("fleet")
    return "".join([
        _serve_best(best, q) if best else (f'<p class="err-pos"><b>{esc(unmet["message"])}.</b> Closest:</p>'
                                           + spec_table(unmet["closest"], CLOSEST_COLS) if unmet else ""),
        spec_table(r["ranked"][:MAX_ROWS], SERVE_COLS, best=0) if r.get("ranked") else "",
        _pareto(ctx, r["pareto"], best, q) if r.get("pareto") else "",
        _fleet(f) if f and "infeasible" not in f else ""])


def _network(r: dict, ctx) -> str:
    rows = [dict(x, verdict=x["infeasible"] if "infeasible" in x else "chosen" if x.get("chosen") else "")
            for x in r.get("rows", [])]
    return (f"<p>{r.get('endpoints'):,} endpoints with {r.get('radix')}-port switches; the cheapest per endpoint is "
            f"<b>{esc(r.get('chosen'))}</b>.</p>" + spec_table(
                rows, NETWORK_COLS, best=next((i for i, x in enumerate(rows) if x.get("chosen")), None)))
