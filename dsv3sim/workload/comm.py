"""Communication of the workloads: EP routing + placement, DeepEP dispatch/combine on the simulated network,
ZeRO-1 data-parallel collectives, pipeline point-to-point.

- EP all-to-all is simulated event by event on the topology (``dsv3sim.sim.ep_run.simulate_ep``: flows with
  max-min fair sharing of every NVLink/PCIe/NIC/leaf/spine link). One EP group is simulated; the sim reduces
  the cluster to it exactly when groups share no link (sim/ep_run.py docstring). Results are memoised on the
  scalar inputs (a pure function of them), so a step needs three simulations (FP8 dispatch, BF16 dispatch of the
  backward, BF16 combine), and sweeps reuse them across configurations that differ only in compute.
- Routing: uniform node-limited (DeepSeek's balanced profiling, deepseek-ai/profile-data README) or a routing
  trace (path, or ``synth:zipf=S`` for ``dsv3sim.trace.synth``'s generator). With ``placement="eplb"`` the
  trace's expert loads are rebalanced with redundant experts (``dsv3sim.parallel`` EPLB) and each selection
  of a replicated expert goes to its replicas round-robin.
- DP collectives (ZeRO-1 gradient reduce-scatter, parameter all-gather) use the ring alpha-beta cost
  (Thakur et al. 2005, "Optimization of collective communication operations in MPICH" §4): (n-1) alpha +
  (n-1)/n x bytes / bw, bw = the GPU's slowest link on the ring (its NIC across nodes), alpha = path latency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dsv3sim.config.errors import ConfigError, InfeasibleError
from dsv3sim.config.scenario import Perturbation
from dsv3sim.config.topology import load_topology_config
from dsv3sim.parallel.placement import rebalance_experts
from dsv3sim.sim.deepep import ep_counts, token_bytes
from dsv3sim.sim.ep_run import simulate_ep
from dsv3sim.sim.result import CommResult
from dsv3sim.sim.routing import _read_ids, trace_layer_count, uniform_routing
from dsv3sim.topology.graph import Topology
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.synth import SynthSpec, synthesize


# ------------------------------------------------------------------ topology with what-ifs
@lru_cache(maxsize=32)
def build_topology(name: str, gpu: str | None, perturb: Perturbation, min_gpus: int = 0) -> Topology:
    """The topology, its GPU optionally replaced, NIC/NVLink bandwidth scaled, one link degraded."""
    cfg = load_topology_config(name)
    ch: dict = {}
    if gpu:
        ch["gpu"] = gpu
    if perturb.nic_bandwidth_scale != 1 and cfg.nic is not None:
        ch["nic"] = dataclasses.replace(cfg.nic, bandwidth=cfg.nic.bandwidth * perturb.nic_bandwidth_scale)
    if perturb.nvlink_bandwidth_scale != 1:
        ch["scale_up"] = dataclasses.replace(cfg.scale_up,
                                             bandwidth=cfg.scale_up.bandwidth * perturb.nvlink_bandwidth_scale)
    if min_gpus > cfg.n_gpus:
        raise InfeasibleError(f"topology {cfg.name} has {cfg.n_gpus} GPUs, the scenario needs {min_gpus}")
    if ch:
        cfg = dataclasses.replace(cfg, **ch)
    topo = Topology(cfg, check_connected=False)
    if perturb.degraded_link is not None:
        hit = [lk for lk in topo.links if lk.name == perturb.degraded_link]
        if not hit:
            raise ConfigError(f"degraded_link {perturb.degraded_link!r} is not a link of {cfg.name} "
                             f"(e.g. {topo.links[0].name!r})")
        lk = hit[0]
        topo.links[lk.id] = dataclasses.replace(lk, capacity=lk.capacity * perturb.degraded_fraction)
    return topo


# ------------------------------------------------------------------ routing and placement
@dataclass(frozen=True, kw_only=True, slots=True)
class EpPlan:
    """Routing of one EP group on physical experts, and what the report shows about it."""

    routing: np.ndarray  # [ep, tokens_per_rank, k] physical expert ids
    n_physical: int
    load_before: np.ndarray  # [ep] (token, expert) selections per GPU with contiguous placement
    load_after: np.ndarray  # [ep] after placement (== before when contiguous)
    expert_load: np.ndarray  # [E] selections per logical expert
    nodes_per_token: np.ndarray  # histogram: count of tokens touching 1..n_nodes nodes
    rows_max: int  # most (token, expert) rows any GPU's experts receive
    rows_mean: float


LAYER_SEED_STRIDE = 7919  # seed + stride * layer: each MoE layer's synthetic/uniform routing its own draw


def trace_layers(spec: str | None) -> int | None:
    """MoE layers a routing trace file holds (None: uniform or ``synth:`` routing, any number of layers)."""
    if spec is None or spec.startswith("synth:"):
        return None

    return trace_layer_count(Path(spec))


def _trace_ids(spec: str, *, n_experts: int, topk: int, ep: int, gpus_per_node: int, node_limit: int | None,
               n_tokens: int, seed: int, layer: int = 0) -> np.ndarray:
    """[T, k] logical expert ids of one layer from a trace path (its layer ``layer`` modulo the layers it holds)
    or ``synth:zipf=S`` (a fresh draw per layer)."""
    if spec.startswith("synth:"):
        kv = dict(x.split("=") for x in spec[6:].split(",") if x)
        sp = SynthSpec(n_layers=1, n_experts=n_experts, topk=topk, n_tokens=n_tokens, seq_len=min(n_tokens, 4096),
                       zipf_s=float(kv.get("zipf", 1.0)), seed=seed + LAYER_SEED_STRIDE * layer)
        lay = EpLayout(n_experts=n_experts, ep=ep, gpus_per_node=min(gpus_per_node, ep))
        nl = node_limit if node_limit and lay.n_nodes > 1 and node_limit < lay.n_nodes else None
        return np.asarray(synthesize(sp, lay if nl else None, nl).expert_ids[0])

    n_layers = trace_layers(spec) or 1
    return np.asarray(_read_ids(Path(spec), layer % n_layers))


def _eplb(load: np.ndarray, n_physical: int, n_nodes: int, ep: int, n_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(phy2log [n_physical], replicas per logical [E]) from EPLB (``dsv3sim.parallel.placement``)."""
    E = load.shape[0]
    hier = n_group > 1 and E % n_group == 0 and n_group % n_nodes == 0 and n_physical % n_nodes == 0
    out = rebalance_experts(load[None, :].astype(np.float64), n_physical, n_group if hier else 1,
                            n_nodes if hier else 1, ep)
    phy2log, logcnt = np.asarray(out[0])[0], np.asarray(out[2])[0]
    return phy2log, logcnt


