"""Ring/tree collectives and p2p against their alpha-beta closed forms; the `dsv3sim comm` command."""

from __future__ import annotations

import json

import pytest

from dsv3sim.cli import main
from dsv3sim.config.topology import topology_from_dict
from dsv3sim.sim.collectives import simulate_collective
from dsv3sim.topology import Topology

BW, LAT = 160e9, 1.5e-6  # one NVLink direction (200 x 0.8), one hop


def _node(n=8) -> Topology:
    d = {"gpu": "H800", "n_nodes": 1, "gpus_per_node": n,
         "scale_up": {"bandwidth_GBps": 200, "achievable_fraction": 0.8, "latency_us": 1.5}}
    return Topology(topology_from_dict(d, name="node"))


@pytest.mark.parametrize("kind,steps", [("all-reduce", 14), ("all-gather", 7), ("reduce-scatter", 7)])
def test_ring_matches_alpha_beta(kind, steps):
    S = 64e6
    res = simulate_collective(_node(), kind, list(range(8)), S)
    # each step: every rank sends S/8 to its successor over its own NVLink tx and the successor's rx
    assert res.time_s == pytest.approx(steps * (2 * LAT + S / 8 / BW), rel=1e-12)
    assert res.bytes_sent == pytest.approx(steps * S)
    assert res.busiest_link_utilisation == pytest.approx(steps * S / 8 / BW / res.time_s, rel=1e-9)


def test_p2p_is_latency_plus_bytes_over_bandwidth():
    res = simulate_collective(_node(), "p2p", [0, 5], 1e6)
    assert res.time_s == 2 * LAT + 1e6 / BW


def test_tree_all_reduce_pipelines():
    S, C = 64e6, 8
    res = simulate_collective(_node(), "all-reduce", list(range(8)), S, algorithm="tree", chunks=C)
    # lower bound: the root receives 2 children x S and sends 2 x S; pipelining keeps it near that
    assert res.time_s > 2 * S / BW
    ring = simulate_collective(_node(), "all-reduce", list(range(8)), S)
    assert res.time_s > ring.time_s  # in one NVSwitch node the bandwidth-optimal ring wins for big buffers
    small = simulate_collective(_node(), "all-reduce", list(range(8)), 8e3, algorithm="tree", chunks=1)
    ring_small = simulate_collective(_node(), "all-reduce", list(range(8)), 8e3)
    assert small.time_s < ring_small.time_s  # ... and the log-depth tree wins for tiny ones


def test_comm_command_json(capsys):
    rc = main(["comm", "--topology", "h800-deepseek", "--kind", "dispatch", "--ep", "16", "--tokens-per-rank",
               "256", "--hidden", "1024", "--topk", "8", "--max-nodes", "2", "--dtype", "fp8", "--groups", "1",
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("time_s", "rdma_GBps", "nvlink_GBps", "bytes_by_class", "busiest_link_utilisation"):
        assert key in out
    assert out["time_s"] > 0 and 0 < out["busiest_link_utilisation"] <= 1 + 1e-9
    assert out["bytes_per_token"] == 1024 + 1024 // 128 * 4


def test_comm_command_trace_fallback(tmp_path, capsys):
    import numpy as np

    ids = np.random.default_rng(0).integers(0, 64, size=(100, 4))
    p = tmp_path / "ids.npy"
    np.save(p, ids)
    rc = main(["comm", "--topology", "local-cpu", "--kind", "combine", "--ep", "2", "--tokens-per-rank", "50",
               "--hidden", "256", "--topk", "4", "--experts", "64", "--trace", str(p), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens_combined"] > 0


def test_comm_command_bad_input_is_one_line(capsys):
    assert main(["comm", "--topology", "h800-deepseek", "--kind", "dispatch", "--ep", "16", "--experts", "60"]) == 2
    assert "n_experts=60" in capsys.readouterr().err
