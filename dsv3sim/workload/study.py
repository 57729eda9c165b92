"""A study's scenarios compared, each with the first scenario of its kind (``scenarios/studies.py`` puts the
published setup first): throughput relative to it (cluster tokens/s for training, tokens/s per node for prefill and
decode, DeepSeek's Day-6 unit, output tokens/s per node for aggregated serving), the latency that matters for the
kind, MFU, GPU-hours per trillion tokens and what limits it (``limits.limiter``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from dsv3sim.config.units import num
from dsv3sim.workload.limits import limiter

THROUGHPUT = {"training": ("tokens_per_s", "tokens/s (cluster)"),
              "prefill": ("prefill_tokens_per_s_per_node", "prefill tokens/s/node"),
              "decode": ("decode_tokens_per_s_per_node", "decode tokens/s/node"),
              "aggregated": ("output_tokens_per_s_per_node", "output tokens/s/node")}  # prefill + decode per GPU
LATENCY = (("step_time_s", "step"), ("ttft_s", "TTFT"), ("tpot_s", "TPOT"))  # the first a result has


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyRow:
    """One scenario of a study; ``vs_baseline`` = throughput / the baseline's - 1 (None without both)."""

    scenario: str
    kind: str
    throughput: float | None  # None when infeasible
    unit: str
    infeasible: str | None
    latency: tuple[str, float] | None  # (label, seconds) from LATENCY; None when infeasible
    mfu: float | None
    gph: float | None  # GPU-hours per trillion tokens, as the result states it
    limit: str
    baseline: str | None = None
    vs_baseline: float | None = None


def study_rows(results: list[tuple[str, dict]]) -> list[StudyRow]:
    """A row per (scenario name, result); a result without a known ``kind`` but with a training breakdown is
    training."""
    rows, base = [], {}
    for name, res in results:
        k = res.get("kind")
        kind = k if k in THROUGHPUT else "training" if isinstance(res.get("breakdown_s"), dict) else str(k or "?")
        key, unit = THROUGHPUT.get(kind, ("tokens_per_s", "tokens/s"))
        reason = res.get("infeasible")
        tp = None if reason else num(res.get(key))
        if tp and kind not in base:
            base[kind] = (name, tp)
        lat = None if reason else next(((lab, v) for k2, lab in LATENCY if (v := num(res.get(k2))) is not None), None)
        rows.append(StudyRow(scenario=name, kind=kind, throughput=tp, unit=unit, infeasible=reason, latency=lat,
                             mfu=num(res.get("mfu")), gph=num(res.get("gpu_hours_per_trillion_tokens")),
                             limit=limiter(res)))
    return [replace(r, baseline=b[0], vs_baseline=r.throughput / b[1] - 1.0 if r.throughput else None)
            if (b := base.get(r.kind)) else r for r in rows]