def _logical_ids(*, n_experts: int, topk: int, ep: int, gpn: int, tokens_per_rank: int, node_limit: int | None,
                 trace: str | None, placement: str, redundant: int, seed: int, n_group: int, layer: int) -> np.ndarray:
    """[ep * tokens_per_rank, topk] logical expert ids of one MoE layer: its trace layer or its own draw."""
    seed_l = seed + LAYER_SEED_STRIDE * layer
    if trace is None and (n_experts % ep or placement != "contiguous" or redundant):
        # logical group-limited routing (V3 §2.1.2: topk_group of n_group groups), independent of placement
        g = n_group if n_group > 1 and n_experts % n_group == 0 else 1
        n_tok = ep * tokens_per_rank
        per = -(-n_tok // g)
        ids = uniform_routing(ep=g, tokens_per_rank=per, n_experts=n_experts, topk=topk, gpus_per_node=1,
                              max_nodes=node_limit if g > 1 else None, seed=seed_l).reshape(-1, topk)[:n_tok]
        return np.random.default_rng(seed_l).permutation(ids)
    if trace is None:
        return uniform_routing(ep=ep, tokens_per_rank=tokens_per_rank, n_experts=n_experts, topk=topk,
                               gpus_per_node=gpn, max_nodes=node_limit, seed=seed_l).reshape(-1, topk)
    ids = _trace_ids(trace, n_experts=n_experts, topk=topk, ep=ep, gpus_per_node=gpn, node_limit=node_limit,
                     n_tokens=ep * tokens_per_rank, seed=seed, layer=layer)
    return ids[np.arange(ep * tokens_per_rank) % ids.shape[0]]


def _round_robin_replicas(ids: np.ndarray, phy2log: np.ndarray, n_experts: int) -> np.ndarray:
    """Logical ids -> physical ids: the j-th selection of expert e (in token order) goes to replica
    j mod count(e), replicas of each expert in physical-id order."""
    cnt = np.bincount(phy2log, minlength=n_experts)
    table = np.full((n_experts, max(1, int(cnt.max()))), -1, dtype=np.int64)
    order_p = np.argsort(phy2log, kind="stable")
    starts_p = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    table[phy2log[order_p], np.arange(len(phy2log)) - starts_p[phy2log[order_p]]] = order_p
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=n_experts))[:-1]])
    nth = np.empty_like(flat)
    nth[order] = np.arange(flat.size) - starts[flat[order]]
    return table[flat, nth % np.maximum(cnt[flat], 1)].reshape(ids.shape)


