"""DeepEP dispatch/combine: volumes against a per-token brute force, conservation, determinism, reduction."""

from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.config.topology import topology_from_dict
from dsv3sim.sim.deepep import token_bytes
from dsv3sim.sim.ep_run import ep_groups, groups_independent, simulate_ep
from dsv3sim.sim.routing import uniform_routing
from dsv3sim.topology import Topology

H, K, E = 512, 8, 64


def _topo(n_nodes=8, nodes_per_leaf=2, kind="multi-plane") -> Topology:
    d = {"gpu": "H800", "n_nodes": n_nodes, "gpus_per_node": 8,
         "scale_up": {"bandwidth_GBps": 200, "achievable_fraction": 0.8, "latency_us": 1.5},
         "pcie": {"bandwidth_GBps": 64, "latency_us": 0.4},
         "nic": {"per_node": 8, "bandwidth_GBps": 50, "achievable_fraction": 0.9, "latency_us": 1.0},
         "fabric": {"kind": kind, "n_planes": 8, "nodes_per_leaf": nodes_per_leaf, "spine_hop_latency_us": 0.5}}
    return Topology(topology_from_dict(d, name="small"))


def _routing(ep=16, n=64, m=2, seed=0):
    return uniform_routing(ep=ep, tokens_per_rank=n, n_experts=E, topk=K, gpus_per_node=8, max_nodes=m, seed=seed)


def test_uniform_routing_is_node_limited_and_distinct():
    r = _routing(ep=32, n=500, m=2)
    nodes = r // (E // 4)  # 4 nodes of 16 experts
    for tok in r.reshape(-1, K):
        assert len(set(tok.tolist())) == K
    assert max(len(set(x.tolist())) for x in nodes.reshape(-1, K)) <= 2


