"""Predictions for DeepSeek's own deployments against DeepSeek's published figures, errors printed.

Sources and what each figure includes: dsv3sim/workload/validation.py. Default tests use the busiest-link
all-to-all bound (fast); the ``slow`` tests run the event simulation of the network. Tolerances are wide on
purpose (published figures are whole-run / 24-hour averages; we simulate steady-state capacity), but each one
can fail: a 2x error in either direction fails every test here.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dsv3sim.results import to_json
from dsv3sim.workload import simulate
from dsv3sim.workload.validation import comparisons

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def _mod(name):
    sp = importlib.util.spec_from_file_location(f"val_{name}", SCEN / f"{name}.py")
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    return m


def _report(rows):
    for r in rows:
        print(f"{r['name']}: predicted {r['predicted']:,.3g} vs published {r['published']:,.3g} {r['unit']} "
              f"-> error {r['rel_error']:+.1%} ({r['source']})")


def _pretrain(comm_model):
    d = to_json(simulate(_mod("deepseek_v3_pretrain").pretrain().with_(comm_model=comm_model, record=False)))
    rows = comparisons(d)
    _report(rows)
    return d, rows


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_pretrain_gpu_hours_per_trillion_tokens_bound():
    d, rows = _pretrain("bound")
    r, pair = rows[:2]
    # a steady-state step cannot cost more than the whole published run; and not less than half of it
    assert -0.5 < r["rel_error"] <= 0.05
    assert 0.25 < d["mfu"] < 0.7
    # DeepSeek's own profile of one overlapped F&B pair (4 MoE layers): within 15 %
    assert abs(pair["rel_error"]) < 0.15


def test_pretrain_step_part_by_part():
    """ISCA'25 Table 4 on the event-simulated network (the benchmark's primary column, ~2 s): the step within 5 %,
    1F / 1B / 1W / 1F1B / opt / bubble within 15 %, MFU (both counts) within 10 % (at commit: step -2.6 %, 1F -4.9 %,
    1B +8.6 %, 1W +1.4 %, 1F1B -1.9 %, bubble -14.5 %, opt -13.5 %, MFU +2.9 %)."""
    d, rows = _pretrain("sim")
    by = _by_name(rows)
    assert abs(by["step time"]["rel_error"]) < 0.05
    for k in ("1F", "1B", "1W", "1F1B", "opt", "bubble"):
        assert abs(by[k]["rel_error"]) < 0.15, by[k]
    for k in ("MFU (causal)", "MFU (non-causal)"):
        assert abs(by[k]["rel_error"]) < 0.10, by[k]
    assert d["mfu_noncausal"] > d["mfu_causal"] == d["mfu"]
    assert sum(d["step_breakdown_s"].values()) == pytest.approx(d["step_time_s"], rel=1e-9)


def test_pretrain_step_bound_below_simulated_network():
    """The busiest-link bound prices every all-to-all no slower than the event simulation, so its step is
    shorter, and within 10 % of the published one (sweeps use it)."""
    d_b, rows = _pretrain("bound")
    d_s, _ = _pretrain("sim")
    assert d_b["step_time_s"] <= d_s["step_time_s"]
    assert abs(_by_name(rows)["step time"]["rel_error"]) < 0.10


def test_pretrain_per_layer_slices_against_profile_data_bound():
    """Every slice of DeepSeek's profiled F&B pair (attn/mlp F, B, W; dispatch/combine F, B) within 25 %."""
    _d, rows = _pretrain("bound")
    per = [r for r in rows if r["name"].startswith("per layer: ")]
    assert len(per) == 10
    for r in per:
        assert abs(r["rel_error"]) < 0.25, r


@pytest.mark.slow
def test_pretrain_gpu_hours_per_trillion_tokens_simulated_network():
    _d, rows = _pretrain("sim")
    assert -0.5 < rows[0]["rel_error"] <= 0.05
    by = _by_name(rows)
    assert abs(by["step time"]["rel_error"]) < 0.05
    assert abs(by["F&B chunk pair, 4 MoE layers"]["rel_error"]) < 0.15


def test_prefill_day6_per_node():
    d = to_json(simulate(_mod("deepseek_v3_serving").prefill_day6().with_(comm_model="bound")))
    rows = comparisons(d)
    _report(rows)
    published, computed_only = rows
    assert 0.5 < published["predicted"] / published["published"] < 2.0
    assert computed_only["rel_error"] > -0.2  # capacity >= a 24 h average of computed tokens


def test_decode_day6_per_node_and_speed():
    s = _mod("deepseek_v3_serving").decode_day6().with_(workload={"mtp_acceptance": 0.85})
    d = to_json(simulate(s))
    rows = comparisons(d)
    _report(rows)
    node, speed, _mtp = rows
    assert -0.2 < node["rel_error"] < 1.0  # capacity at 128 requests/GPU vs a 24 h average
    assert abs(speed["rel_error"]) < 0.25


def test_prefill_profile_data_setup_per_gpu():
    """DeepSeek's prefill profile (profile-data: EP32, 4K prompts, 16K tokens per GPU, two micro-batches, DeepEP on
    24 SMs) runs 7,839 tokens/s per GPU (InferSim README, "actual", from that trace). Priced with training's DeepEP
    overheads, the co-run slowdown scaled to 24 SMs: 6,842 (-12.7 %, dsv3sim/workload/NOTES.md); held to 15 %."""
    m = _mod("deepseek_v3_serving").infersim_prefill()
    got = simulate(m).metrics["prefill_tokens_per_s_per_gpu"]
    assert got == pytest.approx(7839.0, rel=0.15)
