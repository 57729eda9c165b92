"""Expert placement with redundant experts, as DeepSeek's EPLB does it (hierarchical and global policies).

Source: deepseek-ai/EPLB ``eplb.py`` and README; DeepSeek-V3 §3.4 (redundant experts, deployed per node
group). Dimension legend: L = MoE layers, E = logical experts, R = physical replicas (``num_replicas``),
G = expert groups, N = nodes, U = GPUs; R % U == 0, U % N == 0.

Hierarchical policy (when N divides G; exploits group-limited routing, tokens of a group stay on a node):
  1. pack the G groups onto N nodes, G/N groups per node, balancing the nodes' summed load;
  2. on each node, replicate its E/N experts into R/N replicas: each extra replica goes to the expert whose
     load per replica (load / count) is largest now (minimises the max replica load greedily);
  3. pack each node's R/N replicas onto its U/N GPUs, R/U per GPU, balancing GPU load (a replica carries
     load / count of its expert).
Global policy (otherwise): the same with one group and one node: replicate over all experts, pack to GPUs.

Balanced packing (steps 1, 3): items in descending weight order, each to the lightest pack that still has
room (greedy LPT with equal item counts per pack).

Deterministic tie-breaks (the reference leaves some to torch's unstable sort): descending order is a stable
sort (equal weights keep index order); the lightest pack with room is the lowest-numbered one among equals;
the expert to replicate is the lowest-numbered among equal loads per replica. Float64 throughout.

Outputs (EPLB's names and layouts): phy2log[L, R] logical expert of each replica (replica p lives on GPU
p // (R/U)); log2phy[L, E, X] replica ids of each expert, -1 padded, X = max count; logcnt[L, E].
"""

from __future__ import annotations

import numpy as np

