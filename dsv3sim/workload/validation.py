"""DeepSeek's published figures next to our predictions: rows ``{name, predicted, published, unit, source,
rel_error, note}`` that ``dsv3sim run`` attaches to results (``validation.rows``) and tests/validation checks.

Published figures:
- Training cost: 2.664M H800 GPU hours for 14.8T tokens of pre-training = 180K GPU hours per trillion tokens
  (DeepSeek-V3 report §1 and Table 1). Includes everything a real run pays (restarts, evaluation, stragglers,
  the ramp of the batch size), so a step simulation should come out at or below it.
- Serving (deepseek-ai/open-infra-index, Day 6 "DeepSeek-V3/R1 Inference System Overview", 24-hour production
  averages on H800): 73.7k input tokens/s per node in prefill including 56.3 % on-disk KV-cache hits (so
  32.2k computed tokens/s per node), 14.8k output tokens/s per node in decode, 20-22 output tokens/s per request.
  Averages over a day of varying load: capacity (what we simulate) is at or above them.
- MTP: 85-90 % acceptance of the second token (DeepSeek-V3 report §5.4.3).
- One overlapped forward+backward chunk pair of 4 MoE layers at EP64, 4K sequence, balanced routing, H800
  (deepseek-ai/profile-data train.json, PyTorch profiler): its GPU kernels span 128.5 ms (compute stream busy
  118.2 ms, DeepEP stream 114.5 ms), read from the trace's kernel events. The profile's micro-batch size is not
  published; we compare with our pair at one 4K sequence.
"""

from __future__ import annotations

V3_GPU_HOURS_PER_T = 180_000.0
DAY6_PREFILL = 73_700.0
DAY6_CACHE_HIT = 0.563
DAY6_DECODE = 14_800.0
DAY6_SPEED = (20.0, 22.0)
MTP_PUBLISHED = (0.85, 0.90)
PROFILE_DATA_PAIR_S = 0.1285  # deepseek-ai/profile-data train.json: kernel span of the F&B pair (4 MoE layers)
PAIR_KEY = "F[moe+moe+moe+moe]&BW[moe+moe+moe+moe]"
SRC_V3 = "DeepSeek-V3 report (arXiv 2412.19437) §1, Table 1"
SRC_DAY6 = "deepseek-ai/open-infra-index Day 6 inference system overview (24 h production averages, H800)"


def _row(name: str, predicted: float, published: float, unit: str, source: str, note: str = "") -> dict:
    return {"name": name, "predicted": predicted, "published": published, "unit": unit, "source": source,
            "rel_error": (predicted - published) / published if published else None, "note": note}


PUBLISHED_SCENARIOS = ("deepseek-v3-pretrain", "deepseek-v3-prefill", "deepseek-v3-prefill-day6",
                       "deepseek-v3-decode", "deepseek-v3-decode-day6")


def comparisons(d: dict) -> list[dict]:
    """Rows for a result dict (to_json output) whose scenario is one of DeepSeek's published deployments
    (scenarios/deepseek_v3_pretrain.py, scenarios/deepseek_v3_serving.py); what-if variants get none."""
    rows: list[dict] = []
    name = d.get("scenario", "")
    if d.get("infeasible") or name not in PUBLISHED_SCENARIOS:
        return rows
    if d.get("type") == "training" and d.get("gpu") == "H800" and d.get("model") == "deepseek-v3":
        rows.append(_row("GPU hours per trillion tokens", d["gpu_hours_per_trillion_tokens"], V3_GPU_HOURS_PER_T,
                         "GPU h / 1e12 tokens", SRC_V3,
                         "published = whole pre-training run; simulated = steady-state step"))
        pair = (d.get("chunk_times_s") or {}).get(PAIR_KEY)
        if pair is not None:
            rows.append(_row("F&B chunk pair, 4 MoE layers", pair, PROFILE_DATA_PAIR_S, "s",
                             "deepseek-ai/profile-data train.json (kernel span)",
                             "profile micro-batch size unpublished; simulated at one 4K sequence"))
    if d.get("kind") == "prefill" and d.get("gpu") == "H800" and "deepseek-v3" in d.get("model", ""):
        v = d["prefill_tokens_per_s_per_node"]
        rows.append(_row("prefill input tokens/s per node (as published, incl. cache hits)", v, DAY6_PREFILL,
                         "tokens/s", SRC_DAY6, f"scenario {name}; simulated tokens are all computed"))
        rows.append(_row("prefill computed tokens/s per node (published x (1 - 56.3 % cache hits))", v,
                         DAY6_PREFILL * (1 - DAY6_CACHE_HIT), "tokens/s", SRC_DAY6,
                         "published is a 24 h average; simulated is capacity at 16K tokens per GPU"))
    if d.get("kind") == "decode" and d.get("gpu") == "H800" and "deepseek-v3" in d.get("model", ""):
        rows.append(_row("decode output tokens/s per node", d["decode_tokens_per_s_per_node"], DAY6_DECODE,
                         "tokens/s", SRC_DAY6, f"scenario {name}; published is a 24 h average"))
        rows.append(_row("output tokens/s per request", d["tokens_per_s_per_request"], sum(DAY6_SPEED) / 2,
                         "tokens/s", SRC_DAY6, "published range 20-22"))
        rows.append(_row("MTP acceptance used", d["mtp_acceptance"], sum(MTP_PUBLISHED) / 2, "fraction",
                         "DeepSeek-V3 report §5.4.3 (85-90 %)", f"used: {d.get('mtp_acceptance_source', '')}"))
    return rows
