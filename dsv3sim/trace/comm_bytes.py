"""IB and NVLink bytes that expert-parallel dispatch + combine move per token, from routing decisions.

DeepEP "normal" (internode) accounting (deepseek-ai/DeepEP README; DeepSeek-V3 §3.2.2): a token leaves its
source GPU once per *target node* over InfiniBand, landing on the GPU of that node with the same local index
(the relay); the relay forwards it over NVLink to each target GPU of that node other than itself. The source
node is reached without IB (its relay is the source GPU). Each target GPU receives one copy however many of
its experts the token chose. Combine sends the expert outputs back along the same path.

Message sizes (DeepSeek-V3 §3.3.4 / DeepEP): FP8 dispatch = hidden bytes + one FP32 scale per 128 channels
(hidden + hidden/128*4); BF16 dispatch = 2*hidden; combine is BF16 = 2*hidden. DeepEP's RDMA token also
carries a small header (source metadata, top-k indices and weights, padded to 16 B; ``internode.cu``
``get_num_bytes_per_rdma_token``), about 1% at hidden 7168; it is not counted here.

The source GPU of a token is not part of a routing trace, so the counts are expectations over a source GPU
drawn uniformly from the EP group (what DP-attention serving and EP training give on average):
  E[IB sends]     = |target nodes| * (1 - 1/n_nodes)          (source node is one of n_nodes, uniformly)
  E[NVLink sends] = |target GPUs|  * (1 - 1/gpus_per_node)    (relay local index is uniform in the node)
Counts here are per (MoE layer, token); bytes_per_token in stats sums them over the traced MoE layers too.
"""

from __future__ import annotations

import math

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.layout import EpLayout

FP8_SCALE_BLOCK = 128   # channels per FP32 scale in DeepEP/DeepGEMM FP8 activations (V3 §3.3.2, 1x128 tiles)


def dispatch_message_bytes(hidden: int, dtype: str) -> int:
    """Bytes of one token's dispatch message: fp8 -> hidden + ceil(hidden/128)*4; bf16 -> 2*hidden."""
    if hidden <= 0:
        raise ConfigError(f"hidden size must be > 0, got {hidden}")
    if dtype == "fp8":
        return hidden + math.ceil(hidden / FP8_SCALE_BLOCK) * 4
    if dtype == "bf16":
        return 2 * hidden
    raise ConfigError(f"dispatch dtype must be 'fp8' or 'bf16', got {dtype!r}")


def combine_message_bytes(hidden: int) -> int:
    """Bytes of one token's combine message (BF16): 2*hidden."""
    if hidden <= 0:
        raise ConfigError(f"hidden size must be > 0, got {hidden}")
    return 2 * hidden


def first_occurrence(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort the last axis of an int array and flag the first copy of each value: (sorted, is_first), same shape."""
    srt = np.sort(a, axis=-1)
    first = np.ones(srt.shape, dtype=bool)
    first[..., 1:] = srt[..., 1:] != srt[..., :-1]
    return srt, first


def distinct_per_row(a: np.ndarray, n_values: int | None = None) -> np.ndarray:
    """Number of distinct values along the last axis of an int array ([..., k] -> [...]); O(k log k) per row."""
    return first_occurrence(a)[1].sum(axis=-1)


def expected_sends(expert_ids: np.ndarray, layout: EpLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (layer, token): expected IB sends, expected NVLink sends, IB sends without per-node dedup.

    The last is what a direct GPU-to-GPU all-to-all (no relay) would push over IB: one copy per target GPU
    on another node, E = |target GPUs| * (1 - 1/n_nodes).
    """
    nodes = distinct_per_row(layout.node_of(expert_ids), layout.n_nodes).astype(np.float64)
    gpus = distinct_per_row(layout.gpu_of(expert_ids), layout.ep).astype(np.float64)
    ib = nodes * (1.0 - 1.0 / layout.n_nodes)
    nvl = gpus * (1.0 - 1.0 / layout.gpus_per_node)
    ib_direct = gpus * (1.0 - 1.0 / layout.n_nodes)
    return ib, nvl, ib_direct


def comm_bytes(expert_ids: np.ndarray, layout: EpLayout, hidden: int, dispatch_dtype: str = "fp8") -> dict:
    """IB / NVLink bytes per token per MoE layer and summed over the traced MoE layers (dict of floats)."""
    ib, nvl, ib_direct = expected_sends(expert_ids, layout)
    d_b, c_b = dispatch_message_bytes(hidden, dispatch_dtype), combine_message_bytes(hidden)
    n_layers = expert_ids.shape[0]
    ib_m, nvl_m, dir_m = float(ib.mean()), float(nvl.mean()), float(ib_direct.mean())
    return {
        "hidden": hidden, "dispatch_dtype": dispatch_dtype, "combine_dtype": "bf16",
        "dispatch_message_bytes": d_b, "combine_message_bytes": c_b,
        "ib_sends_per_token_layer": ib_m, "nvlink_sends_per_token_layer": nvl_m,
        "ib_dispatch_bytes_per_token_layer": ib_m * d_b, "ib_combine_bytes_per_token_layer": ib_m * c_b,
        "nvlink_dispatch_bytes_per_token_layer": nvl_m * d_b, "nvlink_combine_bytes_per_token_layer": nvl_m * c_b,
        "ib_bytes_per_token_layer": ib_m * (d_b + c_b), "nvlink_bytes_per_token_layer": nvl_m * (d_b + c_b),
        "ib_bytes_per_token": ib_m * (d_b + c_b) * n_layers,
        "nvlink_bytes_per_token": nvl_m * (d_b + c_b) * n_layers,
        "ib_bytes_per_token_layer_without_node_dedup": dir_m * (d_b + c_b),
        "nvlink_over_ib_bytes": (nvl_m / ib_m) if ib_m > 0 else None,
        "source_gpu": "uniform over the EP group (expectation)",
    }
