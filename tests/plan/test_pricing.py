"""Pricing and fleet arithmetic against DeepSeek's published figures.

DeepSeek-V3 report Table 1: pre-training 2664K, context extension 119K, post-training 5K H800 GPU-hours = 2788K,
$5.576M at $2/GPU-hour. open-infra-index Day 6 (24 h): 608B input tokens (56.3 % cache hits), 168B output tokens,
73.7k input tok/s per prefill node, 14.8k output tok/s per decode node, 226.75 nodes on average, $87,072 per day,
theoretical revenue $562,027 per day at R1 prices ($0.14 / $0.55 per M input hit / miss, $2.19 per M output)."""

from __future__ import annotations

import pytest

from dsv3sim.cost.pricing import (
    Phase,
    check_price,
    fleet_size,
    gpu_hours,
    gpu_hours_per_trillion_tokens,
    training_cost_keys,
    training_run_totals,
)


def test_table1_totals():
    t = training_run_totals([Phase(name="pre", gpu_hours=2664e3, n_gpus=2048),
                             Phase(name="ext", gpu_hours=119e3, n_gpus=2048),
                             Phase(name="post", gpu_hours=5e3, n_gpus=2048)], 2.0)
    assert t["gpu_hours_total"] == pytest.approx(2788e3)
    assert t["cost_usd_total"] == pytest.approx(5.576e6)


def test_day6_fleet_from_published_node_rates():
    f = fleet_size(daily_input_tokens=608e9, daily_output_tokens=168e9, input_tokens_per_s_per_node=73.7e3,
                   output_tokens_per_s_per_node=14.8e3, gpus_per_node=8, price_per_gpu_hour=2.0,
                   prefix_cache_hit=0.563, revenue_usd_per_million=(0.14, 0.55, 2.19))
    assert f["nodes"] == pytest.approx(226.75, rel=0.01)
    assert f["cost_usd_per_day"] == pytest.approx(87_072, rel=0.01)
    assert f["revenue_usd_per_day"] == pytest.approx(562_027, rel=0.002)


def test_gpu_hours_per_trillion_tokens_v3():
    """V3 report §1: 180K H800 GPU-hours per trillion tokens = 3.7 days on 2048 GPUs; route 2: GPU-hours of the time
    1e12 tokens take; the step results, the cost keys and the report use this one function."""
    tps = 1e12 / (3.7 * 86400)
    gph = gpu_hours_per_trillion_tokens(2048, tps)
    assert gph == pytest.approx(gpu_hours(2048, 1e12 / tps), rel=1e-12) == pytest.approx(180e3, rel=0.02)
    keys = training_cost_keys(n_gpus=2048, tokens_per_s=tps, price_per_gpu_hour=2.0, tokens=14.8e12)
    assert keys["cost_usd_per_trillion_tokens"] == gph * 2.0 and keys["cost_usd_run"] == pytest.approx(gph * 14.8 * 2)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_bad_price(bad):
    with pytest.raises(ValueError, match="price-per-gpu-hour"):
        check_price(bad)


def test_fleet_rejects_bad_rates():
    with pytest.raises(ValueError, match="output_tokens_per_s_per_node"):
        fleet_size(daily_input_tokens=1, daily_output_tokens=1, input_tokens_per_s_per_node=1,
                   output_tokens_per_s_per_node=0, gpus_per_node=8, price_per_gpu_hour=2)


def test_cost_keys_of_a_result_are_priced_by_cost_pricing():
    """`run`/`sweep`'s cost keys: a step's GPU-hours and a trillion tokens' GPU-hours at the price, to the bit."""
    from dsv3sim.cost.pricing import cost_usd
    from dsv3sim.plan.costs import add_cost_keys

    d = add_cost_keys({"n_gpus": 2048, "step_time_s": 10.3, "gpu_hours_per_trillion_tokens": 180e3}, 2.0)
    assert d["cost_usd_per_step"] == cost_usd(gpu_hours(2048, 10.3), 2.0) == pytest.approx(2048 * 10.3 / 3600 * 2)
    assert d["cost_usd_per_trillion_tokens"] == 360e3 and d["price_per_gpu_hour"] == 2.0
    assert add_cost_keys({"infeasible": "memory"}, 2.0) == {"infeasible": "memory"}