from dsv3sim.config.errors import ConfigError, InfeasibleError


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """[X, n] weights -> (pack_index[X, n], rank_in_pack[X, n]); n/num_packs items per pack, greedy LPT."""
    n_rows, n = weight.shape
    if num_packs <= 0 or n % num_packs:
        raise InfeasibleError(f"balanced packing: {n} items do not split evenly into {num_packs} packs")
    per_pack = n // num_packs
    if per_pack == 1:
        return np.tile(np.arange(n, dtype=np.int64), (n_rows, 1)), np.zeros((n_rows, n), dtype=np.int64)
    pack_index = np.full((n_rows, n), -1, dtype=np.int64)
    rank_in_pack = np.full((n_rows, n), -1, dtype=np.int64)
    order = np.argsort(-weight, axis=1, kind="stable")   # descending, ties by index
    for i in range(n_rows):
        load = np.zeros(num_packs)
        count = np.zeros(num_packs, dtype=np.int64)
        for item in order[i]:
            open_load = np.where(count < per_pack, load, np.inf)
            p = int(np.argmin(open_load))                    # lightest open pack, lowest index on ties
            pack_index[i, item] = p
            rank_in_pack[i, item] = count[p]
            load[p] += weight[i, item]
            count[p] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[X, n_log] loads -> (phy2log[X, num_phy], replica rank[X, num_phy], logcnt[X, n_log]).

    Replica p < n_log is expert p; each further replica goes to argmax(load / count) (V3 §3.4: duplicate
    the high-load experts)."""
    n_rows, n_log = weight.shape
    if num_phy < n_log:
        raise InfeasibleError(f"{num_phy} replicas cannot hold {n_log} logical experts")
    phy2log = np.tile(np.arange(num_phy, dtype=np.int64), (n_rows, 1))
    rank = np.zeros((n_rows, num_phy), dtype=np.int64)
    logcnt = np.ones((n_rows, n_log), dtype=np.int64)
    rows = np.arange(n_rows)
    for p in range(n_log, num_phy):
        hot = np.argmax(weight / logcnt, axis=1)             # first max on ties
        phy2log[:, p] = hot
        rank[:, p] = logcnt[rows, hot]
        logcnt[rows, hot] += 1
    return phy2log, rank, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


def _hierarchical(weight: np.ndarray, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    L, E = weight.shape
    group_size = E // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_phy // num_gpus
    # 1. groups -> nodes. "mlog" numbers experts node by node: node n holds mlog [n*E/N, (n+1)*E/N).
    group_load = weight.reshape(L, num_groups, group_size).sum(-1)          # [L, G]
    g_pack, g_rank = balanced_packing(group_load, num_nodes)
    log2mlog = (((g_pack * groups_per_node + g_rank) * group_size)[:, :, None]
                + np.arange(group_size)).reshape(L, E)                      # [L, E]
    mlog2log = _inverse(log2mlog)
    # 2. replicate within each node: [L*N, E/N] -> [L*N, R/N]
    mlog_load = np.take_along_axis(weight, mlog2log, axis=1).reshape(L * num_nodes, E // num_nodes)
    phy2mlog, phyrank, mlogcnt = replicate_experts(mlog_load, num_phy // num_nodes)
    # 3. replicas -> GPUs of the node
    phy_load = np.take_along_axis(mlog_load / mlogcnt, phy2mlog, axis=1)    # [L*N, R/N]
    pack, rank_in_pack = balanced_packing(phy_load, num_gpus // num_nodes)
    phy2pphy = pack * per_gpu + rank_in_pack
    pphy2phy = _inverse(phy2pphy)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, axis=1)
    pphy2mlog = (pphy2mlog.reshape(L, num_nodes, -1)
                 + (np.arange(num_nodes) * (E // num_nodes))[None, :, None]).reshape(L, -1)
    pphy2log = np.take_along_axis(mlog2log, pphy2mlog, axis=1)
    pphyrank = np.take_along_axis(phyrank, pphy2phy, axis=1).reshape(L, -1)
    logcnt = np.take_along_axis(mlogcnt.reshape(L, -1), log2mlog, axis=1)
    return pphy2log, pphyrank, logcnt


def policy(num_groups: int, num_nodes: int) -> str:
    """'hierarchical' when nodes divide groups (EPLB README), else 'global'."""
    return "hierarchical" if num_groups % num_nodes == 0 else "global"


def rebalance_experts(weight, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EPLB's entry point: weight[L, E] loads -> (phy2log[L, R], log2phy[L, E, X], logcnt[L, E]) int64."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.size == 0:
        raise ConfigError(f"expert loads must be [layers, experts], got shape {np.shape(weight)}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError("expert loads must be finite and >= 0")
    L, E = w.shape
    R, G, N, U = num_replicas, num_groups, num_nodes, num_gpus
    if min(R, G, N, U) <= 0:
        raise ConfigError(f"replicas, groups, nodes, gpus must be > 0, got {R}, {G}, {N}, {U}")
    if R < E:
        raise ConfigError(f"replicas ({R}) must be >= logical experts ({E})")
    if U % N or R % U:
        raise ConfigError(f"need gpus ({U}) % nodes ({N}) == 0 and replicas ({R}) % gpus ({U}) == 0")
    if E % G:
        raise ConfigError(f"experts ({E}) must split evenly into groups ({G})")
    if policy(G, N) == "hierarchical":
        if (R // N) < (E // N) or E % N:
            raise ConfigError(f"hierarchical policy: experts ({E}) and replicas ({R}) must split over nodes ({N})")
        phy2log, phyrank, logcnt = _hierarchical(w, R, G, N, U)
    else:
        phy2log, phyrank, logcnt = _hierarchical(w, R, 1, 1, U)
    X = int(logcnt.max())
    log2phy = np.full((L, E * X), -1, dtype=np.int64)
    np.put_along_axis(log2phy, phy2log * X + phyrank, np.broadcast_to(np.arange(R), (L, R)), axis=1)
    return phy2log, log2phy.reshape(L, E, X), logcnt


def gpu_loads_after(weight, phy2log: np.ndarray, logcnt: np.ndarray, num_gpus: int) -> np.ndarray:
    """[L, U] load per GPU when each expert's load splits evenly over its replicas."""
    w = np.asarray(weight, dtype=np.float64).reshape(phy2log.shape[0], -1)
    per_replica = np.take_along_axis(w / logcnt, phy2log, axis=1)           # [L, R]
    return per_replica.reshape(phy2log.shape[0], num_gpus, -1).sum(-1)


def gpu_loads_before(weight, num_gpus: int) -> np.ndarray:
    """[L, U] load per GPU with no redundancy and contiguous placement (GPU g: experts [g*E/U, (g+1)*E/U))."""
    w = np.asarray(weight, dtype=np.float64)
    if w.shape[1] % num_gpus:
        raise ConfigError(f"contiguous placement needs experts ({w.shape[1]}) % gpus ({num_gpus}) == 0")
    return w.reshape(w.shape[0], num_gpus, -1).sum(-1)
