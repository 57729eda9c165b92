"""A validation matrix (benchmarks/validate_error.py) in the report: the distribution the benchmark summarised,
recomputed from its cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dsv3sim.report import section
from dsv3sim.report.page import RenderContext

MATRICES = sorted((Path(__file__).parents[2] / "profiles").glob("cpu-*/validation_matrix*.json"))


def _card(body: str, key: str) -> str:
    m = re.search(r'<div class="v">([^<]*)</div><div class="k">' + re.escape(key) + "</div>", body)
    assert m, f"no card {key!r}"
    return m.group(1)


@pytest.mark.parametrize("path", MATRICES, ids=[f"{p.parent.name}/{p.stem}" for p in MATRICES])
def test_matrix_cards_match_the_benchmark_summary(path):
    data = json.loads(path.read_text())
    ctx = RenderContext()
    sec = section("validation", data, ctx)
    if not any(isinstance(c, dict) and c.get("measured_step_s") for c in data.get("cases", [])):
        pytest.skip("no measured case")
    s = data["summary"]
    assert float(_card(sec.body, "median |error|").split()[0]) == pytest.approx(100 * s["median_abs_error"], abs=0.05)
    assert float(_card(sec.body, "max |error|").split()[0]) == pytest.approx(100 * s["max_abs_error"], abs=0.05)
    if "components_within_20pct" in s:
        got = float(_card(sec.body, "components within 20 %").split()[0])
        assert got == pytest.approx(100 * s["components_within_20pct"], abs=0.5)
    assert sec.n_figures == 2  # step errors per case and the components' spread
    for c in data["cases"]:
        assert str(c["layout"]) in sec.body


def test_matrix_without_components_draws_the_step_errors_only():
    data = {"cases": [{"layout": "ep2", "measured_step_s": 0.1, "predicted_step_s": 0.11},
                      {"layout": "dp2", "measured_step_s": 0.2, "predicted_step_s": 0.19}]}
    sec = section("validation", data, RenderContext())
    assert sec.n_figures == 1
    assert _card(sec.body, "median |error|") == "7.5 %"
    assert _card(sec.body, "within 10 %") == "2 of 2"


def test_matrix_whiskers_are_each_cases_interval_of_the_measured_median():
    """ep2: error +10 %, interval -5..+20 % -> whisker 10 below, 10 above; only when every case has one."""
    from dsv3sim.report.validation import _ci_whiskers

    cases = [{"error_ci95": [-0.05, 0.20]}, {"error_ci95": [-0.10, -0.02]}]
    w = _ci_whiskers(cases, [10.0, -5.0])["error_y"]
    assert w["array"] == pytest.approx([10.0, 3.0]) and w["arrayminus"] == pytest.approx([15.0, 5.0])
    assert _ci_whiskers([{"error_ci95": [-0.1, 0.1]}, {}], [0.0, 0.0]) == {}
    assert _ci_whiskers([{"error_ci95": ["x", None]}], [0.0]) == {}  # not numbers: no whiskers, no crash
