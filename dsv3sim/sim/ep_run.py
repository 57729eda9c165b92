"""Run EP dispatch/combine on a whole cluster: one EP group per block of ``ep`` consecutive GPUs.

``simulate_dispatch`` / ``simulate_combine`` / ``simulate_ep`` build a fresh simpy Environment and
FlowNetwork, start every group's collective, run to completion, check conservation and return a CommResult.

Exact reduction (``reduce=True``): when every group routes the same tokens, and the groups share no link,
the groups are independent copies of one another (max-min fair rates decompose over connected components,
and a translation by whole nodes maps one group's links onto another's with equal capacities and
latencies), so simulating group 0 alone gives the same time and 1/G of every byte count. Groups share no
link when (1) their GPU sets are disjoint, (2) every NIC is used by one group only, (3) each group is whole
nodes or lies inside one node, and (4) each group's nodes sit under one leaf per plane (so no traffic
takes a leaf->spine link) or the fabric has a single leaf. Otherwise every group is simulated together.
``tests/sim/test_reduction.py`` checks reduced == unreduced on a smaller cluster.
"""

from __future__ import annotations

import numpy as np
import simpy

from dsv3sim.config.errors import ConfigError
from dsv3sim.sim.deepep import EpCounts, deepep_logical_bytes, ep_counts, start_ep, token_bytes
from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.sim.result import CommResult, link_stats
from dsv3sim.topology.graph import Topology


def ep_groups(topo: Topology, ep: int, n_groups: int | None = None) -> list[tuple[int, ...]]:
    """Blocks of ``ep`` consecutive GPU ids (EP rank order = GPU order, DeepEP's numbering)."""
    n = topo.n_gpus
    if ep < 1 or ep > n:
        raise ConfigError(f"ep={ep} must be in 1..{n} (GPUs in topology {topo.cfg.name})")
    g = n // ep if n_groups is None else n_groups
    if g < 1 or g * ep > n:
        raise ConfigError(f"{g} groups of ep={ep} do not fit in {n} GPUs of {topo.cfg.name}")
    return [tuple(range(i * ep, (i + 1) * ep)) for i in range(g)]


