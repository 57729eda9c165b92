"""Planner section: the ranked layouts of ``dsv3sim plan`` (train, serve or network), the best highlighted."""

from __future__ import annotations

from collections import Counter

from dsv3sim.cost.pricing import DEFAULT_PRICE_PER_GPU_HOUR
from dsv3sim.report.page import Html, esc, need, note, say, spec_table

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


def plan(result: dict, ctx) -> str:
    body = need({"train": _train, "serve": _serve, "network": _network}.get(result.get("kind")), "not a plan result")
    return body(result, ctx) + "".join(note(esc(n)) for n in result.get("notes", []) if body is not _network)


def _train(r: dict, ctx) -> str:
    c, cands, t, best = r.get("counts", {}), r.get("candidates", []), r.get("totals"), r.get("best")
    ok, bad = [x for x in cands if "infeasible" not in x], [x for x in cands if "infeasible" in x]
    reasons = Counter(x["infeasible"].split(":")[0][:60] for x in bad).most_common(8)
    u = r.get("user_layout") or {}  # the layout asked about: how it ran, else why not and the nearest that fits
    nf = u.get("nearest_feasible")
    nearest = Html(say("planner.nearest", key=nf.get("key"), changed=", ".join(nf.get("changed", [])))) if nf else ""
    user = "" if not u else note(say("planner.user_ok", **u)) if u.get("feasible") else say(
        "planner.user_bad", **u, nearest=nearest or "Nothing feasible.")
    return "".join([
        say("planner.train_best", **best, mgh=best["gpu_hours"] / 1e6, musd=best["cost_usd_run"] / 1e6,
            price=r.get("query", {}).get("price_per_gpu_hour", DEFAULT_PRICE_PER_GPU_HOUR)) if best
        else '<p class="err-pos"><b>No layout fits.</b></p>',
        note(say("planner.train_counts", layouts=c.get("layouts", 0), pruned=c.get("pruned_before_simulation", 0),
                 bound=c.get("simulated_bound", 0), event=c.get("simulated_event", 0))),
        spec_table(ok[:MAX_ROWS], TRAIN_COLS, best=0 if ok else None),
        ctx.plot("plan-train", [{"type": "scatter", "x": [x["days"] for x in ok], "mode": "markers",
                                 "y": [x["cost_usd_run"] for x in ok], "text": [x["key"] for x in ok],
                                 "hoverinfo": "text+x+y", "name": "feasible",
                                 "marker": {"color": ["#2e7d32"] + ["#4c78a8"] * (len(ok) - 1)}}],
                 title="Feasible layouts: days vs dollars", xaxis_title="days", yaxis_title="$", height=340)
        if ok else "", user,
        spec_table(t["phases"] + [{"phase": "total", "gpu_hours": t["gpu_hours_total"],
                                   "cost_usd": t["cost_usd_total"]}], TOTALS_COLS) if t else "",
        note("Infeasible, by reason: " + "; ".join(f"{esc(k)} ({n})" for k, n in reasons)) if bad else ""])


def _fleet(f: dict) -> str:
    """The fleet for the daily tokens; the load model's peak and where each pool's node-hours go."""
    lm, pools = f.get("load_model"), []
    for name in ("prefill", "decode") if isinstance(lm, dict) else ():
        p = lm.get(name) or {}
        steps = ", ".join(f"{k} {v:,.0f}" for k, v in (p.get("node_hours_by_cause") or {}).items())
        pools.append(say("planner.pool", name=name, util=p.get("utilisation", 0.0), steps=steps))
    source = (lm.get("load") or {}).get("source", "the load model") if pools else ""
    load = say("planner.fleet_load", peak=lm.get("peak_nodes", 0), ratio=lm.get("peak_to_average_nodes", 0),
               source=source, pools=Html("; ".join(pools))) if pools else ""
    return note(say("planner.fleet", **f) + load)


def _serve(r: dict, ctx) -> str:
    q, best, unmet, front = r.get("query", {}), r.get("best"), r.get("sla_unmet"), r.get("pareto") or []
    miss = f'<p class="err-pos"><b>{esc(unmet["message"])}.</b> Closest:</p>' if unmet else ""
    pareto = [{"type": "scatter", "x": [c["tokens_per_s_per_user"] for c in front], "mode": "lines+markers",
               "y": [c["tokens_per_s_per_gpu"] for c in front], "name": "Pareto frontier",
               "text": [f"{c['prefill']} + {c['decode']}" for c in front]}]
    pareto += [{"type": "scatter", "x": [best["tokens_per_s_per_user"]], "y": [best["tokens_per_s_per_gpu"]],
                "mode": "markers", "marker": {"size": 14, "color": "#2e7d32", "symbol": "star"},
                "name": "best meeting the SLA"}] if best else []
    return "".join([
        say("planner.serve_best", **best, gpus=q.get("gpus")) if best else
        miss + spec_table(unmet["closest"], CLOSEST_COLS) if unmet else "",
        spec_table(r["ranked"][:MAX_ROWS], SERVE_COLS, best=0) if r.get("ranked") else "",
        ctx.plot("plan-pareto", pareto, lines=[("v", {"x": 1000.0 / q.get("tpot_ms", 50.0), "line_dash": "dot",
                                                      "annotation_text": "TPOT SLA"})],
                 title="tokens/s/GPU vs tokens/s/user (disaggregated)", xaxis_title="tokens/s/user",
                 yaxis_title="output tokens/s/GPU", height=360) if front else "",
        _fleet(f) if (f := r.get("fleet")) and "infeasible" not in f else ""])


def _network(r: dict, ctx) -> str:
    rows = [dict(x, verdict=x["infeasible"] if "infeasible" in x else "chosen" if x.get("chosen") else "")
            for x in r.get("rows", [])]
    best = next((i for i, x in enumerate(rows) if x.get("chosen")), None)
    return say("planner.network", **r) + spec_table(rows, NETWORK_COLS, best=best)
