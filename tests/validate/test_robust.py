"""Statistics of a shared machine: quantiles, robust spread, the CPU share of a calibration window, load."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from dsv3sim.validate.component_table import window_share
from dsv3sim.validate.load import between, snapshot, summary
from dsv3sim.validate.robust import expected, low, quantile, rel_spread


def test_quantiles_and_spread():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert quantile(xs, 0.5) == 3.0 and low(xs) == 2.0 and quantile(xs, 0.1) == pytest.approx(1.4)
    assert rel_spread([2.0] * 5) == 0.0
    # one long preemption among quiet samples barely moves the robust spread
    assert rel_spread([1.0, 1.0, 1.01, 0.99, 1.0, 6.0]) < 0.05


def test_window_share_prefers_the_quick_probes():
    full = {"quick": False, "components": {"window": {"cpu_s": 1.0, "wall_s": 1.0}}}
    q = [{"quick": True, "components": {"window": {"cpu_s": 0.5, "wall_s": 1.0}}} for _ in range(2)]
    assert window_share([full] + q) == pytest.approx(0.5)
    assert window_share([full]) == pytest.approx(1.0)


def test_load_snapshot_between_and_summary():
    a = snapshot()
    x = sum(i * i for i in range(200000))  # some CPU work
    b = snapshot()
    d = between(a, b)
    assert x > 0 and 0.0 < d["rank_cpu_share"] <= 1.5
    s = summary([[d, d], [d]])
    assert s["loadavg1_min"] <= s["loadavg1_max"] and len(s["rank_cpu_share_median"]) == 2


def test_median_ci_order_statistics_match_the_sign_test():
    """Known sign-test intervals: n=9 -> [x2, x8], n=16 -> [x4, x13], n=20 -> [x6, x15]; n <= 8 the range."""
    from dsv3sim.validate.robust import median_ci

    for n, (lo, hi) in {1: (1, 1), 8: (1, 8), 9: (2, 8), 16: (4, 13), 20: (6, 15), 30: (10, 21)}.items():
        assert median_ci(list(range(n, 0, -1))) == (lo, hi)
    assert median_ci([]) == (0.0, 0.0)


def test_median_ci_covers_the_true_median_of_a_skewed_law():
    """Exponential steps (preemption-like skew): the 95 % interval holds the true median >= 95 % of the time."""
    import math
    import random

    from dsv3sim.validate.robust import median_ci

    rng = random.Random(7)
    hits = 0
    for _ in range(2000):
        lo, hi = median_ci([rng.expovariate(1.0) for _ in range(16)])
        hits += lo <= math.log(2) <= hi
    assert hits / 2000 >= 0.95


def test_measured_components_add_up_to_the_typical_steps():
    """The components (mean over each rank's middle half of steps, ``other`` included) sum to the mean of those
    steps; the doubled step stays out; per-component medians would sum under every step here."""
    from dsv3sim.validate.compare import _measured_components, central_steps

    # each step pays one spike (a or b), different steps different parts; step 2 also a load spike (+12)
    spans = {"a": [7.0, 4.0, 7.0, 4.0, 7.0, 4.0, 4.0, 4.0], "b": [5.0, 8.0, 5.0, 8.0, 5.0, 8.0, 5.0, 5.0]}
    steps = [a + b + 1.0 for a, b in zip(spans["a"], spans["b"])]
    steps[2] += 12.0
    rank = {"step_s": steps, "component_s_by_step": spans}
    idx = central_steps(steps)
    assert 2 not in idx and len(idx) == 4
    comps = _measured_components([rank])
    assert sum(comps.values()) == pytest.approx(sum(steps[i] for i in idx) / len(idx))
    med = _measured_components([rank], "median")
    assert sum(med.values()) < sum(comps.values()) - 2.0  # the parts' medians miss what most steps pay somewhere


def test_cpu_columns_only_on_compute_rows_that_both_sides_have():
    from dsv3sim.validate.compare import _add_cpu, _measured_cpu

    rank = {"step_s": [1.0, 1.0, 1.0, 1.0], "component_cpu_s_by_step": {"attn(F)": [0.2, 0.2, 0.4, 0.4],
                                                                          "dispatch(F)": [0.1] * 4}}
    measured = _measured_cpu([rank])
    assert measured["attn(F)"] == pytest.approx(0.3)
    rows = [{"name": "attn(F)"}, {"name": "dispatch(F)"}, {"name": "mlp(F)"}]
    _add_cpu(rows, measured, {"attn(F)": 0.25, "dispatch(F)": 0.1, "mlp(F)": 0.5})
    assert rows[0] == {"name": "attn(F)", "measured_cpu_s": pytest.approx(0.3), "predicted_cpu_s": 0.25}
    assert rows[1] == {"name": "dispatch(F)"} and rows[2] == {"name": "mlp(F)"}  # an exchange; not measured


def test_expected_is_the_mean_of_a_skewed_law_without_far_outliers():
    """A sum of calls pays the mean per call: on a right-skewed law (lognormal, sigma 0.3) the mean sits ~4.6 %
    above the median, and ``expected`` finds it; one sample an unrelated stall stretched 50-fold is fenced out."""
    rng = np.random.default_rng(0)
    xs = list(rng.lognormal(0.0, 0.3, 4000))
    assert expected(xs) == pytest.approx(math.exp(0.045), rel=0.01)
    assert expected(xs) > 1.03 * statistics.median(xs)
    assert expected(xs[:40] + [50.0]) == pytest.approx(statistics.fmean(xs[:40]), rel=1e-12)
    assert expected([]) == 0.0 and expected([2.0, 4.0]) == 3.0


def test_component_cpu_is_pooled_over_the_host_and_divided_by_each_ranks_share():
    """CPU seconds per call: the expected value over every rank's samples on the host; each rank divides by its
    own share. Wall samples (no CPU samples, a GPU table) stay the rank's own."""
    from dsv3sim.validate.component_table import _component_times

    def prof(cpu):
        return {"attn": {"F_s": [2 * c for c in cpu], "B_s": [0.0], "F_cpu_s": cpu, "B_cpu_s": [0.0]}}

    r0, r1 = [prof([1.0, 1.0, 1.0, 1.0])], [prof([3.0, 3.0, 3.0, 3.0])]
    a = _component_times(r0, True, 0.5, [], [], host=r0 + r1)
    b = _component_times(r1, True, 0.8, [], [], host=r0 + r1)
    assert a["attn"][0] == pytest.approx(2.0 / 0.5) and b["attn"][0] == pytest.approx(2.0 / 0.8)
    assert _component_times(r0, True, 0.5, [], [])["attn"][0] == pytest.approx(1.0 / 0.5)
    assert _component_times(r1, False, 1.0, [], [], host=r0 + r1)["attn"][0] == pytest.approx(6.0)
