"""Capacity-planning questions as Python (the API under `dsv3sim plan`); not `dsv3sim run` scenarios.

    python scenarios/plan_queries.py train|serve|fleet|network

Each function returns the query object the planner takes; the CLI equivalents are in the README
("Capacity planning").
"""

from __future__ import annotations

import json
import sys

from dsv3sim.plan.serve import FleetQuery, ServeQuery
from dsv3sim.plan.train import TrainLayout, TrainQuery


def v3_pretraining() -> TrainQuery:
    """DeepSeek-V3 pre-training on 2048 H800, 14.8T tokens (V3 §4.1), the published layout as the user's own,
    with the two context-extension phases of V3 §4.3 (32K and 128K, 1000 steps each at batch 1920 / 480) and
    the published 5K post-training GPU-hours (Table 1)."""
    return TrainQuery(model="deepseek-v3", topology="h800-deepseek", gpus=2048, tokens=14.8e12,
                      user_layout=TrainLayout(n_gpus=2048, pp=16, ep=64),
                      extension_phases=((1000 * 1920 * 32768, 32768, 1920), (1000 * 480 * 131072, 131072, 480)),
                      post_training_gpu_hours=5e3)


def aiconfigurator_question() -> ServeQuery:
    """AIConfigurator's DeepSeek-V3 example: 32 H200, ISL 4000, OSL 1000, TTFT 2 s, TPOT 50 ms."""
    return ServeQuery(model="deepseek-v3", gpu="H200", gpus=32, isl=4000, osl=1000, ttft_ms=2000, tpot_ms=50)


def day6_serving() -> ServeQuery:
    """DeepSeek's Day-6 service on H800: 56.3 % prefix-cache hits, 20-22 tokens/s per user (TPOT <= 50 ms)."""
    return ServeQuery(model="deepseek-v3", gpu="H800", gpus=320, isl=4000, osl=1000, ttft_ms=2000, tpot_ms=50,
                      prefix_cache_hit=0.563, instance_sizes=(32, 144))  # Day 6's units: 4-node P, 18-node D


def day6_fleet() -> FleetQuery:
    """The load model for Day 6's fleet: two services (V3 and R1, equal shares assumed), the defaults otherwise
    (sinusoid with peak 1.5 x mean: an assumption; resized every 12 h: Day 6's day/night policy)."""
    return FleetQuery(services=2)


if __name__ == "__main__":
    from dsv3sim.plan.network import plan_network
    from dsv3sim.plan.serve import plan_serving
    from dsv3sim.plan.train import plan_training

    what = sys.argv[1] if len(sys.argv) > 1 else "network"
    if what == "train":
        print(json.dumps(plan_training(v3_pretraining()).to_dict()["totals"], indent=1))
    elif what == "serve":
        print(json.dumps(plan_serving(aiconfigurator_question())["best"], indent=1))
    elif what == "fleet":
        print(json.dumps(plan_serving(day6_serving(), daily=(608e9, 168e9), fleet=day6_fleet())["fleet"], indent=1))
    else:
        print(json.dumps(plan_network(radix=64, endpoints=16384), indent=1))
