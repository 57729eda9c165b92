"""Memory per GPU (``results.MemoryRow`` stacked against the HBM) and KV-cache sizing, MLA vs GQA: MLA caches
kv_lora_rank + qk_rope_head_dim per layer (DeepSeek-V2 §2.1), GQA K and V of n_kv_heads x head_dim."""

from __future__ import annotations

from dsv3sim.config.hardware import get_gpu
from dsv3sim.config.units import fmt_bytes, num
from dsv3sim.cost.kvcache import CONTEXTS, GQA_REFERENCES, kv_comparison
from dsv3sim.report.page import Html, esc, fmt, need, note, say, spec_table, table
from dsv3sim.results import KvSizing, group
from dsv3sim.results.reading import hbm_bytes, memory_rows

GiB = 2 ** 30
DEFAULT_HBM_BYTES = get_gpu("H200").hbm_bytes  # the HBM assumed when the result names no GPU memory
KV_COLS = (("model", "model", str), ("attention", "attention", str), ("KV B/token (BF16)", "bytes_per_token", ","),
           ("KV B/token (FP8)", "bytes_per_token_fp8", ","), ("tokens in budget", "tokens", ","),
           ("max context, batch 1", "context", str), *((f"max batch @ {c // 1024}K", c, ",") for c in CONTEXTS))


def memory(result: dict, ctx) -> str:
    label = "PP rank" if result.get("type") == "training" else "rank"
    rows = need([(f"{label} {i if r.rank is None else r.rank}", r.components()) for i, r in enumerate(
        memory_rows(result)) if r.components()], "no memory breakdown in this result")
    hbm, (worst, comps) = hbm_bytes(result), max(rows, key=lambda r: sum(r[1].values()))
    tot = sum(comps.values())
    fits = say("memory.fits" if tot <= hbm else "memory.overflows", pct=tot / hbm * 100) if hbm else ""
    traces = [{"type": "bar", "x": [r for r, _ in rows], "y": [c.get(comp, 0) / GiB for _, c in rows], "name": comp}
              for comp in dict.fromkeys(k for _, c in rows for k in c)]
    lines = [("h", {"y": hbm / GiB, "line_dash": "dash", "line_color": "#e45756", "annotation_position": "top left",
                    "annotation_text": f"HBM {hbm / GiB:.0f} GiB"})] if hbm else ()
    return note(say("memory.largest", worst=worst, total=fmt_bytes(tot), fits=Html(fits))) + ctx.plot(
        "memory", traces, lines=lines, barmode="stack", title="Memory per GPU by component", yaxis_title="GiB",
        height=400)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else fmt(v, str)


def _kv_simulated(kv: KvSizing) -> str:
    """The simulator's own per-model capacity comparison and KV figures, when the result has them."""
    out, cmp = "", kv.kv_compare_models
    if isinstance(cmp, dict) and cmp and all(isinstance(v, dict) for v in cmp.values()):
        cols = list(dict.fromkeys(k for v in cmp.values() for k, x in v.items()
                                  if k != "model" and not isinstance(x, (dict, list))))
        out += note(say("memory.kv_compare")) + table(["model", *cols], [[m] + [_cell(v.get(c)) for c in cols]
                                                                     for m, v in cmp.items()], range(1, len(cols) + 1))
    if sim := [[k, _cell(getattr(kv, k))] for k in kv.given if k != "kv_compare_models"]:
        out += note("KV figures of the simulated deployment (from the result):") + table(["field", "value"], sim, {1})
    return out


def kv(result: dict, ctx) -> str:
    need(isinstance(model := result.get("model"), str), "no model named in this result, so no KV sizing")
    sizing = group(KvSizing, result.get("kv")) or KvSizing()
    budget, hbm = num(sizing.kv_budget_bytes_per_gpu), hbm_bytes(result)
    how = "KV budget per GPU from the result" if budget is not None else say(
        "memory.kv_half", whose="the result GPU" if hbm else "an H200", gib=(hbm or DEFAULT_HBM_BYTES) / GiB)
    budget = budget if budget is not None else (hbm or DEFAULT_HBM_BYTES) * 0.5
    lf = num(sizing.kv_layers_fraction) or 1.0
    sizings, skipped = kv_comparison([model] + [g for g in GQA_REFERENCES if g != model], budget, lf)
    rows = need([{**s, "attention": s["attention"].upper(), **s["batch"], "context": f"{s['max_context']:,}" + (
        " (model limit)" if s["model_limit"] else "")} for s in sizings], "model configs not loadable: " + ", ".join(
        skipped))  # KV_COLS
    return _kv_simulated(sizing) + note(say("memory.kv_how", how=how, lf=lf)) + spec_table(
        rows, KV_COLS, numeric=range(2, len(KV_COLS))) + ctx.plot(
        "kv", [{"type": "bar", "x": [r["model"] for r in rows], "y": [r[c] or None for r in rows],
                "name": f"context {c // 1024}K", "text": [f"{r[c]:,}" for r in rows], "textposition": "outside"}
               for c in CONTEXTS], barmode="group", height=380, yaxis={"type": "log", "title": "max batch per GPU"},
        title=f"Sequences whose KV cache fits {budget / GiB:.0f} GiB (BF16)") + (
        note("Not loadable: " + esc(", ".join(skipped))) if skipped else "")
