"""Node-limited dispatch plan: where each routed token goes and the bytes it puts on IB and NVLink.

Inputs for one MoE layer: expert_ids[T, k] (logical experts a token chose, e.g. from a routing trace),
src_rank[T] (EP rank that holds the token), a placement row phy2log[R] (EPLB layout: replica p lives on GPU
p // (R/U)) and the node size ``gpus_per_node``. U = EP GPUs, n_nodes = U / gpus_per_node.

Replica choice (deterministic, for experts with several replicas):
  "spread"  the j-th (token, slot) that picks expert e, counting in token order, goes to its replica
            j mod count(e), replicas in log2phy order -- splits every expert's load evenly over its
            replicas, which is what EPLB's balancing assumes (load / logcnt per replica).
  "nearest" a replica on the source GPU, else on the source node, else any; among equals the
            (j mod n)-th as above -- fewer IB bytes, load follows where tokens come from.

DeepEP "normal" (internode) accounting (deepseek-ai/DeepEP README; DeepSeek-V3 §3.2.2; same as
dsv3sim.trace.comm_bytes but with the source GPU known): a token leaves its source GPU (node n_s, local
index l) once per target node n != n_s over InfiniBand, to the relay GPU (n, l); the relay forwards it over
NVLink to every target GPU of node n other than itself. On the source node the source GPU sends over NVLink
to every target GPU other than itself. A GPU gets one copy however many of its experts the token chose.
Combine returns the same messages backwards. Node-limited routing (V3 §2.1.2, at most M=4 nodes per
token) is the router's job; the plan reports the largest node count it saw so callers can check it.

Message sizes: dsv3sim.trace.comm_bytes (FP8 dispatch = hidden + hidden/128*4 bytes, BF16 combine 2*hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsv3sim.config.errors import ConfigError, InfeasibleError
from dsv3sim.trace.comm_bytes import combine_message_bytes, dispatch_message_bytes

CHOICES = ("spread", "nearest")


@dataclass(frozen=True, kw_only=True, slots=True)
class DispatchPlan:
    """Per-token targets and per-link-class traffic of one layer's dispatch (+ combine)."""

    target_phy: np.ndarray        # [T, k] chosen replica (physical expert id)
    target_gpu: np.ndarray        # [T, k] GPU of that replica
    target_nodes: np.ndarray      # [T, n_nodes] bool: the token is sent to this node
    target_gpus: np.ndarray       # [T, U] bool: the token lands on this GPU (one copy per GPU)
    ib_sends: np.ndarray          # [T] IB messages (target nodes other than the source node)
    nvlink_sends: np.ndarray      # [T] NVLink messages (intra-node forwards and local sends)
    ib_send_matrix: np.ndarray    # [n_nodes, n_nodes] IB messages src node -> dst node
    tokens_per_gpu: np.ndarray    # [U] token copies each GPU receives (its expert work, in tokens)
    slots_per_gpu: np.ndarray     # [U] (token, expert) pairs each GPU computes
    dispatch_bytes: int           # one dispatch message
    combine_bytes: int            # one combine message
    max_nodes_per_token: int

    @property
    def ib_bytes(self) -> dict:
        n = int(self.ib_sends.sum())
        return {"dispatch": n * self.dispatch_bytes, "combine": n * self.combine_bytes,
                "total": n * (self.dispatch_bytes + self.combine_bytes)}

    @property
    def nvlink_bytes(self) -> dict:
        n = int(self.nvlink_sends.sum())
        return {"dispatch": n * self.dispatch_bytes, "combine": n * self.combine_bytes,
                "total": n * (self.dispatch_bytes + self.combine_bytes)}

    def summary(self) -> dict:
        t = len(self.ib_sends)
        return {"tokens": t, "ib_sends_per_token": float(self.ib_sends.mean()) if t else 0.0,
                "nvlink_sends_per_token": float(self.nvlink_sends.mean()) if t else 0.0,
                "nodes_per_token_mean": float(self.target_nodes.sum(1).mean()) if t else 0.0,
                "max_nodes_per_token": self.max_nodes_per_token,
                "ib_bytes": self.ib_bytes, "nvlink_bytes": self.nvlink_bytes,
                "max_ib_bytes_out_per_node": int(self.ib_send_matrix.sum(1).max()) * self.dispatch_bytes,
                "max_ib_bytes_in_per_node": int(self.ib_send_matrix.sum(0).max()) * self.dispatch_bytes,
                "tokens_per_gpu_max_over_mean": _ratio(self.tokens_per_gpu),
                "slots_per_gpu_max_over_mean": _ratio(self.slots_per_gpu)}