def groups_independent(topo: Topology, groups: list[tuple[int, ...]]) -> bool:
    """True when no two groups can put bytes on the same link (conditions in the module docstring)."""
    cfg = topo.cfg
    seen: set[int] = set()
    nic_owner: dict[tuple[int, int], int] = {}
    for gi, ranks in enumerate(groups):
        if seen & set(ranks):
            return False
        seen |= set(ranks)
        nodes = sorted({topo.node_of(g) for g in ranks})
        if len(nodes) > 1 and len(ranks) != len(nodes) * cfg.gpus_per_node:
            return False
        for g in ranks:
            key = (topo.node_of(g), topo.nic_of(g))
            if nic_owner.setdefault(key, gi) != gi:
                return False
        if len(nodes) > 1 and len({n // cfg.fabric.nodes_per_leaf for n in nodes}) > 1:
            return False
    return True


def simulate_ep(topo: Topology, *, kind: str, ep: int, routing: np.ndarray | list[np.ndarray],
                n_experts: int, mode: str = "normal", dtype: str = "fp8", hidden: int = 7168, chunks: int = 8,
                taper: bool = False,
                n_groups: int | None = None, reduce: bool = True, record: bool = False,
                return_network: bool = False, method: str = "auto", max_flows: int = 600):
    """Dispatch or combine on ``n_groups`` EP groups (default: the whole cluster).

    ``routing`` is ``[ep, tokens, k]`` (every group routes the same) or a list with one per group.
    ``method``: "flow" (max-min flow simulation), "bound" (direct all-to-alls only, i.e. low-latency mode or
    groups inside one node: kernel + path latency + the most loaded link's bytes / capacity, what max-min
    converges to for many balanced flows; cost linear in flows) or "auto" (flow unless such a direct run
    needs more than ``max_flows`` flows: one flow per (source, target) pair makes every recomputation
    touch all flows, so EP >= 32 low-latency or an NVL72-wide EP would be slow).
    """
    groups = ep_groups(topo, ep, n_groups)
    same = not isinstance(routing, list)
    routings = [routing] * len(groups) if same else routing
    if len(routings) != len(groups):
        raise ValueError(f"{len(routings)} routings for {len(groups)} EP groups")
    reduced = reduce and same and len(groups) > 1 and groups_independent(topo, groups)
    sim_groups = groups[:1] if reduced else groups
    if method not in ("auto", "flow", "bound"):
        raise ConfigError(f"method must be auto, flow or bound, got {method!r}")
    one_node = all(len({topo.node_of(g) for g in ranks}) == 1 for ranks in sim_groups)
    if method == "bound" and mode != "low-latency" and not one_node:
        raise ConfigError("method='bound' is for low-latency mode or single-node groups (normal mode's relay "
                         "pipeline needs the flows)")
    if (mode == "low-latency" or one_node) and method != "flow":
        c0 = ep_counts(topo, sim_groups[0], np.asarray(routings[0]), n_experts)
        m = c0.sel_rank if mode == "low-latency" else c0.count_rank
        n_pairs = int(np.count_nonzero(m) - np.count_nonzero(np.diag(m))) * len(sim_groups)
        if method == "bound" or n_pairs > max_flows:
            return _bound(topo, kind=kind, mode=mode, groups=groups, sim_groups=sim_groups, routings=routings,
                          n_experts=n_experts, first=c0, dtype=dtype, hidden=hidden)
    net, counts, procs = _run_flows(topo, sim_groups, routings, n_experts, kind=kind, mode=mode, dtype=dtype,
                                    hidden=hidden, chunks=chunks, taper=taper, record=record)
    res = _flow_result(topo, net, counts, procs, kind=kind, mode=mode, dtype=dtype, hidden=hidden, ep=ep,
                       n_groups=len(groups))
    return (res, net) if return_network else res


def _run_flows(topo: Topology, sim_groups: list, routings: list, n_experts: int, *, kind: str, mode: str,
               dtype: str, hidden: int, chunks: int, taper: bool, record: bool):
    """Every simulated group's DeepEP processes on one flow network, run to the end (``net.env.now``)."""
    env = simpy.Environment()
    net = FlowNetwork(env, [lk.capacity for lk in topo.links], record=record)
    counts: list[EpCounts] = []
    procs = []
    cache: dict[int, EpCounts] = {}
    for ranks, r in zip(sim_groups, routings):
        c0 = cache.get(id(r))
        c = ep_counts(topo, ranks, np.asarray(r), n_experts) if c0 is None else _retarget(c0, ranks)
        cache[id(r)] = c
        counts.append(c)
        procs.append(start_ep(env, net, topo, c, kind=kind, mode=mode, dtype=dtype, hidden=hidden, chunks=chunks,
                              taper=taper))
    env.run()
    net.check_conservation()
    return net, counts, procs


def _flow_result(topo: Topology, net: FlowNetwork, counts: list[EpCounts], procs: list, *, kind: str, mode: str,
                 dtype: str, hidden: int, ep: int, n_groups: int) -> CommResult:
    """CommResult of a finished flow run, link statistics scaled from the simulated groups to all ``n_groups``
    (token copies checked against the routing: every routed copy was delivered)."""
    t = net.env.now
    b = token_bytes(kind, mode, dtype, hidden)
    flow_tokens = sum(f.tokens for f in net.done) + sum(p.job.tokens_self for p in procs)
    expect = sum(int((c.sel_rank if mode == "low-latency" else c.count_rank).sum()) for c in counts)
    if flow_tokens != expect:
        raise AssertionError(f"token conservation: {flow_tokens} token copies delivered, {expect} routed")
    scale = n_groups / len(counts)
    n_ranks = sum(len(c.ranks) for c in counts)
    stats = link_stats(topo, net, t, scale=scale)
    nic = stats["bytes_by_class"].get("nic_tx", 0.0) / scale
    nvl = stats["bytes_by_class"].get("nvlink_rx", 0.0) / scale
    logical = [deepep_logical_bytes(c, kind=kind, mode=mode, b=b) for c in counts]
    lr = sum(x[0] for x in logical) / len(logical)
    ln = sum(x[1] for x in logical) / len(logical)
    return CommResult(
        kind=kind, mode=mode, n_ranks=ep, time_s=t, rdma_GBps=nic / n_ranks / t / 1e9 if t else 0.0,
        nvlink_GBps=nvl / n_ranks / t / 1e9 if t else 0.0,
        deepep_rdma_GBps=lr / t / 1e9 if t else 0.0, deepep_nvlink_GBps=ln / t / 1e9 if t else 0.0,
        n_flows=len(net.done), n_events=net.n_events, tokens_dispatched=expect if kind == "dispatch" else 0,
        tokens_combined=expect if kind == "combine" else 0, bytes_sent=net.bytes_sent * scale,
        bytes_received=net.bytes_received * scale, n_groups=n_groups, groups_simulated=len(counts),
        comm_sms=topo.cfg.comm_sms, method="flow", **stats)


class _Loads:
    """Link byte totals of a bound estimate, shaped like a finished FlowNetwork for link_stats."""

    def __init__(self, capacity):
        self.capacity, self.link_bytes, self.n_events, self.done = capacity, {}, 0, []


def _load_links(topo: Topology, loads: _Loads, kind, mode, sim_groups, routings, n_experts, first,
                b: float) -> tuple[list[EpCounts], float, float, float]:
    """Every flow's bytes onto every link of its path (in ``loads``); (counts per group, longest path latency,
    bytes put on first hops, bytes taken off last hops)."""
    lb = loads.link_bytes
    lat = on_first = off_last = 0.0
    counts = []
    for i, ranks in enumerate(sim_groups):
        c = first if i == 0 else ep_counts(topo, ranks, np.asarray(routings[i]), n_experts)
        counts.append(c)
        m = c.sel_rank if mode == "low-latency" else c.count_rank
        for s, r in zip(*(x.tolist() for x in np.nonzero(m))):
            if s == r:
                continue
            a, d = (ranks[s], ranks[r]) if kind == "dispatch" else (ranks[r], ranks[s])
            p = topo.path(a, d)
            nb = float(m[s, r]) * b
            for lid in p:
                lb[lid] = lb.get(lid, 0.0) + nb
            if p:  # what the sender puts on its first hop and the receiver takes off its last
                on_first += nb
                off_last += nb
            lat = max(lat, topo.path_latency(p))
            loads.n_events += 2
    return counts, lat, on_first, off_last


def _bound(topo: Topology, *, kind, mode, groups, sim_groups, routings, n_experts, first, dtype,
           hidden) -> CommResult:
    """Direct all-to-all (low-latency mode, or normal mode inside one node: no relays, every flow starts at
    once) as kernel latency + longest path latency + max over links of bytes / capacity."""
    b = token_bytes(kind, mode, dtype, hidden)
    loads = _Loads([lk.capacity for lk in topo.links])
    counts, lat, on_first, off_last = _load_links(topo, loads, kind, mode, sim_groups, routings, n_experts, first, b)
    t = topo.cfg.kernel_latency + lat + max((v / loads.capacity[k] for k, v in loads.link_bytes.items()), default=0.0)
    scale = len(groups) / len(sim_groups)
    stats = link_stats(topo, loads, t, scale=scale)
    n_ranks = sum(len(c.ranks) for c in counts)
    nic = stats["bytes_by_class"].get("nic_tx", 0.0) / scale
    nvl = stats["bytes_by_class"].get("nvlink_rx", 0.0) / scale
    logical = [deepep_logical_bytes(c, kind=kind, mode=mode, b=b) for c in counts]
    lr = sum(x[0] for x in logical) / len(counts)
    ln = sum(x[1] for x in logical) / len(counts)
    mats = [c.sel_rank if mode == "low-latency" else c.count_rank for c in counts]
    sent = sum(float(m.sum() - np.trace(m)) * b for m in mats) * scale
    pairs = sum(int(m.sum()) for m in mats)
    # conservation, as the flow simulation checks it: bytes routed between distinct GPUs = bytes sent on first
    # hops = bytes received off last hops (no pair dropped for a missing path, none counted twice)
    if abs(on_first * scale - sent) > 1e-9 * max(sent, 1.0) or abs(off_last - on_first) > 1e-9 * max(sent, 1.0):
        raise AssertionError(f"bound conservation: {sent} B routed, {on_first * scale} B sent, "
                             f"{off_last * scale} B received")
    return CommResult(kind=kind, mode=mode, n_ranks=len(sim_groups[0]), time_s=t,
                      rdma_GBps=nic / n_ranks / t / 1e9, nvlink_GBps=nvl / n_ranks / t / 1e9,
                      deepep_rdma_GBps=lr / t / 1e9, deepep_nvlink_GBps=ln / t / 1e9, n_flows=loads.n_events // 2,
                      n_events=0, tokens_dispatched=pairs if kind == "dispatch" else 0,
                      tokens_combined=pairs if kind == "combine" else 0, bytes_sent=on_first * scale,
                      bytes_received=off_last * scale,
                      n_groups=len(groups), groups_simulated=len(sim_groups), comm_sms=topo.cfg.comm_sms,
                      method="bound", **stats)


def _retarget(c: EpCounts, ranks: tuple[int, ...]) -> EpCounts:
    return EpCounts(ranks=tuple(ranks), count_rank=c.count_rank, count_node=c.count_node, sel_rank=c.sel_rank,
                    rank_node=c.rank_node, n_tokens=c.n_tokens)


def simulate_dispatch(topo: Topology, *, ep: int, routing, n_experts: int, **kw) -> CommResult:
    return simulate_ep(topo, kind="dispatch", ep=ep, routing=routing, n_experts=n_experts, **kw)


def simulate_combine(topo: Topology, *, ep: int, routing, n_experts: int, **kw) -> CommResult:
    return simulate_ep(topo, kind="combine", ep=ep, routing=routing, n_experts=n_experts, **kw)