@lru_cache(maxsize=256)
def ep_plan(*, n_experts: int, topk: int, ep: int, gpus_per_node: int, tokens_per_rank: int,
            node_limit: int | None, trace: str | None, placement: str, redundant: int, seed: int,
            n_group: int = 1, layer: int = 0) -> EpPlan:
    """Routing of one EP group for MoE layer ``layer`` (its trace layer, or its own random draw) and the
    placement of its experts (EPLB per layer, as DeepSeek's EPLB balances each layer separately)."""
    if n_experts % ep and placement == "contiguous":
        raise InfeasibleError(f"EP degree {ep} does not divide {n_experts} experts")
    n_phys = n_experts + redundant
    if n_phys % ep:
        raise InfeasibleError(f"EP degree {ep} does not divide {n_experts} experts + {redundant} redundant = {n_phys}")
    if n_phys > n_experts * ep:  # beyond one copy of every expert on every GPU a replica adds nothing
        raise InfeasibleError(f"redundant_experts={redundant}: {n_phys} physical experts exceed one copy of each of "
                          f"{n_experts} experts on each of ep={ep} GPUs ({n_experts * ep})")
    gpn = min(gpus_per_node, ep)
    ids = _logical_ids(n_experts=n_experts, topk=topk, ep=ep, gpn=gpn, tokens_per_rank=tokens_per_rank,
                       node_limit=node_limit, trace=trace, placement=placement, redundant=redundant, seed=seed,
                       n_group=n_group, layer=layer)
    expert_load = np.bincount(ids.ravel(), minlength=n_experts).astype(np.int64)
    epr_log = n_experts // ep if n_experts % ep == 0 else None
    load_before = (np.bincount(ids.ravel() // epr_log, minlength=ep) if epr_log else
                   np.full(ep, ids.size / ep)).astype(np.float64)
    if placement == "eplb" or redundant:
        phy2log, _logcnt = _eplb(expert_load, n_phys, max(1, ep // gpn), ep, n_group)
        ids_phys = _round_robin_replicas(ids, phy2log, n_experts)
    else:
        ids_phys = ids
    epr = n_phys // ep
    load_after = np.bincount(ids_phys.ravel() // epr, minlength=ep).astype(np.float64)
    n_nodes = max(1, ep // gpn)
    node = (ids_phys // epr) // gpn
    srt = np.sort(node, axis=1)
    touched = 1 + (np.diff(srt, axis=1) != 0).sum(axis=1) if n_nodes > 1 else np.ones(len(ids), int)
    hist = np.bincount(touched, minlength=n_nodes + 1)[1:]
    routing = ids_phys.reshape(ep, tokens_per_rank, topk).astype(np.int32)
    return EpPlan(routing=routing, n_physical=n_phys, load_before=load_before, load_after=load_after,
                  expert_load=expert_load, nodes_per_token=hist, rows_max=int(load_after.max()),
                  rows_mean=float(load_after.mean()))


# ------------------------------------------------------------------ DeepEP on the simulated network
@lru_cache(maxsize=512)
def _ep_cached(topo: Topology, plan_key: tuple, kind: str, mode: str, dtype: str, hidden: int, fast: bool
               ) -> CommResult:
    plan = ep_plan(**dict(plan_key))
    ep = plan.routing.shape[0]
    return simulate_ep(topo, kind=kind, ep=ep, routing=plan.routing, n_experts=plan.n_physical, mode=mode,
                       dtype=dtype, hidden=hidden, n_groups=1 if fast else None, reduce=True)


def ep_comm(topo: Topology, plan_key: tuple, *, kind: str, mode: str, dtype: str, hidden: int,
            fast: bool = True) -> CommResult:
    """Dispatch or combine of one micro-batch (memoised). ``fast``: one EP group stands for all of them."""
    if plan_key and dict(plan_key)["ep"] == 1:
        return CommResult(kind=kind, mode=mode, n_ranks=1, time_s=0.0, rdma_GBps=0.0, nvlink_GBps=0.0,
                          deepep_rdma_GBps=0.0, deepep_nvlink_GBps=0.0)
    return _ep_cached(topo, plan_key, kind, mode, dtype, hidden, fast)


# ------------------------------------------------------------------ data parallel and pipeline
def ring_time(topo: Topology, n: int, nbytes: float, *, cross_node: bool, per_node: int = 1) -> float:
    """Ring reduce-scatter (or all-gather) of ``nbytes`` per rank over ``n`` ranks, alpha-beta.

    ``cross_node=False``: all ranks in one node, NVLink. ``cross_node=True`` with ``per_node`` ranks of the
    ring in each node: NCCL builds ``per_node`` rings (channels), each entering and leaving every node once
    through a different NIC (the rail / plane of that local index), so per GPU the NIC carries
    (n-1)/n x nbytes / per_node and NVLink the other (per_node - 1) / per_node of it, at the same time
    (NCCL ring algorithm, Thakur et al. 2005 per ring); ``per_node=1`` is the flat ring over the NICs."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    c = topo.cfg
    g = c.gpus_per_node
    k = max(1, min(per_node, g, n))
    if cross_node and c.n_nodes > 1:
        a, b = 0, g  # same local index on two nodes: the GPU's NIC (same plane)
    else:
        a, b = 0, 1 if g > 1 else 0
    if a == b:
        return 0.0
    vol = (n - 1) / n * nbytes
    alpha = topo.path_latency(topo.path(a, b)) + c.kernel_latency
    if not (cross_node and c.n_nodes > 1) or k == 1:
        return (n - 1) * alpha + vol / topo.bottleneck(a, b)
    t_nic = vol / k / topo.bottleneck(0, g)
    t_nvl = vol * (k - 1) / k / topo.bottleneck(0, 1)
    return (n - 1) * alpha + max(t_nic, t_nvl)


def p2p_time(topo: Topology, nbytes: float, *, cross_node: bool) -> float:
    """One pipeline send of ``nbytes`` between adjacent stages (latency + bytes / bottleneck)."""
    c = topo.cfg
    b = c.gpus_per_node if cross_node and c.n_nodes > 1 else (1 if c.gpus_per_node > 1 else 0)
    if b == 0:
        return 0.0
    return topo.path_latency(topo.path(0, b)) + nbytes / topo.bottleneck(0, b)


def ep_link_bound(topo: Topology, plan_key: tuple, *, kind: str, mode: str, dtype: str, hidden: int
                  ) -> tuple[float, dict[str, float]]:
    """See ``_ep_link_bound`` (memoised; each caller gets its own bytes dict)."""
    t, by = _ep_link_bound(topo, plan_key, kind=kind, mode=mode, dtype=dtype, hidden=hidden)
    return t, dict(by)


@lru_cache(maxsize=4096)
def _ep_link_bound(topo: Topology, plan_key: tuple, *, kind: str, mode: str, dtype: str, hidden: int
                   ) -> tuple[float, dict[str, float]]:
    """Dispatch/combine time as the busiest link's bytes / capacity + the longest path latency (computed).

    Used where the event simulation is too slow (low-latency all-to-all over hundreds of GPUs: every
    (token, expert) selection is its own message) and in sweeps (``Scenario.fast_comm``). Messages follow
    DeepEP's paths (normal mode: one IB copy per target node to the same-index relay, then NVLink). For a
    one-shot all-to-all in the fluid model this is a lower bound that the max-min simulation approaches when
    one link class is the bottleneck; tests/workload/test_comm.py compares it with ``simulate_ep``.
    Returns (seconds, bytes per link class for the whole group).
    """
    plan = ep_plan(**dict(plan_key))
    ep = plan.routing.shape[0]
    c = _counts(topo, plan_key)
    b = token_bytes(kind, mode, dtype, hidden)
    if mode == "low-latency":
        msgs = c.sel_rank.astype(np.float64)
    else:
        msgs = _normal_messages_cached(topo, plan_key)
    if kind != "dispatch":
        msgs = msgs.T  # combine: expert GPU r sends back to token owner s along path(r, s)
    pair_of, link_of, lat_of = _incidence(topo, ep)
    load = np.bincount(link_of, weights=msgs.ravel()[pair_of] * b, minlength=len(topo.links))
    _check_bound_conservation(msgs, pair_of, b, ep)
    used = msgs.ravel() > 0
    lat = float(lat_of[used].max()) if used.any() else 0.0
    cap = np.array([lk.capacity for lk in topo.links])
    t = float((load / cap).max()) + lat if load.any() else 0.0
    by_class: dict[str, float] = {}
    for lk in topo.links:
        if load[lk.id]:
            by_class[lk.cls] = by_class.get(lk.cls, 0.0) + float(load[lk.id])
    return t, by_class


def check_round_trip(results: dict[str, dict]) -> None:
    """Tokens dispatched = tokens combined over one micro-batch's simulated all-to-alls (every token copy sent
    to an expert comes back once); results without token counts (the busiest-link bound) are skipped, since
    there combine is dispatch's matrix transposed (``_ep_link_bound``)."""
    sent = [r["tokens_dispatched"] for r in results.values()
            if r.get("kind") == "dispatch" and "tokens_dispatched" in r]
    back = [r["tokens_combined"] for r in results.values() if r.get("kind") == "combine" and "tokens_combined" in r]
    if sent and back and (sum(sent) != sum(back) or len(sent) != len(back)):
        raise AssertionError(f"token conservation: {sent} token copies dispatched, {back} combined")


def _check_bound_conservation(msgs: np.ndarray, pair_of: np.ndarray, b: float, ep: int) -> None:
    """The bound's conservation, as the event simulation checks its own: the bytes every sender puts on its
    first hop equal the bytes the receivers take off their last hop and the bytes routed between distinct GPUs
    (no pair with traffic lacks a path, none is counted twice)."""
    if pair_of.size == 0:
        return
    w = msgs.ravel()[pair_of] * b
    starts = np.r_[True, pair_of[1:] != pair_of[:-1]]
    ends = np.r_[pair_of[1:] != pair_of[:-1], True]
    routed = float(msgs.sum() - np.trace(msgs)) * b
    sent, received = float(w[starts].sum()), float(w[ends].sum())
    tol = 1e-9 * max(routed, 1.0)
    if abs(sent - routed) > tol or abs(received - routed) > tol:
        raise AssertionError(f"bound conservation: {routed} B routed between GPUs, {sent} B sent on first hops, "
                             f"{received} B received on last hops (ep={ep})")


@lru_cache(maxsize=64)
def _counts(topo: Topology, plan_key: tuple):
    plan = ep_plan(**dict(plan_key))
    return ep_counts(topo, tuple(range(plan.routing.shape[0])), plan.routing, plan.n_physical)


@lru_cache(maxsize=64)
def _normal_messages_cached(topo: Topology, plan_key: tuple) -> np.ndarray:
    plan = ep_plan(**dict(plan_key))
    return _normal_messages(topo, plan.routing.shape[0], _counts(topo, plan_key))


def _normal_messages(topo: Topology, ep: int, c) -> np.ndarray:
    """Token messages per GPU pair of a DeepEP normal dispatch: once over IB to the same-index relay GPU of each
    target node, then NVLink from the relay to each target GPU there; NVLink directly inside the own node."""
    gpn = min(topo.cfg.gpus_per_node, ep)
    node = np.arange(ep) // gpn
    local = np.arange(ep) % gpn
    m = np.zeros((ep, ep))
    same = node[:, None] == node[None, :]
    m[same] += c.count_rank[same]
    n_nodes = ep // gpn
    for s in range(ep):
        for n in range(n_nodes):
            if n == node[s]:
                continue
            relay = n * gpn + local[s]
            m[s, relay] += c.count_node[s, n]
            tg = np.arange(n * gpn, (n + 1) * gpn)
            tg = tg[tg != relay]
            m[relay, tg] += c.count_rank[s, tg]
    np.fill_diagonal(m, 0.0)
    return m


@lru_cache(maxsize=8)
def _incidence(topo: Topology, ep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every ordered GPU pair (a, d) of ranks 0..ep-1 (pair index a*ep + d): its links, and its latency."""
    pairs, links = [], []
    lat = np.zeros(ep * ep)
    for a in range(ep):
        for d in range(ep):
            if a == d:
                continue
            p = topo.path(a, d)
            pairs.extend([a * ep + d] * len(p))
            links.extend(p)
            lat[a * ep + d] = topo.path_latency(p)
    return np.asarray(pairs, dtype=np.int64), np.asarray(links, dtype=np.int64), lat
