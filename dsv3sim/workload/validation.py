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
  (deepseek-ai/profile-data train.json, PyTorch profiler): its GPU kernels span 129.0 ms (compute stream busy
  118.2 ms, DeepEP stream 114.5 ms), and each slice's kernels span ``data/profile_data_train.json`` (extracted by
  benchmarks/extract_profile_data.py: first kernel start to last kernel end of the kernels launched inside the
  slice's annotation, mean of the 4 layers). The profile's micro-batch size is not published; we compare with
  our pair at one 4K sequence.
- The step of the production run, part by part ("Insights into DeepSeek-V3", ISCA'25, arXiv 2505.09343, Table 4,
  multi-plane fat-tree column): 19.926 s per step; 1F 1.13 s, bubble 2.06 s, 1B 1.99 s, 1W 0.48 s, 1F1B
  13.95 s, opt 0.29 s; MFU 38.94 % causal, 43.73 % non-causal (checked against the paper's Table 4: "1F, 1B,
  and 1W denote forward time, input backward time, and weight backward time"; the six parts add up to 19.90 s,
  0.03 s short of the step; MRFT column 19.946 s). Which PP rank the parts were measured on is not published; we
  compare PP rank 0's. Derived for comparison only (benchmarks/bench_published_v3.py): DualPipe's bubble formula
  (PP/2-1)(F&B + B - 3W) on the parts per chunk of rank 0 (97 F&B, 23 B, 15 W; B full = 1B/23 + W) = 1.16 s.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

V3_GPU_HOURS_PER_T = 180_000.0
DAY6_PREFILL = 73_700.0
DAY6_CACHE_HIT = 0.563
DAY6_DECODE = 14_800.0
DAY6_SPEED = (20.0, 22.0)
MTP_PUBLISHED = (0.85, 0.90)
PROFILE_DATA_PAIR_S = 0.129  # deepseek-ai/profile-data train.json: kernel span of the F&B pair (4 MoE layers)
PAIR_KEY = "F[moe+moe+moe+moe]&BW[moe+moe+moe+moe]"
SRC_ISCA = "Insights into DeepSeek-V3 (ISCA'25, arXiv 2505.09343) Table 4 (MPFT)"
ISCA_STEP_S = 19.926
ISCA_PARTS_S = {"1F": 1.13, "1B": 1.99, "1W": 0.48, "1F1B": 13.95, "bubble": 2.06, "opt": 0.29}
ISCA_MFU = {"causal": 0.3894, "non-causal": 0.4373}
SRC_PROFILE = "deepseek-ai/profile-data train.json (kernel span per slice, mean of 4 layers)"


@cache
def profile_data_train() -> dict:
    """Per-slice numbers extracted from profile-data train.json (data/profile_data_train.json)."""
    return json.loads((Path(__file__).with_name("data") / "profile_data_train.json").read_text())
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
    if d.get("infeasible") or d.get("scenario", "") not in PUBLISHED_SCENARIOS or d.get("gpu") != "H800":
        return []
    rows: list[dict] = []
    if d.get("type") == "training" and d.get("model") == "deepseek-v3":
        rows += _training_rows(d)
    if d.get("kind") == "prefill" and "deepseek-v3" in d.get("model", ""):
        rows += _prefill_rows(d)
    if d.get("kind") == "decode" and "deepseek-v3" in d.get("model", ""):
        rows += _decode_rows(d)
    return rows


def _training_rows(d: dict) -> list[dict]:
    """GPU-hours per trillion tokens (V3 report), the F&B chunk pair and per-layer spans (profile-data), the
    step time, its parts and MFU (ISCA paper)."""
    rows = [_row("GPU hours per trillion tokens", d["gpu_hours_per_trillion_tokens"], V3_GPU_HOURS_PER_T,
                 "GPU h / 1e12 tokens", SRC_V3, "published = whole pre-training run; simulated = steady-state step")]
    ps = d.get("pair_slices_s") or {}
    pair = ps.get("pair_s", (d.get("chunk_times_s") or {}).get(PAIR_KEY))
    if pair is not None:
        rows.append(_row("F&B chunk pair, 4 MoE layers", pair, PROFILE_DATA_PAIR_S, "s",
                         "deepseek-ai/profile-data train.json (kernel span)",
                         "profile micro-batch size unpublished; simulated at one 4K sequence"))
    rows.append(_row("step time", d["step_time_s"], ISCA_STEP_S, "s", SRC_ISCA))
    rows += [_row(k, v, ISCA_PARTS_S[k], "s", SRC_ISCA, "PP rank 0")
             for k, v in (d.get("step_breakdown_s") or {}).items() if k in ISCA_PARTS_S]
    rows += [_row(f"MFU ({k})", d[key], ISCA_MFU[k], "fraction", SRC_ISCA)
             for k, key in (("causal", "mfu_causal"), ("non-causal", "mfu_noncausal")) if d.get(key)]
    per = profile_data_train()["per_layer"]
    rows += [_row(f"per layer: {k}", v, per[k]["span_ms_mean"] / 1e3, "s", SRC_PROFILE,
                  f"simulated pair {ps.get('action', '')} on PP rank {ps.get('rank', '')}")
             for k, v in (ps.get("per_layer_s") or {}).items() if k in per]
    return rows


def _prefill_rows(d: dict) -> list[dict]:
    """Day-6 prefill throughput per node, as published (cache hits included) and as computed tokens."""
    v, name = d["prefill_tokens_per_s_per_node"], d["scenario"]
    return [_row("prefill input tokens/s per node (as published, incl. cache hits)", v, DAY6_PREFILL,
                 "tokens/s", SRC_DAY6, f"scenario {name}; simulated tokens are all computed"),
            _row("prefill computed tokens/s per node (published x (1 - 56.3 % cache hits))", v,
                 DAY6_PREFILL * (1 - DAY6_CACHE_HIT), "tokens/s", SRC_DAY6,
                 "published is a 24 h average; simulated is capacity at 16K tokens per GPU")]


def _decode_rows(d: dict) -> list[dict]:
    """Day-6 decode throughput per node and per request, and the MTP acceptance used (V3 report §5.4.3)."""
    return [_row("decode output tokens/s per node", d["decode_tokens_per_s_per_node"], DAY6_DECODE,
                 "tokens/s", SRC_DAY6, f"scenario {d['scenario']}; published is a 24 h average"),
            _row("output tokens/s per request", d["tokens_per_s_per_request"], sum(DAY6_SPEED) / 2,
                 "tokens/s", SRC_DAY6, "published range 20-22"),
            _row("MTP acceptance used", d["mtp_acceptance"], sum(MTP_PUBLISHED) / 2, "fraction",
                 "DeepSeek-V3 report §5.4.3 (85-90 %)", f"used: {d.get('mtp_acceptance_source', '')}")]
