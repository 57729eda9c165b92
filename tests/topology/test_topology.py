"""Topology: YAMLs load, routes are real walks in the graph that stay in their plane, errors are clear."""

from __future__ import annotations

import random

import pytest

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.topology import load_topology_config, topology_from_dict
from dsv3sim.topology import Topology, load_topology

NAMES = ["h800-deepseek", "h200-hgx", "h100-roce", "gb200-nvl72", "local-cpu"]


def _small(**over) -> dict:
    d = {"gpu": "H800", "n_nodes": 8, "gpus_per_node": 8,
         "scale_up": {"bandwidth_GBps": 200, "achievable_fraction": 0.8, "latency_us": 1.5},
         "pcie": {"bandwidth_GBps": 64, "latency_us": 0.4},
         "nic": {"per_node": 8, "bandwidth_GBps": 50, "latency_us": 1.0},
         "fabric": {"kind": "multi-plane", "n_planes": 8, "nodes_per_leaf": 2, "spine_hop_latency_us": 0.5}}
    d.update(over)
    return d


@pytest.mark.parametrize("name", NAMES)
def test_yamls_load(name):
    t = load_topology(name)
    assert t.n_gpus == t.cfg.n_nodes * t.cfg.gpus_per_node
    assert t.cfg.gpu


def test_h800_is_deepseeks_cluster():
    c = load_topology_config("h800-deepseek")
    assert (c.n_gpus, c.gpus_per_node, c.nics_per_node, c.fabric.n_planes) == (2048, 8, 8, 8)
    assert c.nic.bandwidth == 50e9 and c.fabric.kind == "multi-plane" and c.comm_sms == 20


def test_routes_are_walks_and_stay_in_plane():
    t = Topology(topology_from_dict(_small(), name="small"))
    rng = random.Random(0)
    for _ in range(300):
        s, d = rng.randrange(t.n_gpus), rng.randrange(t.n_gpus)
        p = t.path(s, d)
        if s == d:
            assert p == ()
            continue
        links = [t.links[i] for i in p]
        assert links[0].src == ("gpu", s) and links[-1].dst == ("gpu", d)
        for a, b in zip(links, links[1:]):
            assert a.dst == b.src
            assert t.graph.has_edge(a.src, a.dst)
        planes = {lk.dst[1] for lk in links if lk.dst[0] in ("leaf", "spine")}
        planes |= {lk.src[1] for lk in links if lk.src[0] in ("leaf", "spine")}
        if t.node_of(s) == t.node_of(d):
            assert [lk.cls for lk in links] == ["nvlink_tx", "nvlink_rx"]
        else:
            assert planes == {t.plane_of(d)}  # a multi-plane flow never leaves the destination's plane
            if t.plane_of(s) != t.plane_of(d):  # PXN: NVLink hop to the relay first
                assert [lk.cls for lk in links[:2]] == ["nvlink_tx", "nvlink_rx"]
            crosses_leaf = t.node_of(s) // 2 != t.node_of(d) // 2
            assert ("leaf_up" in [lk.cls for lk in links]) == crosses_leaf


def test_bottleneck_and_latency():
    t = Topology(topology_from_dict(_small(), name="small"))
    assert t.bottleneck(0, 1) == pytest.approx(160e9)
    assert t.bottleneck(0, 8) == pytest.approx(50e9)
    assert t.path_latency(t.path(0, 8)) == pytest.approx((0.4 + 1.0 + 1.0 + 0.4) * 1e-6)  # same leaf
    assert t.path_latency(t.path(0, 32)) == pytest.approx((0.4 + 1.0 + 0.5 + 0.5 + 1.0 + 0.4) * 1e-6)


def test_disconnected_graph_is_an_error():
    with pytest.raises(ConfigError, match="disconnected"):
        topology_from_dict(_small(nic=None), name="nonic")
    with pytest.raises(ConfigError, match="disconnected"):
        topology_from_dict(_small(fabric={"kind": "none"}), name="nofabric")


def test_unknown_gpu_is_an_error():
    with pytest.raises(ConfigError, match="unknown GPU"):
        topology_from_dict(_small(gpu="Z9000"), name="z")


def test_nic_count_mismatch_is_an_error():
    with pytest.raises(ConfigError, match="NIC count mismatch"):
        topology_from_dict(_small(nic={"per_node": 4, "bandwidth_GBps": 50}), name="fewnics")
    with pytest.raises(ConfigError, match="NIC count mismatch"):
        topology_from_dict(_small(nic={"per_node": 3, "bandwidth_GBps": 50}, fabric={"kind": "fat-tree"}), name="x")
    with pytest.raises(ConfigError, match="n_gpus"):
        topology_from_dict(_small(n_gpus=100), name="count")


def test_unknown_topology_name_lists_known():
    with pytest.raises(ConfigError, match="h800-deepseek"):
        load_topology("no-such-cluster")
