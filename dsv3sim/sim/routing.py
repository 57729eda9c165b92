"""Expert routing for the all-to-all: uniform node-limited random routing, or a captured trace.

A routing is an int array ``[ep, tokens_per_rank, topk]`` of expert ids (``-1`` = no expert), rank ``s``'s
tokens in row ``s``. Experts are placed contiguously: expert ``e`` lives on EP rank ``e // (E / ep)``.

Uniform node-limited routing (DeepSeek-V3 §2.1.2 "node-limited routing", M <= 4 nodes per token): each
token picks ``min(M, nodes)`` distinct nodes of the EP group uniformly, then ``topk`` distinct experts
uniformly among the experts on those nodes (Floyd's sampling, vectorised). DeepEP's own benchmark draws
random scores and takes the top-M groups then top-k experts, which is the same in distribution up to
the ordering of scores (deepseek-ai/DeepEP tests/test_internode.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.importers import load_trace
from dsv3sim.trace.routing_trace import open_npz


def _floyd(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """``k`` distinct ints in ``[0, n)`` per row, each k-subset equally likely (Floyd's algorithm)."""
    out = np.empty((rows, k), dtype=np.int64)
    for j, top in enumerate(range(n - k, n)):
        t = rng.integers(0, top + 1, size=rows)
        if j:
            dup = (out[:, :j] == t[:, None]).any(axis=1)
            t = np.where(dup, top, t)
        out[:, j] = t
    return out


def uniform_routing(*, ep: int, tokens_per_rank: int, n_experts: int, topk: int, gpus_per_node: int,
                    max_nodes: int | None = None, seed: int = 0) -> np.ndarray:
    """Random node-limited top-k routing, shape ``[ep, tokens_per_rank, topk]``."""
    if n_experts % ep:
        raise ConfigError(f"n_experts={n_experts} must be a multiple of ep={ep}")
    if not 0 < topk <= n_experts:
        raise ConfigError(f"topk={topk} must be in 1..n_experts={n_experts}")
    n_nodes = max(1, ep // gpus_per_node) if ep % gpus_per_node == 0 else 1
    m = n_nodes if max_nodes is None else max(1, min(max_nodes, n_nodes))
    per_node = n_experts // n_nodes
    if m * per_node < topk:
        raise ConfigError(f"topk={topk} experts do not fit in max_nodes={m} nodes of {per_node} experts each")
    rng = np.random.default_rng(seed)
    rows = ep * tokens_per_rank
    nodes = _floyd(rng, rows, n_nodes, m) if m < n_nodes else np.broadcast_to(np.arange(n_nodes), (rows, n_nodes))
    slots = _floyd(rng, rows, m * per_node, topk)
    chosen_node = np.take_along_axis(np.asarray(nodes), slots // per_node, axis=1)
    experts = chosen_node * per_node + slots % per_node
    return experts.reshape(ep, tokens_per_rank, topk).astype(np.int32)


def load_routing(path: str | Path, *, ep: int, tokens_per_rank: int, layer: int = 0) -> np.ndarray:
    """Read expert ids ``[tokens, k]`` (or ``[layers, tokens, k]``) and deal ``tokens_per_rank`` to each rank.

    Uses the trace package's reader when it exists (``dsv3sim.trace``); otherwise any ``.npy``/``.npz``
    (key ``topk_idx``/``expert_ids`` or the first array) or whitespace/comma text file of expert ids.
    Rank ``s`` takes rows ``s*N .. s*N+N-1`` modulo the trace length.
    """
    arr = _read_ids(Path(path), layer)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError(f"{path}: expected expert ids [tokens, k] (or [layers, tokens, k]), got shape {arr.shape}")
    idx = np.arange(ep * tokens_per_rank) % arr.shape[0]
    return arr[idx].reshape(ep, tokens_per_rank, arr.shape[1]).astype(np.int32)


def _read_ids(p: Path, layer: int) -> np.ndarray:
    arr = read_all_ids(p)
    if arr.ndim == 3:
        if not 0 <= layer < arr.shape[0]:
            raise ConfigError(f"{p}: layer {layer} not in 0..{arr.shape[0] - 1}")
        arr = arr[layer]
    return arr


def trace_layer_count(p: Path) -> int:
    """MoE layers in a routing trace file (1 for a plain [tokens, k] array)."""
    arr = read_all_ids(p)
    return arr.shape[0] if arr.ndim == 3 else 1


def _is_routing_trace(p: Path) -> bool:
    """A dsv3sim trace .npz carries a 'meta' array (``trace/FORMAT.md``); any other .npz is a plain id array."""
    return "meta" in open_npz(p)


@functools.lru_cache(maxsize=16)
def read_all_ids(p: Path) -> np.ndarray:
    """Expert ids of a trace file: [layers, tokens, k] or [tokens, k] (read once per process; do not modify)."""
    if not p.is_file():
        raise FileNotFoundError(f"routing trace {p} not found")
    if p.suffix in (".json", ".pt", ".pth") or (p.suffix == ".npz" and _is_routing_trace(p)):
        tr = load_trace(p)  # dsv3sim.trace: RoutingTrace.expert_ids [L, T, k]
        if tr.expert_ids is None:
            raise ConfigError(f"{p}: trace holds only expert loads, not per-token expert ids")
        return np.asarray(tr.expert_ids)
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            z = open_npz(p)
            if not z:
                raise ConfigError(f"{p}: the .npz holds no arrays")
            arr = z[next((k for k in ("topk_idx", "expert_ids", "topk_ids") if k in z), min(z))]
        else:
            arr = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(p)):
            raise
        raise ConfigError(f"{p}: not a readable routing trace ({' '.join(str(e).split())[:200]})") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu" or arr.ndim not in (2, 3) or arr.size == 0 or arr.min() < 0:
        raise ConfigError(f"{p}: expert ids must be a non-empty [tokens, k] or [layers, tokens, k] array of "
                         f"integers >= 0, got {arr.dtype} shape {arr.shape}")
    return arr
