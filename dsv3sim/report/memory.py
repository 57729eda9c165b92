"""Memory per GPU (``results.MemoryRow`` components stacked against the HBM) and KV-cache sizing, MLA vs GQA.

KV sizing reads the model configs (``dsv3sim.cost.kvcache``): bytes per token (MLA caches kv_lora_rank +
qk_rope_head_dim per layer, DeepSeek-V2 §2.1; GQA K and V of num_key_value_heads x head_dim), then the sequences of
a context whose cache fits one GPU's KV budget (the result's ``KvSizing``, else half the HBM), the same for every
model so the columns compare bytes. Keys read: NOTES.md.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_bytes, num
from dsv3sim.report.page import Section, esc, missing, note, plot, table
from dsv3sim.results import KvSizing, MemoryRow, group

GiB = 2 ** 30
GQA_REFERENCES = ("qwen2.5-72b", "llama3-70b")
CONTEXTS = (4096, 32768, 131072)
DEFAULT_HBM_BYTES = 141e9  # H200 (NVIDIA H200 datasheet: 141 GB = 131.3 GiB HBM3e) when the result names no GPU memory


def memory_rows(result: dict) -> list[MemoryRow]:
    """``memory_per_gpu`` as ``results.MemoryRow``s (rows of other keys are not memory rows)."""
    mem = result.get("memory_per_gpu")
    return [g for r in mem if (g := group(MemoryRow, r)) is not None] if isinstance(mem, list) else []


def parse_memory(mem, rank_label: str = "PP rank") -> list[tuple[str, dict[str, float]]]:
    """[(row label, {component: bytes})] of ``memory_per_gpu`` rows (``MemoryRow.components``)."""
    rows = memory_rows({"memory_per_gpu": mem})
    return [(f"{rank_label} {i if r.rank is None else r.rank}", r.components()) for i, r in enumerate(rows)
            if r.components()]


def hbm_bytes(result: dict) -> float | None:
    """The GPU's memory, as the first memory row states it."""
    return next((r.hbm_bytes for r in memory_rows(result) if r.hbm_bytes), None)


def memory_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    rows = parse_memory(result.get("memory_per_gpu"), "PP rank" if result.get("type") == "training" else "rank")
    if not rows:
        return missing("memory", "Memory per GPU", "no memory breakdown in this result")
    sec = Section(key="memory", title="Memory per GPU")
    comps = list(dict.fromkeys(k for _, c in rows for k in c))
    fig = go.Figure([go.Bar(x=[r for r, _ in rows], y=[c.get(comp, 0) / GiB for _, c in rows], name=comp)
                     for comp in comps])
    hbm = hbm_bytes(result)
    if hbm:
        fig.add_hline(y=hbm / GiB, line_dash="dash", line_color="#e45756",
                      annotation_text=f"HBM {hbm / GiB:.0f} GiB", annotation_position="top left")
    worst = max(rows, key=lambda r: sum(r[1].values()))
    tot = sum(worst[1].values())
    fits = "" if not hbm else (f" — fits ({tot / hbm * 100:.0f} % of HBM)" if tot <= hbm
                               else f" — <b class='err-pos'>does not fit ({tot / hbm * 100:.0f} % of HBM)</b>")
    sec.body = (note(f"Largest: {esc(worst[0])} with {fmt_bytes(tot)}{fits}.")
                + plot(sec, ctx, "memory", fig, barmode="stack", title="Memory per GPU by component",
                       yaxis_title="GiB", height=400))
    return sec


# ---------------------------------------------------------------- KV cache

def _model_names(result: dict) -> list[str]:
    return [result["model"]] if isinstance(result.get("model"), str) else []


def _fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _kv(result: dict) -> KvSizing:
    """The result's ``kv`` group (``results.KvSizing``; empty when there is none)."""
    return group(KvSizing, result.get("kv")) or KvSizing()


def kv_rows(names: list[str], budget: float, layers_fraction: float = 1.0) -> tuple[list[dict], list[str]]:
    """One row per loadable config: bytes/token and max batch at each context within ``budget`` bytes."""
    from dsv3sim.config import load_model_config
    from dsv3sim.cost.kvcache import kv_cache_bytes_per_token, max_batch_at_context, max_kv_tokens

    rows, skipped, seen = [], [], set()
    for n in names:
        try:
            cfg = load_model_config(n)
        except (ValueError, FileNotFoundError, OSError) as e:
            skipped.append(f"{n} ({e})")
            continue
        if cfg.name in seen:
            continue
        seen.add(cfg.name)
        per = kv_cache_bytes_per_token(cfg, 2)
        tokens = max_kv_tokens(cfg, budget, 2, layers_fraction)
        rows.append({"model": cfg.name, "attention": cfg.attention.upper(), "bytes_per_token": per,
                         "bytes_per_token_fp8": kv_cache_bytes_per_token(cfg, 1), "tokens": tokens,
                         "max_context_batch1": min(tokens, cfg.max_position_embeddings),
                         "model_max_context": cfg.max_position_embeddings,
                         "batch": {c: max_batch_at_context(cfg, budget, c, 2, layers_fraction) for c in CONTEXTS}})
    return rows, skipped


