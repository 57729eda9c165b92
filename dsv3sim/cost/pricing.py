"""Prices: GPU-hours to dollars, training-run totals, $ per million tokens, fleet sizing for a daily load.

Pure arithmetic on rates the step model produced; the price per GPU-hour is an input (default $2, the H800
rental price DeepSeek-V3's report assumes in §1 / Table 1). JSON keys built here start with ``cost_usd_``.

Published anchors (used in tests/validation and the README, never inside these functions):
* DeepSeek-V3 report Table 1: pre-training 2664K, context extension 119K, post-training 5K H800 GPU-hours,
  2788K in total = $5.576M at $2/GPU-hour.
* DeepSeek open-infra-index Day 6 (2025-03-01, 24 h): 608B input tokens (56.3 % prefix-cache hits), 168B output
  tokens; an H800 node delivers ~73.7k input tokens/s in prefill (cache hits included) or ~14.8k output
  tokens/s in decode; 226.75 nodes on average, $87,072 per day at $2/GPU-hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsv3sim.config.errors import ConfigError

DEFAULT_PRICE_PER_GPU_HOUR = 2.0  # DeepSeek-V3 report §1: "assuming the rental price of the H800 GPU is $2 per GPU hour"
SECONDS_PER_DAY = 86_400.0


def check_price(price: float) -> float:
    if not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
        raise ConfigError(f"--price-per-gpu-hour must be a positive number of dollars, got {price!r}")
    return float(price)


def gpu_hours(n_gpus: int, seconds: float) -> float:
    return n_gpus * seconds / 3600.0


def gpu_hours_per_trillion_tokens(n_gpus: float, tokens_per_s: float) -> float:
    """GPU-hours for 1e12 tokens on ``n_gpus`` at ``tokens_per_s`` (V3 report §1, Table 1: 180K H800 GPU-hours)."""
    return n_gpus * 1e12 / tokens_per_s / 3600.0


def cost_usd(gpu_h: float, price_per_gpu_hour: float) -> float:
    return gpu_h * price_per_gpu_hour


def training_cost_keys(*, n_gpus: int, tokens_per_s: float, price_per_gpu_hour: float,
                       tokens: float | None = None) -> dict:
    """``cost_usd_*`` keys of a training step result: per trillion tokens and, with ``tokens``, for the run."""
    gph_t = gpu_hours_per_trillion_tokens(n_gpus, tokens_per_s)
    out = {"price_per_gpu_hour": price_per_gpu_hour, "cost_usd_per_trillion_tokens": gph_t * price_per_gpu_hour,
           "cost_usd_per_gpu_hour_total": n_gpus * price_per_gpu_hour}
    if tokens:
        out["cost_usd_run"] = gph_t * tokens / 1e12 * price_per_gpu_hour
    return out


def serving_cost_keys(*, tokens_per_s_per_gpu: float, price_per_gpu_hour: float, kind: str) -> dict:
    """$ per million tokens of one GPU producing ``tokens_per_s_per_gpu`` (``kind`` input or output)."""
    if tokens_per_s_per_gpu <= 0:
        return {}
    return {"price_per_gpu_hour": price_per_gpu_hour,
            f"cost_usd_per_million_{kind}_tokens": price_per_gpu_hour / 3600.0 / tokens_per_s_per_gpu * 1e6}


@dataclass(frozen=True, kw_only=True, slots=True)
class Phase:
    """One phase of a training run: ``tokens`` at ``tokens_per_s`` on ``n_gpus`` (or given GPU-hours)."""

    name: str
    tokens: float = 0.0
    tokens_per_s: float = 0.0
    n_gpus: int = 0
    gpu_hours: float | None = None  # given directly (e.g. post-training, whose step the simulator does not model)

    def hours(self) -> float:
        if self.gpu_hours is not None:
            return self.gpu_hours
        if self.tokens_per_s <= 0 or self.n_gpus <= 0:
            raise ConfigError(f"phase {self.name}: tokens_per_s={self.tokens_per_s} and n_gpus={self.n_gpus} must be > 0")
        return self.n_gpus * self.tokens / self.tokens_per_s / 3600.0


def training_run_totals(phases: list[Phase], price_per_gpu_hour: float) -> dict:
    """GPU-hours, days and dollars per phase and in total (DeepSeek-V3 Table 1's rows)."""
    rows = []
    for ph in phases:
        h = ph.hours()
        days = h / ph.n_gpus / 24.0 if ph.n_gpus else None
        rows.append({"phase": ph.name, "tokens": ph.tokens, "gpu_hours": h, "days": days,
                     "cost_usd": h * price_per_gpu_hour})
    tot = sum(r["gpu_hours"] for r in rows)
    return {"phases": rows, "gpu_hours_total": tot, "cost_usd_total": tot * price_per_gpu_hour,
            "days_total": sum(r["days"] or 0.0 for r in rows), "price_per_gpu_hour": price_per_gpu_hour}


def fleet_size(*, daily_input_tokens: float, daily_output_tokens: float, input_tokens_per_s_per_node: float,
               output_tokens_per_s_per_node: float, gpus_per_node: int, price_per_gpu_hour: float,
               prefix_cache_hit: float = 0.0, revenue_usd_per_million: tuple[float, float, float] | None = None) -> dict:
    """Nodes needed on average to serve a daily load, disaggregated (prefill nodes + decode nodes).

    nodes = input / (86400 x input tok/s per prefill node) + output / (86400 x output tok/s per decode node),
    the arithmetic behind Day 6's 226.75 nodes (608e9 / (86400 x 73.7k) + 168e9 / (86400 x 14.8k) = 226.9).
    ``input_tokens_per_s_per_node`` counts every input token, cache hits included. Cost per day = nodes x
    GPUs per node x 24 h x price. ``revenue_usd_per_million`` = (cache-hit input, cache-miss input, output)
    prices gives the theoretical revenue of the load (Day 6: $0.14, $0.55, $2.19 for R1).
    """
    for n, v in (("daily_input_tokens", daily_input_tokens), ("daily_output_tokens", daily_output_tokens)):
        if v < 0:
            raise ConfigError(f"{n} must be >= 0, got {v}")
    for n, v in (("input_tokens_per_s_per_node", input_tokens_per_s_per_node),
                 ("output_tokens_per_s_per_node", output_tokens_per_s_per_node)):
        if not v > 0:
            raise ConfigError(f"{n} must be > 0, got {v}")
    if not 0 <= prefix_cache_hit < 1:
        raise ConfigError(f"prefix_cache_hit must be in [0, 1), got {prefix_cache_hit}")
    n_pre = daily_input_tokens / (SECONDS_PER_DAY * input_tokens_per_s_per_node)
    n_dec = daily_output_tokens / (SECONDS_PER_DAY * output_tokens_per_s_per_node)
    nodes = n_pre + n_dec
    per_day = nodes * gpus_per_node * 24.0 * price_per_gpu_hour
    out = {"nodes": nodes, "prefill_nodes": n_pre, "decode_nodes": n_dec, "gpus": nodes * gpus_per_node,
           "nodes_to_buy": math.ceil(n_pre) + math.ceil(n_dec),
           "cost_usd_per_day": per_day, "price_per_gpu_hour": price_per_gpu_hour,
           "input_tokens_per_s_per_node": input_tokens_per_s_per_node,
           "output_tokens_per_s_per_node": output_tokens_per_s_per_node,
           "daily_input_tokens": daily_input_tokens, "daily_output_tokens": daily_output_tokens,
           "prefix_cache_hit": prefix_cache_hit}
    if daily_output_tokens:
        out["cost_usd_per_million_output_tokens"] = (n_dec * gpus_per_node * 24.0 * price_per_gpu_hour
                                                     / daily_output_tokens * 1e6)
    if daily_input_tokens:
        out["cost_usd_per_million_input_tokens"] = (n_pre * gpus_per_node * 24.0 * price_per_gpu_hour
                                                    / daily_input_tokens * 1e6)
    if revenue_usd_per_million:
        hit_p, miss_p, out_p = revenue_usd_per_million
        rev = (daily_input_tokens * (prefix_cache_hit * hit_p + (1 - prefix_cache_hit) * miss_p)
               + daily_output_tokens * out_p) / 1e6
        out["revenue_usd_per_day"] = rev
        out["margin"] = (rev - per_day) / rev if rev else None
    return out