def _brute(topo, r, ep):
    """Per token: IB copies (one per remote target node) and NVLink copies (direct + forwarded)."""
    epr = E // ep
    ib = nvl = pairs = 0
    for s in range(ep):
        ns = topo.node_of(s)
        for tok in r[s]:
            ranks = sorted({int(e) // epr for e in tok})
            pairs += len(ranks)
            for n in {topo.node_of(x) for x in ranks}:
                if n != ns:
                    ib += 1
                relay = s if n == ns else n * 8 + topo.local_of(s)
                nvl += sum(1 for x in ranks if topo.node_of(x) == n and x != relay)
    return ib, nvl, pairs


@pytest.mark.parametrize("kind", ["dispatch", "combine"])
def test_normal_mode_volumes_match_per_token_count(kind):
    topo, ep = _topo(), 16
    r = _routing(ep)
    res = simulate_ep(topo, kind=kind, ep=ep, routing=r, n_experts=E, hidden=H, n_groups=1)
    ib, nvl, pairs = _brute(topo, r, ep)
    b = token_bytes(kind, "normal", "fp8", H)
    assert res.bytes_by_class["nic_tx"] == pytest.approx(ib * b, rel=1e-12)  # IB once per target node
    assert res.bytes_by_class["nvlink_rx"] == pytest.approx(nvl * b, rel=1e-12)
    assert res.bytes_sent == pytest.approx(res.bytes_received, rel=1e-12)
    assert (res.tokens_dispatched or res.tokens_combined) == pairs


def test_tokens_dispatched_equal_tokens_combined():
    topo, r = _topo(), _routing()
    d = simulate_ep(topo, kind="dispatch", ep=16, routing=r, n_experts=E, hidden=H, n_groups=1)
    c = simulate_ep(topo, kind="combine", ep=16, routing=r, n_experts=E, hidden=H, n_groups=1)
    assert d.tokens_dispatched == c.tokens_combined > 0
    # combine moves the same tokens over the same links backwards, BF16 instead of FP8 + scales
    ratio = token_bytes("combine", "normal", "fp8", H) / token_bytes("dispatch", "normal", "fp8", H)
    assert c.bytes_by_class["nic_tx"] == pytest.approx(d.bytes_by_class["nic_tx"] * ratio, rel=1e-12)


def test_low_latency_sends_every_selection_directly():
    topo, ep = _topo(), 16
    r = _routing(ep, n=32, m=None)
    res = simulate_ep(topo, kind="dispatch", ep=ep, routing=r, n_experts=E, hidden=H, mode="low-latency", n_groups=1)
    epr = E // ep
    remote = sum(1 for s in range(ep) for e in r[s].ravel() if topo.node_of(int(e) // epr) != topo.node_of(s))
    b = H + H / 128 * 4 + 16
    assert res.bytes_by_class["nic_tx"] == pytest.approx(remote * b, rel=1e-12)
    assert res.tokens_dispatched == r.size
    assert res.deepep_rdma_GBps * res.time_s * 1e9 == pytest.approx(r[0].size * b * ep / ep * 1.0, rel=1e-9)


def test_same_seed_same_event_log():
    topo = _topo()

    def log(seed):
        r = _routing(seed=seed)
        _, net = simulate_ep(topo, kind="dispatch", ep=16, routing=r, n_experts=E, hidden=H, n_groups=1,
                             record=True, return_network=True)
        return net.log

    a, b, c = log(3), log(3), log(4)
    assert a == b and len(a) > 100
    assert a != c


def test_reduction_is_exact_against_the_unreduced_run():
    topo = _topo(n_nodes=8, nodes_per_leaf=2)  # 4 EP16 groups, each under its own leaves
    r = _routing()
    groups = ep_groups(topo, 16)
    assert len(groups) == 4 and groups_independent(topo, groups)
    for kind in ("dispatch", "combine"):
        red = simulate_ep(topo, kind=kind, ep=16, routing=r, n_experts=E, hidden=H, reduce=True)
        full = simulate_ep(topo, kind=kind, ep=16, routing=r, n_experts=E, hidden=H, reduce=False)
        assert (red.groups_simulated, full.groups_simulated) == (1, 4)
        assert red.time_s == full.time_s
        for k, v in full.bytes_by_class.items():
            assert red.bytes_by_class[k] == pytest.approx(v, rel=1e-12)
        assert red.busiest_link_utilisation == pytest.approx(full.busiest_link_utilisation, rel=1e-12)
        assert red.rdma_GBps == pytest.approx(full.rdma_GBps, rel=1e-12)


def test_groups_across_spines_are_not_reduced():
    topo = _topo(n_nodes=8, nodes_per_leaf=1)  # each EP16 group spans two leaves: spine links shared
    assert not groups_independent(topo, ep_groups(topo, 16))
    res = simulate_ep(topo, kind="dispatch", ep=16, routing=_routing(), n_experts=E, hidden=H)
    assert res.groups_simulated == 4 and res.bytes_by_class.get("leaf_up", 0) > 0


def test_bad_input_is_a_value_error():
    topo = _topo()
    with pytest.raises(ValueError, match="ep=16"):
        simulate_ep(topo, kind="dispatch", ep=16, routing=np.zeros((8, 4, 2), dtype=np.int32), n_experts=E)
    with pytest.raises(ValueError, match="n_experts"):
        simulate_ep(topo, kind="dispatch", ep=16, routing=_routing(), n_experts=60)


def test_low_latency_bound_brackets_the_flow_simulation():
    topo, ep = _topo(), 16
    r = _routing(ep, n=64, m=None)
    for kind in ("dispatch", "combine"):
        flow = simulate_ep(topo, kind=kind, ep=ep, routing=r, n_experts=E, hidden=H, mode="low-latency",
                           n_groups=1, method="flow")
        bound = simulate_ep(topo, kind=kind, ep=ep, routing=r, n_experts=E, hidden=H, mode="low-latency",
                            n_groups=1, method="bound")
        spread = max(topo.path_latency(topo.path(a, b)) for a in range(ep) for b in range(ep))
        assert (flow.method, bound.method) == ("flow", "bound")
        assert flow.time_s <= bound.time_s * (1 + 1e-12) <= flow.time_s + spread
        assert bound.bytes_by_class == pytest.approx(flow.bytes_by_class, rel=1e-12)
        assert bound.tokens_dispatched == flow.tokens_dispatched and bound.tokens_combined == flow.tokens_combined
