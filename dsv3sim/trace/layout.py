"""Where each routed expert lives under expert parallelism: expert -> GPU -> node.

Contiguous placement, as DeepSeek-V3 inference/model.py shards experts (rank r owns experts
[r*E/ep, (r+1)*E/ep)) and as DeepEP numbers ranks (node = rank // gpus_per_node). Expert groups of the
gate are contiguous too (group = expert // (E/n_group), HF modeling_deepseek ``MoEGate``). Node-limited
routing (DeepSeek-V3 §2.1.2) is group-limited routing with one group per node, so a layout whose node
count equals n_group makes "group" and "node" the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsv3sim.config.errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class EpLayout:
    """n_experts routed experts spread evenly over ``ep`` GPUs, ``gpus_per_node`` GPUs to a node."""

    n_experts: int
    ep: int
    gpus_per_node: int

    def __post_init__(self) -> None:
        for name in ("n_experts", "ep", "gpus_per_node"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ConfigError(f"EP layout: {name} must be a positive integer, got {v!r}")
        if self.n_experts % self.ep:
            raise ConfigError(f"EP layout: n_experts ({self.n_experts}) must be divisible by ep ({self.ep})")
        if self.ep % self.gpus_per_node:
            raise ConfigError(f"EP layout: ep ({self.ep}) must be divisible by gpus_per_node ({self.gpus_per_node})")

    @property
    def experts_per_gpu(self) -> int:
        return self.n_experts // self.ep

    @property
    def n_nodes(self) -> int:
        return self.ep // self.gpus_per_node

    @property
    def experts_per_node(self) -> int:
        return self.n_experts // self.n_nodes

    def gpu_of(self, expert_ids: np.ndarray) -> np.ndarray:
        """GPU (EP rank) of each expert id, same shape."""
        return np.asarray(expert_ids) // self.experts_per_gpu

    def node_of(self, expert_ids: np.ndarray) -> np.ndarray:
        """Node of each expert id, same shape."""
        return self.gpu_of(expert_ids) // self.gpus_per_node

    def to_dict(self) -> dict:
        return {"n_experts": self.n_experts, "ep": self.ep, "gpus_per_node": self.gpus_per_node,
                "n_nodes": self.n_nodes}

    @classmethod
    def from_dict(cls, d: dict) -> EpLayout:
        return cls(n_experts=int(d["n_experts"]), ep=int(d["ep"]), gpus_per_node=int(d["gpus_per_node"]))


def group_of(expert_ids: np.ndarray, n_experts: int, n_group: int) -> np.ndarray:
    """Gate group of each expert id: contiguous groups of n_experts/n_group (HF modeling_deepseek MoEGate)."""
    if n_group <= 0 or n_experts % n_group:
        raise ConfigError(f"n_experts ({n_experts}) must be divisible by n_group ({n_group}) > 0")
    return np.asarray(expert_ids) // (n_experts // n_group)
