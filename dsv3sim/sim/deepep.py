"""Expert-parallel dispatch and combine as DeepEP runs them, as flows on a FlowNetwork.

Normal mode (training, prefill; DeepSeek-V3 §3.2.2, deepseek-ai/DeepEP docs/legacy.md "Normal kernels with
NVLink and RDMA forwarding"): a token crosses IB at most once per target node, to the *relay* GPU of that node
with the same local index as the source (same plane), which forwards it over NVLink to each target GPU there;
target GPUs on the source's own node get it over NVLink directly. Node-limited routing bounds the IB copies by
M. Forwarding is pipelined in ``chunks`` (default 8): the relay forwards chunk c once chunk c from every source
has arrived (a fluid stand-in for DeepEP's per-chunk RDMA->NVLink ring buffers). Combine runs the same paths
backwards: target GPUs send expert outputs over NVLink to the relay, which reduces them and sends one
message per token back over IB.

Low-latency mode (decoding; DeepEP "Low-latency kernels with pure RDMA"): every (token, expert) selection is
its own message straight to the expert's GPU (IB to other nodes, through the PXN relay when planes differ;
NVLink inside the node, DeepEP's ``allow_nvlink_for_low_latency_mode``). No per-node deduplication.

Bytes per token (DeepEP tests): FP8 dispatch = hidden + hidden/128 FP32 scales (normal mode;
low-latency adds 16 B of metadata, test_low_latency.py ``num_fp8_bytes``); BF16 = 2*hidden.

DeepEP's *reported* bandwidths are "logical" (README: "the results are logical bandwidth ... contains local
rank traffic"): normal RDMA = tokens x target nodes (own node included) x bytes / t; normal NVL = received
token copies x bytes / t; low-latency = (token, expert) selections x bytes / t. ``deepep_*_GBps`` uses exactly
those counts so the calibration test compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import LL_TRANSPORTS
from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.topology.graph import Topology
from dsv3sim.trace.comm_bytes import combine_message_bytes, dispatch_message_bytes

LL_METADATA_BYTES = 16  # DeepEP test_low_latency.py: num_fp8_bytes = hidden + hidden/128*4 + 16


def token_bytes(kind: str, mode: str, dtype: str, hidden: int) -> float:
    """Bytes of one token message of a dispatch (``dtype``) or a combine (always BF16)."""
    if kind == "combine":
        return float(combine_message_bytes(hidden))
    if kind != "dispatch":
        raise ConfigError(f"kind must be 'dispatch' or 'combine', got {kind!r}")
    b = dispatch_message_bytes(hidden, dtype)
    return float(b + (LL_METADATA_BYTES if mode == "low-latency" and dtype == "fp8" else 0))


@dataclass(frozen=True, kw_only=True, slots=True)
class EpCounts:
    """Pure plan of one EP group: who sends how many tokens to whom (from a routing [ep, N, k])."""

    ranks: tuple[int, ...]  # GPU ids, EP rank order
    count_rank: np.ndarray  # [ep, ep] tokens of s with >= 1 selected expert on rank r (deduplicated per rank)
    count_node: np.ndarray  # [ep, n_nodes] tokens of s with >= 1 selected expert on group node n
    sel_rank: np.ndarray  # [ep, ep] (token, expert) selections of s on r
    rank_node: np.ndarray  # [ep] group node index of each rank
    n_tokens: int


def ep_counts(topo: Topology, ranks: tuple[int, ...], routing: np.ndarray, n_experts: int) -> EpCounts:
    ep = len(ranks)
    if routing.ndim != 3 or routing.shape[0] != ep:
        raise ConfigError(f"routing must be [ep={ep}, tokens, k], got shape {routing.shape}")
    if n_experts % ep:
        raise ConfigError(f"n_experts={n_experts} must be a multiple of ep={ep}")
    if routing.max(initial=-1) >= n_experts:
        raise ConfigError(f"routing has expert id {int(routing.max())} >= n_experts={n_experts}")
    epr = n_experts // ep
    nodes = [topo.node_of(g) for g in ranks]
    uniq = sorted(set(nodes))
    rank_node = np.array([uniq.index(n) for n in nodes])
    n_tok = routing.shape[1]
    count_rank = np.zeros((ep, ep), dtype=np.int64)
    count_node = np.zeros((ep, len(uniq)), dtype=np.int64)
    sel_rank = np.zeros((ep, ep), dtype=np.int64)
    rows = np.arange(n_tok)[:, None]
    for s in range(ep):
        r = routing[s]
        tgt = np.where(r >= 0, r // epr, ep)
        hit = np.zeros((n_tok, ep + 1), dtype=bool)
        hit[rows, tgt] = True
        count_rank[s] = hit[:, :ep].sum(0)
        sel_rank[s] = np.bincount(tgt.ravel(), minlength=ep + 1)[:ep]
        hitn = np.zeros((n_tok, len(uniq) + 1), dtype=bool)
        hitn[rows, np.where(tgt < ep, rank_node[np.minimum(tgt, ep - 1)], len(uniq))] = True
        count_node[s] = hitn[:, :-1].sum(0)
    return EpCounts(ranks=tuple(ranks), count_rank=count_rank, count_node=count_node, sel_rank=sel_rank,
                    rank_node=rank_node, n_tokens=n_tok)


def chunk_fractions(chunks: int, taper: bool = False) -> np.ndarray:
    """Pipeline chunk sizes as fractions of a relay's data: equal by default.

    ``taper=True`` gives weights 1, 2, 4, ... up to the middle and back down (C=6: 1 2 4 4 2 1 /14): a
    small first and last chunk shorten the pipeline's fill and drain, which helps dispatch (IB-bound,
    the relay forwards faster than data arrives) but hurts combine (the big middle chunks make the IB
    send wait on the NVLink gather), so the default is equal chunks; more chunks approach DeepEP's
    fine-grained (16-32 token) pipeline, at more events (EP32 combine: 8 chunks -12 %, 16 chunks -8 %
    vs DeepEP's published bandwidth).
    """
    w = np.array([2.0 ** min(k, chunks - 1 - k) for k in range(chunks)]) if taper else np.ones(chunks)
    return w / w.sum()


class _Ep:
    """Processes of one dispatch or combine of one EP group, on a shared env + network."""

    def __init__(self, env, net, topo: Topology, c: EpCounts, *, kind: str, mode: str, b: float, chunks: int,
                 taper: bool = False):
        self.env, self.net, self.topo, self.c = env, net, topo, c
        self.kind, self.mode, self.b, self.chunks = kind, mode, b, max(1, chunks)
        self.frac = chunk_fractions(self.chunks, taper)
        self.tokens_self = 0
        ep = len(c.ranks)
        locs = [topo.local_of(g) for g in c.ranks]
        self.relay = {(int(c.rank_node[i]), locs[i]): i for i in range(ep)}
        self.locs = locs

    def _x(self, a: int, b: int, nbytes: float, tokens: int, tag: str, first: bool = True) -> simpy.Event:
        ga, gb = self.c.ranks[a], self.c.ranks[b]
        p = self.topo.path(ga, gb)
        return self.net.transfer(p, nbytes, self.topo.path_latency(p) if first else 0.0, tag=tag, tokens=tokens)

    def _chain(self, a: int, b: int, nbytes: float, tokens: int, tag: str, done: list[simpy.Event]):
        """Send ``nbytes`` a->b as one flow; ``done[k]`` fires once the first (k+1)/chunks of it is in."""
        C = self.chunks
        ga, gb = self.c.ranks[a], self.c.ranks[b]
        p = self.topo.path(ga, gb)
        cum = np.cumsum(self.frac)
        marks = [nbytes * float(x) for x in cum[:-1]]
        res = self.net.transfer(p, nbytes, self.topo.path_latency(p), tag=tag, tokens=tokens, milestones=marks)
        end, mev = (res, []) if C == 1 else res
        for e, d in zip(mev, done):
            e.callbacks.append(lambda _e, d=d: d.succeed())
        end.callbacks.append(lambda _e, d=done[-1]: d.succeed())
        return end

    def _pipe(self, a: int, b: int, nbytes: float, tokens: int, tag: str, ready: list[list[simpy.Event]]):
        """Relay stage a->b: chunk k of ``nbytes`` may go once every event in ``ready[k]`` fired (and chunks
        go in order). One gated flow: it only leaves the network when it catches up with its input."""
        cum = np.cumsum(self.frac)
        yield self.env.all_of(ready[0])
        gates = [(nbytes * float(cum[k - 1]), self.env.all_of(ready[k])) for k in range(1, self.chunks)]
        ga, gb = self.c.ranks[a], self.c.ranks[b]
        p = self.topo.path(ga, gb)
        yield self.net.transfer(p, nbytes, self.topo.path_latency(p), tag=tag, tokens=tokens, gates=gates)

    def run(self):
        """Generator for env.process: the whole collective; returns when the last byte arrives."""
        kl = self.topo.cfg.kernel_latency
        if kl:
            yield self.env.timeout(kl)
        if self.mode == "low-latency":
            yield from self._low_latency()
        elif self.kind == "dispatch":
            yield from self._normal_dispatch()
        else:
            yield from self._normal_combine()

    def _low_latency(self):
        c, b, evs = self.c, self.b, []
        ep = len(c.ranks)
        for s in range(ep):
            self.tokens_self += int(c.sel_rank[s, s])
            for r in range(ep):
                n = int(c.sel_rank[s, r])
                if r != s and n:
                    a, d = (s, r) if self.kind == "dispatch" else (r, s)
                    evs.append(self._x(a, d, n * b, n, f"ll:{a}>{d}"))
        yield self.env.all_of(evs)

    def _fwd(self) -> np.ndarray:
        """fwd[f, r]: token copies relay f forwards to rank r of its node (sources on other nodes)."""
        c = self.c
        ep = len(c.ranks)
        fwd = np.zeros((ep, ep), dtype=np.int64)
        for s in range(ep):
            for n in range(c.count_node.shape[1]):
                f = self.relay.get((n, self.locs[s]))
                if n == c.rank_node[s] or f is None:
                    continue
                same = c.rank_node == n
                fwd[f, same] += c.count_rank[s, same]
        np.fill_diagonal(fwd, 0)
        return fwd

    def _remote_pairs(self):
        c = self.c
        for s in range(len(c.ranks)):
            for n in range(c.count_node.shape[1]):
                if n == c.rank_node[s] or not c.count_node[s, n]:
                    continue
                f = self.relay.get((n, self.locs[s]))
                if f is None:
                    raise ValueError(f"EP group lacks GPU with local index {self.locs[s]} on group node {n}: "
                                     "normal mode needs whole nodes")
                yield s, n, f

    def _normal_dispatch(self):
        c, b, env, C = self.c, self.b, self.env, self.chunks
        ep = len(c.ranks)
        evs: list[simpy.Event] = []
        for s in range(ep):  # own node: NVLink directly; self copy is free
            self.tokens_self += int(c.count_rank[s, s])
            for r in np.flatnonzero(c.rank_node == c.rank_node[s]):
                n = int(c.count_rank[s, r])
                if r != s and n:
                    evs.append(self._x(s, int(r), n * b, n, f"nvl:{s}>{r}"))
        arrive = {f: [[] for _ in range(C)] for f in range(ep)}
        for s, n, f in self._remote_pairs():  # IB once per target node, to the relay
            done = [env.event() for _ in range(C)]
            for k in range(C):
                arrive[f][k].append(done[k])
            evs.append(self._chain(s, f, c.count_node[s, n] * b, int(c.count_rank[s, f]), f"rdma:{s}>{f}", done))
        fwd = self._fwd()
        for f in range(ep):  # relay forwards chunk k once chunk k of every source is in (in order per target)
            for r in range(ep):
                if fwd[f, r] and arrive[f][0]:
                    evs.append(env.process(self._pipe(f, r, fwd[f, r] * b, int(fwd[f, r]), f"fwd:{f}>{r}",
                                                      arrive[f])))
        yield env.all_of(evs)

    def _normal_combine(self):
        c, b, env, C = self.c, self.b, self.env, self.chunks
        ep = len(c.ranks)
        evs: list[simpy.Event] = []
        for s in range(ep):
            self.tokens_self += int(c.count_rank[s, s])
            for r in np.flatnonzero(c.rank_node == c.rank_node[s]):
                n = int(c.count_rank[s, r])
                if r != s and n:
                    evs.append(self._x(int(r), s, n * b, n, f"nvl:{r}>{s}"))
        fwd = self._fwd()
        gathered = {f: [[] for _ in range(C)] for f in range(ep)}
        for f in range(ep):  # targets send expert outputs to the relay over NVLink, in chunks
            for r in range(ep):
                if fwd[f, r]:
                    done = [env.event() for _ in range(C)]
                    for k in range(C):
                        gathered[f][k].append(done[k])
                    evs.append(self._chain(r, f, fwd[f, r] * b, 0, f"gat:{r}>{f}", done))
        for s, n, f in self._remote_pairs():  # relay reduces, one IB message per token back to the source
            pairs = int(c.count_rank[s, c.rank_node == n].sum())
            evs.append(env.process(self._pipe(f, s, c.count_node[s, n] * b, pairs, f"rdma:{f}>{s}", gathered[f])))
        yield env.all_of(evs)


def start_ep(env: simpy.Environment, net: FlowNetwork, topo: Topology, counts: EpCounts, *, kind: str,
             mode: str = "normal", dtype: str = "fp8", hidden: int = 7168, chunks: int = 8,
             taper: bool = False) -> simpy.Process:
    """Start one dispatch/combine inside a caller's env; the returned Process fires when it completes."""
    if mode not in ("normal", "low-latency"):
        raise ConfigError(f"mode must be 'normal' or 'low-latency', got {mode!r}")
    job = _Ep(env, net, topo, counts, kind=kind, mode=mode, b=token_bytes(kind, mode, dtype, hidden),
              chunks=chunks, taper=taper)
    proc = env.process(job.run())
    proc.job = job  # type: ignore[attr-defined]
    return proc


def deepep_logical_bytes(c: EpCounts, *, kind: str, mode: str, b: float) -> tuple[float, float]:
    """(RDMA, NVLink) bytes per rank as DeepEP's tests count them (see module docstring)."""
    ep = len(c.ranks)
    if mode == "low-latency":
        v = float(c.sel_rank.sum()) * b / ep
        return v, v
    return float(c.count_node.sum()) * b / ep, float(c.count_rank.sum()) * b / ep


# ------------------------------------------------------------------ low-latency transports and the TPOT limit
def ll_path(topo: Topology, src: int, dst: int, transport: str = "nvlink") -> tuple[int, ...]:
    """Links a low-latency message takes.

    ``nvlink``: DeepEP's ``allow_nvlink_for_low_latency_mode`` (deepseek-ai/DeepEP #173, June 2025): peers of
    the own node over NVLink, others over IB as the topology routes them (PXN relay across planes).
    ``rdma``: DeepEP's original pure-RDMA kernels (Feb 2025, csrc/kernels/internode_ll.cu: every message to
    another rank is an IBGDA put, own node included; no NVLink, so no PXN relay either): the message leaves
    through the sender's NIC onto the wire and enters through the receiver's NIC, even inside a node (two GPUs
    of a node have different NICs: the bytes cross both NIC ports and the switch). Between the two NICs the
    fabric is taken as connecting any pair (a leaf-to-leaf crossing is priced on the leaves' up/down links,
    also across planes, where DeepEP's pure-RDMA runs need a fabric that joins them). Two GPUs behind one NIC
    loop back inside it (PCIe out, PCIe in)."""
    if transport not in LL_TRANSPORTS:
        raise ConfigError(f"ll transport {transport!r} unknown (one of {LL_TRANSPORTS})")
    if transport == "nvlink" or topo.cfg.nic is None or src == dst:
        return topo.path(src, dst)
    ns, nd = topo.node_of(src), topo.node_of(dst)
    nic_s, nic_d = ("nic", ns, topo.nic_of(src)), ("nic", nd, topo.nic_of(dst))
    out = topo.link(("gpu", src), nic_s)
    into = topo.link(nic_d, ("gpu", dst))
    if nic_s == nic_d:
        return (out, into)
    leaf_s, leaf_d = _next_of(topo, nic_s, "leaf"), _next_of(topo, nic_d, "leaf")
    hops = [out, topo.link(nic_s, leaf_s)]
    spine_s, spine_d = _next_of(topo, leaf_s, "spine"), _next_of(topo, leaf_d, "spine")
    if leaf_s != leaf_d and spine_s is not None and spine_d is not None:
        hops += [topo.link(leaf_s, spine_s), topo.link(spine_d, leaf_d)]
    return tuple(hops + [topo.link(leaf_d, nic_d), into])


def _next_of(topo: Topology, node: tuple, kind: str) -> tuple | None:
    """The switch of ``kind`` that ``node`` links up to (its leaf, a leaf's spine), or None."""
    return next((b for b in topo.graph.successors(node) if b[0] == kind), None)


def ll_link_bound(topo: Topology, c: EpCounts, *, kind: str, dtype: str, hidden: int, transport: str = "nvlink"
                  ) -> tuple[float, dict[str, float]]:
    """Low-latency dispatch/combine as the busiest link's bytes / capacity + the longest path latency + the
    kernel latency: every (token, expert) selection is its own message (``sel_rank``), over ``ll_path``.
    Returns (seconds, bytes per link class)."""
    b = token_bytes(kind, "low-latency", dtype, hidden)
    ep = len(c.ranks)
    load = np.zeros(len(topo.links))
    lat = 0.0
    for s in range(ep):
        for r in range(ep):
            n = int(c.sel_rank[s, r])
            if r == s or not n:
                continue
            a, d = (c.ranks[s], c.ranks[r]) if kind == "dispatch" else (c.ranks[r], c.ranks[s])
            p = ll_path(topo, a, d, transport)
            for lid in p:
                load[lid] += n * b
            lat = max(lat, topo.path_latency(p))
    if not load.any():
        return topo.cfg.kernel_latency, {}
    cap = np.array([lk.capacity for lk in topo.links])
    by: dict[str, float] = {}
    for lk in topo.links:
        if load[lk.id]:
            by[lk.cls] = by.get(lk.cls, 0.0) + float(load[lk.id])
    return float((load / cap).max()) + lat + topo.cfg.kernel_latency, by


def tpot_limit(*, tokens: int, experts_per_token: int, hidden: float, bandwidth: float, layers: int,
               dispatch_bytes_per_elem: float = 1.0, combine_bytes_per_elem: float = 2.0,
               micro_batches: int = 2) -> dict:
    """The communication-bound decode limit of "Insights into DeepSeek-V3" (ISCA'25, arXiv 2505.09343, its TPOT
    estimate):
    each GPU sends ``tokens`` x ``experts_per_token`` copies of a ``hidden``-wide vector, FP8 out (1 B) and BF16
    back (2 B), over ``bandwidth`` B/s: t_layer = (1 + 2) B x tokens x experts x hidden / bandwidth. With two
    micro-batches overlapping compute and communication, a layer takes 2 x t_layer and TPOT = layers x 2 x
    t_layer (paper: 32 tokens, 9 experts, 7K hidden, 61 layers; 400G IB 50 GB/s -> 120.96 us, TPOT 14.76 ms,
    67 tokens/s; GB200 NVL72 900 GB/s -> 6.72 us, TPOT 0.82 ms, ~1200 tokens/s). Pure arithmetic: no latency,
    no scales, no metadata, as the paper states it."""
    t = (dispatch_bytes_per_elem + combine_bytes_per_elem) * tokens * experts_per_token * hidden / bandwidth
    tpot = layers * micro_batches * t
    return {"comm_per_layer_s": t, "layer_s": micro_batches * t, "tpot_s": tpot, "tokens_per_s": 1.0 / tpot,
            "tokens": tokens, "experts_per_token": experts_per_token, "hidden": hidden, "bandwidth_Bps": bandwidth,
            "layers": layers, "micro_batches": micro_batches,
            "source": "Insights into DeepSeek-V3 (ISCA'25, arXiv 2505.09343): EP-bound TPOT estimate"}
