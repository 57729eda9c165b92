"""Lockstep lateness from preemption slices (compound Poisson)."""

from __future__ import annotations

import math
import random

import pytest

from dsv3sim.workload.preemption import expected_max_poisson, fit, lateness


def test_expected_max_poisson_matches_monte_carlo():
    rng = random.Random(0)

    def pois(mu):  # Knuth
        L, k, p = math.exp(-mu), 0, 1.0
        while True:
            p *= rng.random()
            if p <= L:
                return k
            k += 1

    for mu, n in ((0.3, 2), (1.5, 4), (4.0, 3)):
        mc = sum(max(pois(mu) for _ in range(n)) for _ in range(40000)) / 40000
        assert expected_max_poisson(mu, n) == pytest.approx(mc, rel=0.03)
    assert expected_max_poisson(0.7, 1) == pytest.approx(0.7)


def test_lateness_small_stretches_is_n_minus_one_mean_delays():
    """mu << 1: one preemption of any of n ranks stalls the meeting, (n - 1) x the mean delay beyond it."""
    rate, slice_ = 10.0, 3e-3
    cpu = 1e-3  # mu = 0.01
    for n in (2, 4):
        assert lateness(cpu, rate, slice_, n) == pytest.approx((n - 1) * rate * cpu * slice_, rel=0.05)
    assert lateness(cpu, rate, slice_, 1) == 0.0
    assert lateness(cpu, 0.0, slice_, 4) == 0.0


def test_fit_recovers_slice_and_rate():
    cpus = [1e-3] * 100
    walls = [c + (4e-3 if i % 10 == 0 else 0.0) for i, c in enumerate(cpus)]  # 10 preemptions of 4 ms in 0.1 s
    f = fit(walls, cpus)
    assert f["slice_s"] == pytest.approx(4e-3)
    assert f["rate_per_cpu_s"] == pytest.approx(100.0)
    assert fit(cpus, cpus)["rate_per_cpu_s"] == 0.0


def test_lanes_pay_the_wake_up_at_the_collective():
    """A rank at share 0.5 that computes 1 ms of CPU after a blocking call (inside its 4 ms slice) runs it in
    1 ms and pays the 1 ms it owes the other tasks waiting for its core at the next collective; 6 ms of CPU:
    4 ms whole, 2 ms at half speed (4 ms), 4 ms owed. Totals stay CPU / share."""
    from dsv3sim.workload.measured_lanes import Lanes

    rank = {"share": 0.5, "cv": 0.0, "preempt": {"rate_per_cpu_s": 0.0001, "slice_s": 4e-3}}
    ln = Lanes([rank])
    ln.compute("attn(F)", [2e-3])  # table: 1 ms CPU / 0.5
    assert ln.clock[0] == pytest.approx(1e-3)
    ln.meet("dispatch(F)", lambda _s: 0.0)
    assert ln.comp["dispatch(F)"] == pytest.approx(1e-3, rel=1e-3) and ln.clock[0] == pytest.approx(2e-3, rel=1e-3)
    ln2 = Lanes([rank])
    ln2.compute("mlp(F)", [12e-3])  # 6 ms CPU
    assert ln2.clock[0] == pytest.approx(4e-3 + 4e-3)
    ln2.finish("p2p_wait")
    assert ln2.comp["p2p_wait"] == pytest.approx(4e-3) and ln2.clock[0] == pytest.approx(12e-3)


def test_paced_rank_runs_the_steps_first_work_at_full_speed():
    """An EP rank with in-stage exchanges computes at its stage's pace (1.25 x its CPU seconds), except the step's
    first work (``fresh``), which starts its time on the core: CPU seconds as they are."""
    from dsv3sim.workload.measured_lanes import Lanes

    rank = {"share": 0.5, "cv": 0.0, "comm_in_stage_s": {"layout(F)": 1e-3}, "in_stage_wall_per_cpu": {"F": 1.25}}
    ln = Lanes([rank])
    ln.compute("embed(F)", [2e-4], fresh=True)  # table: 0.1 ms CPU / 0.5
    assert ln.clock[0] == pytest.approx(1e-4)
    ln.compute("attn(F)", [2e-3])
    assert ln.clock[0] == pytest.approx(1e-4 + 1.25e-3)
