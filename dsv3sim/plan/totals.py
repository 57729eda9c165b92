"""Training-run totals: GPU-hours, days and dollars of pre-training on the best layout, plus context extension
(simulated on the same layout at the longer sequence) and post-training when given (DeepSeek-V3 Table 1's rows).

A context-extension phase whose sequence does not fit the layout's memory is estimated from the training FLOPs
per token at that length (``cost.flops.train_flops_per_token``) at the pre-training MFU, and says so.
"""

from __future__ import annotations

from dataclasses import replace

from dsv3sim.config.model import load_model_config
from dsv3sim.cost.flops import train_flops_per_token
from dsv3sim.cost.pricing import Phase, training_run_totals


def run_totals(q, best: dict, *, layout, evaluate) -> dict:
    """``layout``: the best training layout; ``evaluate((query, layout, comm_model))`` simulates it
    (``plan.train.evaluate``, passed in so that this module needs no import of the search)."""
    lay = layout
    phases = [Phase(name=f"pre-training ({q.seq_len} tokens/sequence)", tokens=q.tokens,
                    tokens_per_s=best["tokens_per_s"], n_gpus=best["n_gpus"])]
    notes = []
    cfg = load_model_config(q.model)
    for tokens, seq, batch in q.extension_phases:
        qq = replace(q, seq_len=seq, global_batch=batch, tokens=tokens)
        r = evaluate((qq, lay, best["comm_model"]))
        if "infeasible" in r:
            f0, f1 = train_flops_per_token(cfg, q.seq_len), train_flops_per_token(cfg, seq)
            tps = best["tokens_per_s"] * f0 / f1
            notes.append(f"context extension to {seq}: the best layout does not run it ({r['infeasible']}); "
                         f"estimated at the pre-training MFU from FLOPs per token ({f1 / f0:.2f}x)")
        else:
            tps = r["tokens_per_s"]
        phases.append(Phase(name=f"context extension ({seq} tokens/sequence)", tokens=tokens, tokens_per_s=tps,
                            n_gpus=best["n_gpus"]))
    if q.post_training_gpu_hours:
        phases.append(Phase(name="post-training (given)", gpu_hours=q.post_training_gpu_hours,
                            n_gpus=best["n_gpus"]))
    out = training_run_totals(phases, q.price_per_gpu_hour)
    out["notes"] = notes
    return out