def _ratio(a: np.ndarray) -> float:
    return float(a.max() / a.mean()) if a.size and a.mean() > 0 else 0.0


def _occurrence(keys: np.ndarray) -> np.ndarray:
    """For a flat int array, how many earlier entries have the same value (0, 1, 2, ...), in order."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
    run_start = np.repeat(start, np.diff(np.r_[start, len(sk)]))
    occ = np.empty_like(keys)
    occ[order] = np.arange(len(sk)) - run_start
    return occ


def dispatch_plan(expert_ids, src_rank, phy2log, *, n_gpus: int, gpus_per_node: int, hidden: int = 7168,
                  dispatch_dtype: str = "fp8", choice: str = "spread") -> DispatchPlan:
    """Plan one layer's dispatch (module docstring). phy2log: [R] (one layer of EPLB's map)."""
    ids = np.asarray(expert_ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ConfigError(f"expert_ids must be [tokens, k], got shape {ids.shape}")
    T, k = ids.shape
    src = np.broadcast_to(np.asarray(src_rank, dtype=np.int64), (T,))
    p2l = np.asarray(phy2log, dtype=np.int64).reshape(-1)
    _check_plan_inputs(ids, src, p2l, n_gpus=n_gpus, gpus_per_node=gpus_per_node, choice=choice)
    gpu_of_phy = np.arange(len(p2l)) // (len(p2l) // n_gpus)
    phy = _choose_replicas(ids, src, p2l, gpu_of_phy, gpus_per_node, choice)
    gpu = gpu_of_phy[phy]
    tgt_gpus = np.zeros((T, n_gpus), dtype=bool)
    tgt_gpus[np.arange(T)[:, None], gpu] = True
    ib, nvl, ib_matrix, tgt_nodes = _sends(tgt_gpus, gpu, src, gpus_per_node)
    return DispatchPlan(
        target_phy=phy, target_gpu=gpu, target_nodes=tgt_nodes, target_gpus=tgt_gpus,
        ib_sends=ib, nvlink_sends=nvl, ib_send_matrix=ib_matrix,
        tokens_per_gpu=tgt_gpus.sum(0), slots_per_gpu=np.bincount(gpu.reshape(-1), minlength=n_gpus),
        dispatch_bytes=dispatch_message_bytes(hidden, dispatch_dtype), combine_bytes=combine_message_bytes(hidden),
        max_nodes_per_token=int(tgt_nodes.sum(1).max()) if T else 0)


def _check_plan_inputs(ids: np.ndarray, src: np.ndarray, p2l: np.ndarray, *, n_gpus: int, gpus_per_node: int,
                       choice: str) -> None:
    T, R, n_log = ids.shape[0], len(p2l), int(p2l.max()) + 1
    if choice not in CHOICES:
        raise ConfigError(f"replica choice must be one of {CHOICES}, got {choice!r}")
    if gpus_per_node <= 0:
        raise ConfigError(f"gpus_per_node must be > 0, got {gpus_per_node}")
    if T and (ids.min() < 0 or ids.max() >= n_log):
        raise ConfigError(f"expert ids must lie in 0..{n_log - 1} (the placement's logical experts), "
                         f"got {ids.min()}..{ids.max()}")
    if np.bincount(p2l, minlength=n_log).min() == 0:
        raise ValueError("placement leaves some logical expert without a replica")
    if n_gpus <= 0 or R % n_gpus or n_gpus % gpus_per_node:
        raise InfeasibleError(f"need replicas ({R}) % gpus ({n_gpus}) == 0 and gpus % gpus_per_node "
                              f"({gpus_per_node}) == 0")
    if T and (src.min() < 0 or src.max() >= n_gpus):
        raise ConfigError(f"source ranks must lie in 0..{n_gpus - 1}, got {src.min()}..{src.max()}")


def _choose_replicas(ids: np.ndarray, src: np.ndarray, p2l: np.ndarray, gpu_of_phy: np.ndarray,
                     gpus_per_node: int, choice: str) -> np.ndarray:
    """[T, k] physical replica of each selection: "spread" = the j-th selection of an expert takes replica
    j mod count; otherwise the nearest replicas (same GPU, then same node) in turn."""
    T, k = ids.shape
    order = np.argsort(p2l, kind="stable")  # replicas of each expert in physical order
    cnt = np.bincount(p2l, minlength=int(p2l.max()) + 1)
    first = np.r_[0, np.cumsum(cnt)[:-1]]
    flat = ids.reshape(-1)
    occ = _occurrence(flat)
    if choice == "spread":
        return order[first[flat] + occ % cnt[flat]].reshape(T, k)
    phy = np.empty_like(flat)
    for i, (e, s, j) in enumerate(zip(flat, np.repeat(src, k), occ)):
        reps = order[first[e]:first[e] + cnt[e]]
        g = gpu_of_phy[reps]
        cls = np.where(g == s, 0, np.where(g // gpus_per_node == s // gpus_per_node, 1, 2))
        best = reps[cls == cls.min()]
        phy[i] = best[j % len(best)]
    return phy.reshape(T, k)


def _sends(tgt_gpus: np.ndarray, gpu: np.ndarray, src: np.ndarray, gpus_per_node: int):
    """(IB sends per token, NVLink sends per token, node x node IB send matrix, target nodes [T, nodes])."""
    T, n_gpus = tgt_gpus.shape
    n_nodes = n_gpus // gpus_per_node
    tgt_nodes = np.zeros((T, n_nodes), dtype=bool)
    tgt_nodes[np.arange(T)[:, None], gpu // gpus_per_node] = True
    src_node, src_local = src // gpus_per_node, src % gpus_per_node
    # IB: one per target node other than the source node
    ib_mask = tgt_nodes.copy()
    ib_mask[np.arange(T), src_node] = False
    ib = ib_mask.sum(1)
    # NVLink: per target node, the target GPUs other than that node's entry GPU (relay or source itself)
    entry = np.arange(n_nodes)[None, :] * gpus_per_node + src_local[:, None]      # [T, n_nodes]
    entry_hit = tgt_gpus[np.arange(T)[:, None], entry] & tgt_nodes                  # entry GPU is a target
    nvl = tgt_gpus.sum(1) - entry_hit.sum(1)
    ib_matrix = np.zeros((n_nodes, n_nodes), dtype=np.int64)
    np.add.at(ib_matrix, (np.repeat(src_node, n_nodes).reshape(T, n_nodes)[ib_mask],
                          np.broadcast_to(np.arange(n_nodes), (T, n_nodes))[ib_mask]), 1)
    return ib, nvl, ib_matrix, tgt_nodes


def source_ranks(n_tokens: int, n_gpus: int, how: str = "blocks") -> np.ndarray:
    """EP rank holding each token when a trace does not say: "blocks" = contiguous equal slices of the batch
    (each data-parallel attention rank holds its own sequences), "cyclic" = token t on rank t mod U."""
    if n_gpus <= 0 or n_tokens < 0:
        raise ConfigError(f"need n_gpus > 0 and n_tokens >= 0, got {n_gpus}, {n_tokens}")
    t = np.arange(n_tokens, dtype=np.int64)
    if how == "blocks":
        return t * n_gpus // max(n_tokens, 1)
    if how == "cyclic":
        return t % n_gpus
    raise ConfigError(f"source layout must be 'blocks' or 'cyclic', got {how!r}")


def dispatch_plan_for_trace(trace, layer: int, phy2log, *, n_gpus: int, gpus_per_node: int,
                            hidden: int = 7168, dispatch_dtype: str = "fp8", choice: str = "spread",
                            sources: str = "blocks") -> DispatchPlan:
    """Plan layer ``layer`` (index into the trace) of a dsv3sim.trace RoutingTrace with per-token expert ids;
    ``phy2log`` is that layer's row (or the full [L, R] map, indexed by ``layer``)."""
    if getattr(trace, "expert_ids", None) is None:
        raise ConfigError("this trace holds only expert loads, not per-token expert ids; a dispatch plan needs "
                         "a token-level trace (.npz from dsv3sim trace capture/synth)")
    p2l = np.asarray(phy2log)
    row = p2l[layer] if p2l.ndim == 2 else p2l
    ids = trace.expert_ids[layer]
    return dispatch_plan(ids, source_ranks(ids.shape[0], n_gpus, sources), row, n_gpus=n_gpus,
                         gpus_per_node=gpus_per_node, hidden=hidden, dispatch_dtype=dispatch_dtype, choice=choice)
