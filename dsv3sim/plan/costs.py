"""``cost_usd_*`` keys for any result JSON (training or serving), at a stated price per GPU-hour.

Training: ``cost_usd_per_step``, ``cost_usd_per_trillion_tokens`` (GPU-hours per trillion tokens x price).
Prefill: ``cost_usd_per_million_input_tokens``; decode: ``cost_usd_per_million_output_tokens`` (one GPU's hourly
price over its tokens per hour). ``price_per_gpu_hour`` is recorded beside them (the report reads it).
"""

from __future__ import annotations

from dsv3sim.cost.pricing import check_price, cost_usd, gpu_hours, serving_cost_keys


def add_cost_keys(d: dict, price_per_gpu_hour: float) -> dict:
    price = check_price(price_per_gpu_hour)
    if not isinstance(d, dict) or d.get("infeasible"):
        return d
    d["price_per_gpu_hour"] = price
    gph = d.get("gpu_hours_per_trillion_tokens")
    if isinstance(gph, (int, float)):
        d["cost_usd_per_trillion_tokens"] = cost_usd(gph, price)
    if isinstance(d.get("step_time_s"), (int, float)) and isinstance(d.get("n_gpus"), int):
        d["cost_usd_per_step"] = cost_usd(gpu_hours(d["n_gpus"], d["step_time_s"]), price)
    for k, kind in (("prefill_tokens_per_s_per_gpu", "input"), ("decode_tokens_per_s_per_gpu", "output")):
        if isinstance(d.get(k), (int, float)):
            d.update({kk: v for kk, v in serving_cost_keys(tokens_per_s_per_gpu=d[k], price_per_gpu_hour=price,
                                                           kind=kind).items() if kk != "price_per_gpu_hour"})
    return d
