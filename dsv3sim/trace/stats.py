"""Statistics of a routing trace: expert-load imbalance, nodes per token, experts per node, correlations.

Definitions (all per MoE layer unless said; "selection" = one of a token's top-k experts):
- load[l, e]: selections of expert e in layer l; ``expert_load_max_over_mean`` = max_e load / mean_e load,
  reported per layer and for the worst layer (the quantity EPLB balances; DeepSeek-V3 §3.4 / EPLB README).
- nodes_per_token[l, t]: distinct nodes among token t's experts in layer l under the trace's EP layout;
  node-limited routing keeps it <= M (DeepSeek-V3 §2.1.2, M = 4 for V3).
- experts per node per token: selections / touched nodes, over (layer, token, touched node). DeepSeek-V3
  §3.2.2: with IB 50 GB/s vs NVLink 160 GB/s a token can use 3.2 experts per node at no extra NVLink cost,
  so at 4 nodes up to 13 experts (4 x 3.2) for the IB cost of today's 8.
- mutual information (bits) between the expert of one selection and that of another: across adjacent MoE
  layers for the same token (``cross_layer_mi_bits``), and across adjacent tokens of a sequence in the same
  layer (``within_seq_mi_bits``); plug-in estimate, biased upward by about (E-1)^2 / (2 N ln 2) bits.
- gpu_recv[l, g]: tokens of layer l that GPU g receives (one copy per token however many of its experts the
  token chose; DeepEP dispatch) and its max/mean — the straggler of the all-to-all; node_recv likewise per node.
- ``load_drift_tv``: mean total-variation distance between the load share of each of 8 consecutive token
  windows and the whole trace (0 = no drift; sampling noise alone gives a positive floor).
"""

from __future__ import annotations

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.comm_bytes import comm_bytes, distinct_per_row, first_occurrence
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import RoutingTrace

# DeepSeek-V3 report §3.2.2 (arXiv 2412.19437): NVLink 160 GB/s vs IB 50 GB/s -> 3.2 experts/node, 4 nodes -> 13.
DEEPSEEK_V3_REFERENCE = {
    "experts_per_node_at_equal_cost": 3.2, "max_nodes": 4, "max_experts_at_same_ib_cost": 13,
    "selected_experts": 8, "source": "DeepSeek-V3 technical report (arXiv 2412.19437) §3.2.2",
}
N_DRIFT_WINDOWS = 8


def max_over_mean(loads: np.ndarray) -> np.ndarray:
    """[L, E] -> [L]: max_e / mean_e of each layer's loads (1.0 = perfectly balanced; nan for an empty layer)."""
    m = loads.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, loads.max(axis=1) / np.where(m > 0, m, 1), np.nan)


def mutual_information_bits(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """MI (bits) of paired selections: a [N, k], b [N, k] expert ids; every (a_i, b_j) pair of a row counts."""
    if a.shape[0] == 0:
        return 0.0
    pa = np.repeat(a, b.shape[1], axis=1).ravel()
    pb = np.tile(b, (1, a.shape[1])).ravel()
    joint = np.bincount(pa * n + pb, minlength=n * n).reshape(n, n).astype(np.float64)
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / np.outer(px, py)[nz])).sum())


def adjacent_in_sequence(trace: RoutingTrace) -> np.ndarray:
    """Indices t such that tokens t and t+1 belong to the same sequence (all t when seq_ids is absent)."""
    T = trace.n_tokens
    if T < 2:
        return np.zeros(0, dtype=np.int64)
    if trace.seq_ids is None:
        return np.arange(T - 1)
    return np.nonzero(trace.seq_ids[1:] == trace.seq_ids[:-1])[0]


def correlation_stats(trace: RoutingTrace) -> dict:
    ids, E = trace.expert_ids, trace.n_experts
    cross = [mutual_information_bits(ids[l], ids[l + 1], E) for l in range(trace.n_layers - 1)]
    adj = adjacent_in_sequence(trace)
    within = [mutual_information_bits(ids[l][adj], ids[l][adj + 1], E) for l in range(trace.n_layers)]
    share = trace.loads() / max(trace.n_tokens * trace.topk, 1)                    # [L, E]
    tv = []
    for w in np.array_split(np.arange(trace.n_tokens), N_DRIFT_WINDOWS):
        if len(w) == 0:
            continue
        sub = ids[:, w, :].reshape(trace.n_layers, -1)
        ws = np.stack([np.bincount(r, minlength=E) for r in sub]) / sub.shape[1]  # [L, E]
        tv.append(0.5 * np.abs(ws - share).sum(axis=1).mean())
    return {"cross_layer_mi_bits": float(np.mean(cross)) if cross else None,
            "within_seq_mi_bits": float(np.mean(within)) if len(adj) else None,
            "load_drift_tv": float(np.mean(tv)) if tv else None}


