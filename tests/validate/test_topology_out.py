"""The calibrated local-cpu topology: the simulator's p2p on it reproduces the calibrated alpha-beta fit
(two routes agree: dsv3sim.sim flows over the YAML vs the fit itself), and it loads with the sim's loader."""

from __future__ import annotations

import pytest

from dsv3sim.validate.alpha_beta import AlphaBeta
from dsv3sim.validate.topology_out import calibrated_topology, write_topology


def test_sim_p2p_on_calibrated_topology_equals_fit(tmp_path):
    from dsv3sim.sim.collectives import simulate_collective
    from dsv3sim.topology.graph import load_topology

    fit = AlphaBeta(alpha_s=180e-6, beta_Bps=1.7e9)
    raw = calibrated_topology({"p2p": fit.to_dict()}, world=2, when="test")
    path = write_topology(raw, tmp_path / "local-cpu.yaml")
    topo = load_topology(str(path))
    for n in (1e3, 1e5, 4e6):
        assert simulate_collective(topo, "p2p", [0, 1], n).time_s == pytest.approx(fit.time(n), rel=1e-9)
    # one process: no transport to fit, the link stays the base file's (marked so); collectives ride along
    one = calibrated_topology({"all_reduce": fit.to_dict()}, world=1, when="test")
    assert "calibrated: true" not in str(one["scale_up"].get("note"))
    assert one["collectives"]["all_reduce"]["bandwidth_GBps"] == pytest.approx(1.7)
    from dsv3sim.config.topology import load_topology_config

    cfg = load_topology_config(str(write_topology(one, tmp_path / "one.yaml")))
    assert cfg.collectives == (("all_reduce", pytest.approx(180e-6), pytest.approx(1.7e9)),)
