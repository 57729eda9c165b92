"""Speed of the step models (``dsv3sim.workload``): the default DeepSeek-V3 pre-training scenario with the
event-simulated and the busiest-link-bound network, the serving scenarios, and (slow) a sweep."""

from __future__ import annotations

import itertools

import pytest

from dsv3sim.results import TrainingResult
from dsv3sim.workload import simulate
from dsv3sim.workload.loader import load


def test_pretrain_event_simulated_network(cold, pretrain):
    r = cold(lambda: simulate(pretrain), rounds=2)
    assert isinstance(r, TrainingResult) and r.step_time_s > 0


def test_pretrain_busiest_link_bound(cold, pretrain):
    r = cold(lambda: simulate(pretrain.with_(comm_model="bound", record=False)), rounds=3)
    assert isinstance(r, TrainingResult) and r.step_time_s > 0


def test_serving_scenarios(cold):
    """Every scenario of the committed serving study (prefill, decode, aggregated)."""
    scns = load("scenarios/deepseek_v3_serving.py:all_serving")
    rs = cold(lambda: [simulate(s) for s in scns.values()], rounds=2)
    assert len(rs) == len(scns) and all(r.kind in ("prefill", "decode", "aggregated") for r in rs)


@pytest.mark.slow
def test_sweep_40_configurations(cold, pretrain):
    """What ``dsv3sim sweep`` runs per configuration (bound network, no timelines), in two processes."""
    from dsv3sim.workload.sweep import run_sweep

    axes = {"perturb.nic_bandwidth_scale": [0.5, 1.0, 2.0, 4.0], "gpu": ["H800", "H200"],
            "workload.node_limit": [1, 2, 4, 8, 4]}
    points = [dict(zip(axes, v)) for v in itertools.product(*axes.values())]
    rows = cold(lambda: run_sweep(pretrain.with_(comm_model="bound", record=False), points, workers=2), rounds=1)
    assert len(rows) == len(points)