def node_stats(trace: RoutingTrace, layout: EpLayout, node_limit: int | None) -> dict:
    ids = trace.expert_ids
    nodes = layout.node_of(ids)                                        # [L, T, k]
    npt = distinct_per_row(nodes, layout.n_nodes)                      # [L, T]
    gpt = distinct_per_row(layout.gpu_of(ids), layout.ep)              # [L, T]
    hist = np.bincount(npt.ravel(), minlength=layout.n_nodes + 1)[1:]  # tokens touching 1..n_nodes nodes
    # experts of one token on one node: run lengths of the sorted node ids of each (l, t)
    srt, first = first_occurrence(nodes)                               # [L, T, k]
    starts = np.nonzero(first.reshape(-1))[0]                          # flat index of each run start
    touched = np.diff(np.append(starts, first.size))                   # run lengths (each row starts a run)
    L = ids.shape[0]
    node_recv = np.stack([np.bincount(srt[l][first[l]], minlength=layout.n_nodes) for l in range(L)])  # [L, nodes]
    gsrt, gfirst = first_occurrence(layout.gpu_of(ids))
    gpu_recv = np.stack([np.bincount(gsrt[l][gfirst[l]], minlength=layout.ep) for l in range(L)])      # [L, ep]
    g_mom, n_mom = max_over_mean(gpu_recv.astype(np.float64)), max_over_mean(node_recv.astype(np.float64))
    return {
        "layout": layout.to_dict(),
        "node_limit": node_limit,
        "nodes_per_token_hist": {str(i + 1): int(c) for i, c in enumerate(hist)},
        "nodes_per_token_mean": float(npt.mean()),
        "nodes_per_token_mean_by_layer": [float(x) for x in npt.mean(axis=1)],
        "max_nodes_per_token": int(npt.max()),
        "node_limit_respected": None if node_limit is None else bool(npt.max() <= node_limit),
        "gpus_per_token_mean": float(gpt.mean()),
        "max_gpus_per_token": int(gpt.max()),
        "experts_per_node_per_token_mean": float(touched.mean()),
        "experts_per_node_per_token_max": int(touched.max()),
        "gpu_recv_tokens": gpu_recv.tolist(),
        "gpu_recv_max_over_mean_by_layer": [float(x) for x in g_mom],
        "gpu_recv_max_over_mean": float(np.nanmax(g_mom)),
        "node_recv_max_over_mean_by_layer": [float(x) for x in n_mom],
        "node_recv_max_over_mean": float(np.nanmax(n_mom)),
        "deepseek_v3_reference": DEEPSEEK_V3_REFERENCE,
    }


def _f(x) -> float | None:
    """A JSON-safe float: None for NaN/inf (a ratio over an empty layer or step is undefined, not a number)."""
    x = float(x)
    return x if np.isfinite(x) else None


def trace_stats(trace: RoutingTrace, *, layout: EpLayout | None = None, hidden: int | None = None,
                dispatch_dtype: str = "fp8") -> dict:
    """All statistics of ``trace`` as a JSON-ready dict; ``layout`` overrides the trace's own EP layout."""
    loads = trace.loads()
    mom = max_over_mean(loads)
    worst = int(np.nanargmax(mom)) if np.isfinite(mom).any() else 0
    out: dict = {
        "source": trace.meta.get("source"), "model": trace.meta.get("model"),
        "n_layers": trace.n_layers, "layers": [int(x) for x in trace.layers], "n_experts": trace.n_experts,
        "n_tokens": trace.n_tokens, "topk": trace.topk, "has_tokens": trace.has_tokens,
        "expert_load": loads.tolist(),
        "expert_load_max_over_mean_by_layer": [_f(x) for x in mom],
        "expert_load_max_over_mean": _f(mom[worst]),
        "expert_load_max_over_mean_layer": int(trace.layers[worst]),
        "expert_load_max_over_mean_mean": _f(np.nanmean(mom)) if np.isfinite(mom).any() else None,
        "expert_load_cv_by_layer": [float(x) for x in loads.std(axis=1) / np.maximum(loads.mean(axis=1), 1e-300)],
        "node_limit": trace.node_limit,
    }
    if trace.step_counts is not None:
        steps_mom = max_over_mean(trace.step_counts.reshape(-1, trace.n_experts)).reshape(trace.step_counts.shape[:2])
        # a step that recorded no load has no ratio: null, not NaN
        out["expert_load_max_over_mean_by_step"] = [_f(np.nanmax(r)) if np.isfinite(r).any() else None
                                                    for r in steps_mom]
    if not trace.has_tokens:
        return out
    groups = trace.group_ids()
    gpt = distinct_per_row(groups, trace.n_group)
    out["n_group"] = trace.n_group
    out["groups_per_token_mean"] = float(gpt.mean())
    out["max_groups_per_token"] = int(gpt.max())
    out.update(correlation_stats(trace))
    layout = layout or trace.layout
    if layout is None:
        return out
    if layout.n_experts != trace.n_experts:
        raise ConfigError(f"layout has {layout.n_experts} experts, trace has {trace.n_experts}")
    # the recorded node limit refers to the capture's own layout; another layout has no limit in force
    out.update(node_stats(trace, layout, trace.node_limit if layout == trace.layout else None))
    if hidden is None:
        hidden = trace.meta.get("hidden_size")
    if hidden:
        out["comm"] = comm_bytes(trace.expert_ids, layout, int(hidden), dispatch_dtype)
    return out
