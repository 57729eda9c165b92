"""Synthetic routing traces with controllable skew, drift and correlation.

Model (each knob alone reduces to a textbook case):
- Popularity: in layer l expert e has probability p ∝ (1 + rank_l(e))^-s (Zipf, exponent ``zipf_s``; s = 0 is
  uniform). Ranks are a random permutation per layer, so each layer has its own hot experts.
- Drift: the trace is cut into ``n_windows`` consecutive windows; between windows round(drift * E / 2) random
  pairs of experts swap ranks, so hot experts wander over time (drift = 0: static).
- Selection: a token takes the top-k of log p + g, g ~ Gumbel(0,1) iid per expert, i.e. it samples k experts
  without replacement in proportion to p (Plackett-Luce; the Gumbel-top-k trick, Kool et al. ICML 2019),
  optionally through the group/node-limited rule of DeepSeek-V3 §2.1.2 (gate_np.limited_topk).
- Correlation by Gumbel max-stability: g[t,l] = max(X[t] + log a, Y[seq(t)] + log b, Z[t,l] + log c),
  a = layer_corr, b = seq_corr, c = 1 - a - b, X, Y, Z iid Gumbel(0,1) vectors over experts. The max of
  independent Gumbels located at log w_i with sum w_i = 1 is again Gumbel(0,1), so every token's marginal law
  is unchanged, while X (shared by a token's layers) correlates layers and Y (a sequence "topic", shared by
  all tokens and layers of a sequence) correlates tokens of a sequence — and, like X, layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.gate_np import limited_topk
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import RoutingTrace


@dataclass(frozen=True, kw_only=True, slots=True)
class SynthSpec:
    """Knobs of the synthetic generator (see module docstring)."""

    n_layers: int = 3
    n_experts: int = 16
    topk: int = 4
    n_tokens: int = 4096
    seq_len: int = 256
    zipf_s: float = 1.0
    drift: float = 0.0
    n_windows: int = 16
    layer_corr: float = 0.0
    seq_corr: float = 0.0
    n_group: int = 1
    topk_group: int = 1
    group_score_topk: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for n in ("n_layers", "n_experts", "topk", "n_tokens", "seq_len", "n_windows", "n_group", "topk_group",
                  "group_score_topk"):
            v = getattr(self, n)
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ConfigError(f"synth: {n} must be a positive integer, got {v!r}")
        if self.topk > self.n_experts:
            raise ConfigError(f"synth: topk ({self.topk}) must be <= n_experts ({self.n_experts})")
        if self.zipf_s < 0:
            raise ConfigError(f"synth: zipf_s must be >= 0, got {self.zipf_s}")
        if not 0 <= self.drift <= 1:
            raise ConfigError(f"synth: drift must be in [0, 1], got {self.drift}")
        if self.layer_corr < 0 or self.seq_corr < 0 or self.layer_corr + self.seq_corr > 1:
            raise ConfigError(f"synth: layer_corr ({self.layer_corr}) and seq_corr ({self.seq_corr}) must be >= 0 "
                             f"with a sum <= 1")

    def with_(self, **kw) -> SynthSpec:
        d = asdict(self)
        d.update(kw)
        return SynthSpec(**d)


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return -np.log(-np.log(rng.random(shape).clip(1e-300, 1.0 - 1e-16)))


def _skip(rng: np.random.Generator, n: int) -> None:
    """Advance ``rng`` past ``n`` doubles without drawing them (None: the term is absent)."""
    rng.bit_generator.advance(n)


def log_popularity(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """[n_windows, L, E] log p of each expert in each window (Zipf over a drifting rank permutation)."""
    E, L, W = spec.n_experts, spec.n_layers, spec.n_windows
    base = -spec.zipf_s * np.log1p(np.arange(E, dtype=np.float64))            # by rank
    base -= np.log(np.exp(base).sum())
    ranks = np.stack([rng.permutation(E) for _ in range(L)])                  # [L, E] rank of each expert
    out = np.empty((W, L, E))
    n_swaps = round(spec.drift * E / 2)
    for w in range(W):
        if w and n_swaps:
            for l in range(L):
                pairs = rng.permutation(E)[: 2 * n_swaps].reshape(-1, 2)
                ranks[l, pairs[:, 0]], ranks[l, pairs[:, 1]] = ranks[l, pairs[:, 1]], ranks[l, pairs[:, 0]].copy()
        out[w] = base[ranks]
    return out


def synthesize(spec: SynthSpec, layout: EpLayout | None = None, node_limit: int | None = None) -> RoutingTrace:
    """Draw a trace. With ``layout`` and ``node_limit`` the groups are the layout's nodes and at most
    ``node_limit`` of them are used per token (node-limited routing); else spec.n_group/topk_group apply."""
    rng = np.random.default_rng(spec.seed)
    L, E, T, k = spec.n_layers, spec.n_experts, spec.n_tokens, spec.topk
    n_group, topk_group = spec.n_group, spec.topk_group
    if node_limit is not None:
        if layout is None:
            raise ConfigError("synth: a node limit needs an EP layout (--ep and --gpus-per-node)")
        n_group, topk_group = layout.n_nodes, node_limit
        if not 1 <= node_limit <= layout.n_nodes:
            raise ConfigError(f"synth: node limit ({node_limit}) must be in [1, n_nodes={layout.n_nodes}]")
    if layout is not None and layout.n_experts != E:
        raise ConfigError(f"synth: layout has {layout.n_experts} experts, spec has {E}")
    logp = log_popularity(spec, rng)                                           # [W, L, E]
    seq_ids = np.arange(T) // spec.seq_len
    positions = np.arange(T) % spec.seq_len
    window = (np.arange(T) * spec.n_windows) // T
    a, b = spec.layer_corr, spec.seq_corr
    c = 1.0 - a - b
    # a term with weight 0 is -inf everywhere and drops out of the max: its draws are skipped by advancing the
    # generator past them (PCG64: one 64-bit step per double), so the trace is the same as drawing them
    X = _gumbel(rng, (T, E)) + np.log(a) if a > 0 else _skip(rng, T * E)
    n_seq = int(seq_ids[-1]) + 1
    ids = np.empty((L, T, k), dtype=np.int64)
    weights = np.empty((L, T, k), dtype=np.float32)
    Y = _gumbel(rng, (n_seq, E))[seq_ids] + np.log(b) if b > 0 else _skip(rng, n_seq * E)
    for l in range(L):
        Z = _gumbel(rng, (T, E)) + (np.log(c) if c > 0 else -np.inf)
        g = Z                                                                  # Gumbel(0,1) by max-stability
        for other in (X, Y):
            if other is not None:
                g = np.maximum(g, other)
        lp = logp[window, l]                                                   # [T, E]
        sel = limited_topk(lp + g, k, n_group, topk_group, spec.group_score_topk)
        ids[l] = sel
        p = np.exp(np.take_along_axis(lp, sel, axis=1))
        weights[l] = p / p.sum(axis=1, keepdims=True)
    meta = {"source": "synth", "synth": asdict(spec), "seed": spec.seed, "model": "synthetic"}
    return RoutingTrace(n_experts=E, layers=np.arange(L), expert_ids=ids, weights=weights, seq_ids=seq_ids,
                        positions=positions, n_group=n_group, layout=layout, node_limit=node_limit, meta=meta)
