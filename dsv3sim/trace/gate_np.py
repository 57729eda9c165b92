"""Group-limited (node-limited) top-k selection in numpy: the selection rule of DeepSeek-V3's gate.

DeepSeek-V3 §2.1.2 and inference/model.py ``Gate``: experts form ``n_group`` contiguous groups; a group is
scored by the sum of its ``group_score_topk`` highest scores (V3 uses 2 = K/M: 8 experts over 4 nodes);
only the ``topk_group`` best groups stay eligible; the token then takes its top-k experts among them.
With one group per node this is node-limited routing: at most ``topk_group`` nodes per token.
Used by the synthetic generator and, in tests, as the reference the torch gate is checked against.
"""

from __future__ import annotations

import numpy as np

from dsv3sim.config.errors import ConfigError


def limited_topk(scores: np.ndarray, k: int, n_group: int = 1, topk_group: int = 1,
                 group_score_topk: int = 2) -> np.ndarray:
    """scores [T, E] -> expert ids [T, k] (best first) restricted to the ``topk_group`` best groups."""
    T, E = scores.shape
    if E % n_group:
        raise ConfigError(f"n_experts ({E}) must be divisible by n_group ({n_group})")
    if not 1 <= topk_group <= n_group:
        raise ConfigError(f"topk_group ({topk_group}) must be in [1, n_group={n_group}]")
    per = E // n_group
    if k > topk_group * per:
        raise ConfigError(f"k ({k}) exceeds the experts of {topk_group} groups x {per} experts")
    if not 1 <= group_score_topk <= per:
        raise ConfigError(f"group_score_topk ({group_score_topk}) must be in [1, {per}] experts per group")
    masked = scores
    if topk_group < n_group:
        top = np.partition(scores.reshape(T, n_group, per), per - group_score_topk, axis=2)
        g = np.sort(top[:, :, per - group_score_topk:], axis=2).sum(axis=2)                               # [T, G]
        keep = np.argsort(-g, axis=1, kind="stable")[:, :topk_group]                                   # [T, M]
        allowed = np.zeros((T, n_group), dtype=bool)
        allowed[np.arange(T)[:, None], keep] = True
        masked = np.where(np.repeat(allowed, per, axis=1), scores, -np.inf)
    idx = np.argpartition(-masked, k - 1, axis=1)[:, :k]                                               # [T, k]
    order = np.argsort(-np.take_along_axis(masked, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)
