"""Fit the synthetic generator's knobs to a captured trace, by simulated method of moments.

Each knob is matched to one statistic of the target trace (stats.py), simulating traces of the same size
and layout with common random numbers (one seed) and bisecting, since every statistic rises monotonically
with its knob in expectation:
  zipf_s     <- mean over layers of the coefficient of variation of expert loads
  seq_corr   <- within_seq_mi_bits    (adjacent tokens of a sequence, same layer)
  layer_corr <- cross_layer_mi_bits   (same token, adjacent MoE layers)
Simulating at the target's own size makes the estimator biases (e.g. plug-in MI) cancel. Knobs are fitted
in this order, each with the others fixed, for three sweeps (sequence topics inflate the load CV, so zipf_s
is refitted once the correlations are in).
The sequence topic (seq_corr) raises the cross-layer MI too, so layer_corr is fitted after it. What the
model cannot match is how local real within-sequence dependence is: a topic spans a whole sequence, so
the windowed load TV of a fitted trace overshoots a capture's (reported in the fit report).
Drift is not fitted: a trace captured from one fixed checkpoint has none (its windowed load TV comes from
sequence topics, which seq_corr already reproduces), and drift confounds the other statistics (hot experts
moving together over time look like cross-layer correlation). Set it by hand (``--drift``) for what-ifs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.routing_trace import RoutingTrace
from dsv3sim.trace.stats import correlation_stats
from dsv3sim.trace.synth import SynthSpec, synthesize

N_BISECT = 12


def _mean_cv(trace: RoutingTrace) -> float:
    loads = trace.loads()
    return float((loads.std(axis=1) / np.maximum(loads.mean(axis=1), 1e-300)).mean())


def _bisect(f: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    if f(lo) >= target:
        return lo
    if f(hi) <= target:
        return hi
    for _ in range(N_BISECT):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_synth(target: RoutingTrace, *, seed: int = 0, max_zipf_s: float = 4.0) -> tuple[SynthSpec, dict]:
    """SynthSpec reproducing ``target``'s skew, correlations and drift; returns (spec, report dict)."""
    if not target.has_tokens:
        raise ConfigError("fitting needs a trace with per-token routing (an .npz trace), not loads only")
    seq_len = target.n_tokens
    if target.seq_ids is not None and target.n_tokens:
        seq_len = int(np.bincount(target.seq_ids).max())
    node_limit = target.node_limit if target.layout is not None else None
    spec = SynthSpec(n_layers=target.n_layers, n_experts=target.n_experts, topk=target.topk,
                     n_tokens=target.n_tokens, seq_len=seq_len, n_group=target.n_group,
                     topk_group=int(target.meta.get("topk_group", target.n_group)),
                     group_score_topk=int(target.meta.get("group_score_topk", 2)), seed=seed)
    goal = correlation_stats(target)
    goal["load_cv"] = _mean_cv(target)

    def sim(s: SynthSpec) -> RoutingTrace:
        return synthesize(s, target.layout, node_limit)

    for _ in range(3):
        spec = spec.with_(zipf_s=_bisect(lambda x, s=spec: _mean_cv(sim(s.with_(zipf_s=x))), goal["load_cv"], 0.0,
                                         max_zipf_s))
        if goal["within_seq_mi_bits"] is not None:
            hi = 1.0 - spec.layer_corr
            spec = spec.with_(seq_corr=_bisect(
                lambda x, s=spec: correlation_stats(sim(s.with_(seq_corr=x)))["within_seq_mi_bits"],
                goal["within_seq_mi_bits"], 0.0, hi))
        if goal["cross_layer_mi_bits"] is not None:
            hi = 1.0 - spec.seq_corr
            spec = spec.with_(layer_corr=_bisect(
                lambda x, s=spec: correlation_stats(sim(s.with_(layer_corr=x)))["cross_layer_mi_bits"],
                goal["cross_layer_mi_bits"], 0.0, hi))
    got = correlation_stats(sim(spec))
    got["load_cv"] = _mean_cv(sim(spec))
    report = {k: {"target": goal[k], "fitted": got[k]} for k in goal}
    return spec, report
