"""One definition of what limits a training step: the shares sum to the step, and the planner and the report
name the same limit for a real result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsv3sim.plan.limits import training_limits
from dsv3sim.results import from_json
from dsv3sim.workload.limits import busiest_network, limiter, training_shares

REAL = Path(__file__).resolve().parents[1] / "report" / "data" / "v3_pretrain_result.json"


def test_shares_sum_to_the_step_and_planner_agrees_with_report():
    d = json.loads(REAL.read_text())
    sh = training_shares(d["breakdown_s"], d["exposed_communication_s"])
    assert sum(sh.values()) == pytest.approx(d["step_time_s"], rel=1e-9)
    lim = training_limits(from_json(d), headroom=0.5)
    assert sum(lim["shares"].values()) == pytest.approx(1.0, rel=1e-9)
    words = {"compute": "GPU compute", "bubble": "the pipeline bubble"}
    assert limiter(d).startswith(words.get(lim["limits"], "EP all-to-all"))


def test_ep_exposure_never_exceeds_the_chunks_and_network_is_the_busiest_link():
    sh = training_shares({"forward_s": 1.0, "dp_comm_exposed_s": 0.5, "bubble_s": 2.0}, exposed_communication_s=9.0)
    assert sh == {"compute": 0.0, "ep_all_to_all": 1.0, "bubble": 2.0, "dp_communication": 0.5, "optimizer": 0.0}
    comm = {"dispatch(F)": {"time_s": 1e-3, "busiest_link_class": "nvlink_tx"},
            "combine(F)": {"time_s": 2e-3, "busiest_link_class": "nic_rx"}}
    assert busiest_network(comm) == "IB" and busiest_network({}) == ""
