"""EP communication: the busiest-link bound against the event simulation; routing plans and placement."""
from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import Perturbation
from dsv3sim.workload import comm as C


def _key(**kw):
    d = {"n_experts": 256, "topk": 8, "ep": 16, "gpus_per_node": 8, "tokens_per_rank": 256, "node_limit": None, "trace": None,
             "placement": "contiguous", "redundant": 0, "seed": 0}
    d.update(kw)
    return tuple(sorted(d.items()))


@pytest.mark.parametrize("kind,dtype", [("dispatch", "fp8"), ("combine", "bf16")])
def test_bound_below_simulation_and_close(kind, dtype):
    """Two routes: the max-min flow simulation never beats the busiest link, and stays within 35 % of it."""
    topo = C.build_topology("h800-deepseek", None, Perturbation(), 0)
    key = _key()
    sim = C.ep_comm(topo, key, kind=kind, mode="normal", dtype=dtype, hidden=7168).time_s
    bound, by_class = C.ep_link_bound(topo, key, kind=kind, mode="normal", dtype=dtype, hidden=7168)
    assert bound <= sim * (1 + 1e-9)
    assert sim <= 1.35 * bound
    assert by_class.get("nic_tx", 0) > 0 and by_class.get("nvlink_rx", 0) > 0


def test_halving_ib_never_helps_and_moves_no_bytes():
    key = _key(tokens_per_rank=1024)
    t1, b1 = C.ep_link_bound(C.build_topology("h800-deepseek", None, Perturbation(), 0), key, kind="dispatch",
                            mode="normal", dtype="fp8", hidden=7168)
    t2, b2 = C.ep_link_bound(C.build_topology("h800-deepseek", None, Perturbation(nic_bandwidth_scale=0.5), 0), key,
                             kind="dispatch", mode="normal", dtype="fp8", hidden=7168)
    assert t2 >= t1 and b1 == b2


def test_node_limit_histogram():
    p = C.ep_plan(**dict(_key(ep=64, node_limit=3, tokens_per_rank=64)))
    assert p.nodes_per_token.sum() == 64 * 64
    assert p.nodes_per_token[3:].sum() == 0 and p.nodes_per_token[2] > 0  # at most M=3 of 8 nodes
    assert p.load_before.sum() == 64 * 64 * 8


def test_eplb_placement_flattens_skewed_load():
    off = C.ep_plan(**dict(_key(ep=32, tokens_per_rank=512, trace="synth:zipf=1.2", node_limit=4)))
    on = C.ep_plan(**dict(_key(ep=32, tokens_per_rank=512, trace="synth:zipf=1.2", node_limit=4, placement="eplb",
                                 redundant=32, n_group=8)))
    mm = lambda a: a.max() / a.mean()
    assert mm(off.load_after) > 1.5
    assert mm(on.load_after) < mm(off.load_after)
    assert on.n_physical == 288 and on.routing.max() < 288
    assert np.array_equal(np.sort(off.expert_load), np.sort(on.expert_load))  # same logical routing


def test_degraded_link_and_bad_name():
    topo = C.build_topology("h800-deepseek", None, Perturbation(degraded_link="nic:0.0->leaf:0.0",
                                                               degraded_fraction=0.25), 0)
    lk = next(x for x in topo.links if x.name == "nic:0.0->leaf:0.0")
    assert lk.capacity == pytest.approx(0.25 * 50e9 * 0.9)
    with pytest.raises(ValueError, match="not a link"):
        C.build_topology("h800-deepseek", None, Perturbation(degraded_link="nope"), 0)


def test_redundant_experts_beyond_a_copy_per_gpu_refused():
    """More physical experts than one copy of each on every EP GPU is refused in one line, not allocated."""
    C.ep_plan(**dict(_key(ep=32, tokens_per_rank=64, placement="eplb", redundant=32)))
    with pytest.raises(ConfigError, match="redundant_experts=1000000000000"):
        C.ep_plan(**dict(_key(ep=2, tokens_per_rank=64, placement="eplb", redundant=10**12)))


def test_dp_ring_uses_every_nic_and_nvlink_of_whole_nodes():
    """A ring over whole nodes: NCCL's per_node rings leave each node through a different NIC, so the NIC carries
    1/per_node of the flat ring's bytes and NVLink the rest; on H800 (45 GB/s NIC, 134 GB/s NVLink) the
    NVLink share binds: (n-1)/n x S x 7/8 / 134 GB/s, plus the per-step latencies."""
    from dsv3sim.topology import load_topology

    topo = load_topology("h800-deepseek")
    S, n = 8e9, 128
    flat = C.ring_time(topo, n, S, cross_node=True)
    hier = C.ring_time(topo, n, S, cross_node=True, per_node=8)
    alpha = (n - 1) * (topo.path_latency(topo.path(0, 8)) + topo.cfg.kernel_latency)
    assert flat == pytest.approx(alpha + (n - 1) / n * S / topo.bottleneck(0, 8))
    assert hier == pytest.approx(alpha + (n - 1) / n * S * 7 / 8 / topo.bottleneck(0, 1))
    assert hier < flat / 2
    # one rank per node (expert DP peers EP groups apart) is the flat ring; per_node never exceeds the ring
    assert C.ring_time(topo, 2, S, cross_node=True, per_node=8) == pytest.approx(C.ring_time(topo, 2, S, cross_node=True, per_node=2))
    assert C.ring_time(topo, 2, S, cross_node=True, per_node=1) > C.ring_time(topo, 2, S, cross_node=True, per_node=2)
