"""A study's comparison rows: each scenario against the first of its kind."""

from __future__ import annotations

import pytest

from dsv3sim.workload.study import study_rows


def test_each_kind_against_its_first_scenario():
    rows = study_rows([
        ("base", {"kind": "training", "tokens_per_s": 100.0, "step_time_s": 2.0, "mfu": 0.4}),
        ("decode", {"kind": "decode", "decode_tokens_per_s_per_node": 50.0, "tpot_s": 0.05}),
        ("faster", {"kind": "training", "tokens_per_s": 125.0, "step_time_s": 1.6}),
        ("oom", {"kind": "training", "infeasible": "does not fit in HBM", "tokens_per_s": 999.0}),
        ("untyped", {"breakdown_s": {"forward_s": 1.0}, "tokens_per_s": 50.0}),
    ])
    by = {r.scenario: r for r in rows}
    assert [r.scenario for r in rows] == ["base", "decode", "faster", "oom", "untyped"]
    assert by["faster"].baseline == "base" and by["faster"].vs_baseline == pytest.approx(0.25)
    assert by["base"].vs_baseline == 0.0 and by["base"].latency == ("step", 2.0)
    assert by["decode"].baseline == "decode" and by["decode"].unit == "decode tokens/s/node"
    assert by["decode"].latency == ("TPOT", 0.05)
    oom = by["oom"]  # infeasible: no throughput, latency or change, the reason kept
    assert (oom.throughput, oom.latency, oom.vs_baseline, oom.infeasible) == (None, None, None, "does not fit in HBM")
    assert by["untyped"].kind == "training" and by["untyped"].vs_baseline == pytest.approx(-0.5)


def test_aggregated_serving_by_output_tokens_per_node():
    (r,) = study_rows([("agg", {"kind": "aggregated", "output_tokens_per_s_per_node": 9000.0, "ttft_s": 0.9})])
    assert (r.throughput, r.unit, r.baseline, r.latency) == (9000.0, "output tokens/s/node", "agg", ("TTFT", 0.9))


def test_no_baseline_without_throughput():
    (r,) = study_rows([("x", {"kind": "prefill"})])
    assert r.baseline is None and r.vs_baseline is None and r.kind == "prefill"
