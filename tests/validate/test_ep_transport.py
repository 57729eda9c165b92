"""The EP transport terms the calibration measures: collectives timed from the last member's entry, the members'
staggered exits, the host work inside the layout exchange; and where the step model prices them."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.validate import calibrate
from dsv3sim.validate.component_table import _layout_host, exit_skew
from dsv3sim.workload.measured_lanes import Lanes


class _Peer:
    """A stand-in for ``calibrate._Last`` whose other member entered ``late`` s after this one every call and
    left ``skew`` s after it."""

    def __init__(self, late: float, skew: float) -> None:
        self.late, self.skew, self.exit_skew = late, skew, []

    def latest(self, t_in, t_out):
        self.exit_skew += [self.skew / 2] * len(t_in)
        return [t + self.late for t in t_in]


def test_collective_is_timed_from_the_last_entry(monkeypatch):
    """A call that returns 2 ms after this rank entered, the peer entering 1.5 ms late: 0.5 ms of transfer; the
    1.5 ms this rank waited is the step model's lateness, not the fit's."""
    clock = [0.0]
    monkeypatch.setattr(calibrate.time, "perf_counter", lambda: clock[0])

    def fn():
        clock[0] += 2e-3
    assert calibrate._time(fn, 3, lambda: None) == pytest.approx(2e-3)
    assert calibrate._time(fn, 3, lambda: None, last=_Peer(late=1.5e-3, skew=0.0)) == pytest.approx(0.5e-3)
    assert calibrate._time(fn, 3, lambda: None, last=_Peer(late=1.0, skew=0.0)) == 0.0  # never negative


def test_last_entry_and_exit_skew_from_the_members_stamps(monkeypatch):
    """Two members' (entry, exit) stamps: per call the latest entry, and the last exit past the mean exit."""
    last = calibrate._Last(group=None, size=2)
    other = torch.tensor([[1.0, 2.5], [1.3, 2.6]], dtype=torch.float64)  # entries, exits of 2 calls
    monkeypatch.setattr(last, "_gather", lambda mine: [mine, other])
    assert last.latest([1.2, 2.0], [1.4, 2.9]) == pytest.approx([1.2, 2.5])
    assert last.exit_skew == pytest.approx([0.05, 0.15])  # exits (1.4, 1.3) and (2.9, 2.6)


def test_table_takes_the_exit_skew_of_rank_0_and_the_layout_host_work():
    calib = [{"rank": 1, "probes": [{"all_to_all_exit_skew_s": 9.0}]},
             {"rank": 0, "probes": [{"all_to_all_exit_skew_s": x} for x in (1e-4, 3e-4, 2e-4)] + [{}]}]
    assert exit_skew(calib) == pytest.approx(2e-4)
    assert exit_skew([{"rank": 0, "probes": [{}]}]) == 0.0
    glue = [{"glue": {"ep": 2, "n_moe": 3, "stage_layout_cpu_s": {"F": x, "B": 0.0}}} for x in (3e-4, 6e-4, 9e-4)]
    assert _layout_host(glue, 0.5) == pytest.approx(6e-4 / 3 / 0.5)  # per MoE layer, over the share
    one_rank = [{"glue": {"ep": 1, "n_moe": 3, "stage_layout_cpu_s": {"F": 3e-4, "B": 0.0}}}]
    assert _layout_host(one_rank, 0.5) == 0.0 and _layout_host([{}], 0.5) == 0.0


def test_exit_skew_is_paid_by_every_meeting_after_the_first():
    ln = Lanes([{"share": 1.0, "cv": 0.0}] * 2, exit_skew=1e-4)
    for name in ("layout(F)", "dispatch(F)", "combine(F)"):
        ln.meet(name, lambda _s: 1e-3)
    assert ln.clock == pytest.approx([3e-3 + 2e-4] * 2)
    assert ln.comp["layout(F)"] == pytest.approx(2e-3) and ln.comp["combine(F)"] == pytest.approx(2 * 1.1e-3)