def _kv_budget(result: dict, kv: KvSizing) -> tuple[float, str]:
    """The KV bytes per GPU to size against, and how it was chosen (from the result, else half the HBM)."""
    budget = num(kv.kv_budget_bytes_per_gpu)
    if budget is not None:
        return budget, "KV budget per GPU from the result"
    hbm = hbm_bytes(result) or DEFAULT_HBM_BYTES
    return hbm * 0.5, (f"KV budget per GPU = half of {'the result GPU' if hbm_bytes(result) else 'an H200'}'s "
                       f"{hbm / GiB:.0f} GiB HBM (the rest for weights, activations and buffers; "
                       "an assumption, the same for every model)")


def _kv_table(rows: list[dict]) -> str:
    hdr = ["model", "attention", "KV B/token (BF16)", "KV B/token (FP8)", "tokens in budget",
           "max context, batch 1"] + [f"max batch @ {c // 1024}K" for c in CONTEXTS]
    body = [[r["model"], r["attention"], f"{r['bytes_per_token']:,}", f"{r['bytes_per_token_fp8']:,}",
             f"{r['tokens']:,}", f"{r['max_context_batch1']:,}"
             + (" (model limit)" if r["tokens"] > r["model_max_context"] else "")]
            + [f"{r['batch'][c]:,}" for c in CONTEXTS] for r in rows]
    return table(hdr, body, set(range(2, len(hdr))))


def _kv_figure(rows: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for c in CONTEXTS:
        fig.add_trace(go.Bar(x=[r["model"] for r in rows], y=[r["batch"][c] or None for r in rows],
                             name=f"context {c // 1024}K", text=[f"{r['batch'][c]:,}" for r in rows],
                             textposition="outside"))
    return fig


def _kv_simulated(kv: KvSizing) -> str:
    """The simulator's own per-model capacity comparison and KV figures, when the result has them."""
    html = ""
    cmp = kv.kv_compare_models
    sim_kv = {k: getattr(kv, k) for k in kv.given if k != "kv_compare_models"}
    if isinstance(cmp, dict) and cmp and all(isinstance(v, dict) for v in cmp.values()):
        cols: list[str] = []
        for v in cmp.values():
            cols += [k for k, x in v.items() if k not in cols and k != "model" and not isinstance(x, (dict, list))]
        cmp_rows = [[m] + [_fmt_cell(v.get(c)) for c in cols] for m, v in cmp.items()]
        html += (note("Capacity per node as the simulator computed it (weights in each model's native dtype "
                      "spread over the node):") + table(["model"] + cols, cmp_rows, set(range(1, len(cols) + 1))))
    if sim_kv:
        html += (note("KV figures of the simulated deployment (from the result):")
                 + table(["field", "value"], [[k, _fmt_cell(v)] for k, v in sim_kv.items()], {1}))
    return html


def kv_section(result: dict, ctx) -> Section:
    title = "KV-cache sizing: MLA vs GQA"
    names = _model_names(result)
    if not names:
        return missing("kvcache", title, "no model named in this result, so no KV sizing")
    names += [g for g in GQA_REFERENCES if g not in names]
    kv = _kv(result)
    budget, how = _kv_budget(result, kv)
    lf = num(kv.kv_layers_fraction) or 1.0
    rows, skipped = kv_rows(names, budget, lf)
    if not rows:
        return missing("kvcache", title, f"model configs not loadable: {', '.join(skipped)}")
    sec = Section(key="kvcache", title=title)
    sec.body = _kv_simulated(kv) + (
        note(esc(how) + f"; each GPU caches {lf:g} of the layers (attention data-parallel, as in "
             "DeepSeek's decode deployment). Computed from the configs with dsv3sim.cost.kvcache.")
        + _kv_table(rows) + plot(sec, ctx, "kv", _kv_figure(rows), barmode="group", height=380,
                                 title=f"Sequences whose KV cache fits {budget / GiB:.0f} GiB (BF16)",
                                 yaxis={"type": "log", "title": "max batch per GPU"})
        + (note("Not loadable: " + esc(", ".join(skipped))) if skipped else ""))
    return sec
