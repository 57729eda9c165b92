"""DeepSeekMoE gate: affinities, group-limited (node-limited) top-k, gating weights; routing capture.

Affinity s_{i,t} = sigmoid(u_t . e_i) (V3 eq. 15) or softmax over experts (V2, ``scoring_func``).
Selection uses s + b_i where b is ``e_score_correction_bias`` (aux-loss-free balancing, V3 eq. 16): the bias
changes WHICH experts are chosen, never the gating weights, which use the raw s (V3 §2.1.2).
Group limit: experts split into ``n_group`` groups; each group scored by the sum of its top-2 (biased)
affinities for ``noaux_tc`` (V3 inference/model.py Gate), by its max for V2's ``group_limited_greedy``;
the best ``topk_group`` groups stay, the rest are masked, then top-k over what remains. With groups mapped
to nodes this is V3's node-limited routing (each token reaches at most M nodes; a node scored by the sum of
its K_r/M highest affinities -> ``group_score_topk``). ``greedy`` (V2-Lite) ignores groups.
Weights: g = s_sel / sum(s_sel) when norm_topk_prob (V3 eq. 13), then x routed_scaling_factor.

``capture_routing(model, ...)`` makes every gate append {"layer", "expert_ids" [T,k], "weights" [T,k],
"scores" [T,E]} per forward to the yielded list; overrides n_group / topk_group / group_score_topk meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig


def gate_scores(x: torch.Tensor, weight: torch.Tensor, scoring_func: str,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [T,H], weight [E,H] (+ router bias [E], gpt-oss) -> affinities [T,E] in FP32 (the gate stays in high
    precision, V3 §3.3.1)."""
    logits = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
    if scoring_func == "sigmoid":
        return logits.sigmoid()
    if scoring_func == "softmax":
        return logits.softmax(dim=-1)
    raise ConfigError(f"scoring_func must be 'sigmoid' or 'softmax', got {scoring_func!r}")


def select_experts(scores: torch.Tensor, bias: torch.Tensor | None, *, top_k: int, n_group: int, topk_group: int,
                   method: str, group_score_topk: int | None = None, norm_topk_prob: bool = True,
                   routed_scaling_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [T,E] -> (expert ids [T,k], gating weights [T,k]). See module docstring."""
    T, E = scores.shape
    choice = scores + bias if bias is not None else scores
    if n_group > 1 and method != "greedy":
        g = choice.view(T, n_group, E // n_group)
        if group_score_topk is not None:
            gs = g.topk(min(group_score_topk, g.shape[-1]), dim=-1).values.sum(-1)
        elif method == "group_limited_greedy":
            gs = g.amax(dim=-1)
        else:  # noaux_tc: sum of the top-2 affinities of each group
            gs = g.topk(min(2, g.shape[-1]), dim=-1).values.sum(-1)
        keep = gs.topk(topk_group, dim=-1).indices  # [T, topk_group]
        mask = torch.ones(T, n_group, dtype=torch.bool, device=scores.device).scatter_(1, keep, False)
        choice = g.masked_fill(mask[:, :, None], float("-inf")).view(T, E)
    ids = choice.topk(top_k, dim=-1).indices
    w = scores.gather(1, ids)
    if norm_topk_prob and top_k > 1:
        w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
    return ids, w * routed_scaling_factor


class Gate(nn.Module):
    """Router of one MoE layer; HF names ``weight`` [E,H] and ``e_score_correction_bias`` [E] (noaux_tc only)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.top_k, self.n_group, self.topk_group = cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
        self.method, self.scoring_func = cfg.topk_method, cfg.scoring_func
        self.norm_topk_prob, self.scale = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        if cfg.topk_method == "noaux_tc":  # updated by the balancing rule, not by gradients
            self.e_score_correction_bias = nn.Parameter(torch.zeros(cfg.n_routed_experts), requires_grad=False)
        else:
            self.e_score_correction_bias = None
        self.bias = nn.Parameter(torch.zeros(cfg.n_routed_experts)) if cfg.router_bias else None  # gpt-oss router
        self.capture: list | None = None  # set by capture_routing only
        self.overrides: dict = {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T,H] -> (ids [T,k], weights [T,k] FP32, scores [T,E] FP32)."""
        scores = gate_scores(x, self.weight, self.scoring_func, self.bias)
        o = self.overrides
        method = self.method if not o else (self.method if self.method != "greedy" else "noaux_tc")
        ids, w = select_experts(scores, self.e_score_correction_bias, top_k=self.top_k,
                                n_group=o.get("n_group") or self.n_group,
                                topk_group=o.get("topk_group") or self.topk_group, method=method,
                                group_score_topk=o.get("group_score_topk"), norm_topk_prob=self.norm_topk_prob,
                                routed_scaling_factor=self.scale)
        if self.capture is not None:
            self.capture.append({"layer": self.layer, "expert_ids": ids.detach().cpu(),
                                 "weights": w.detach().float().cpu(), "scores": scores.detach().float().cpu()})
        return ids, w, scores


def gate_topk(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg: ModelConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Profiler op: the whole gate (scores + group-limited top-k + weights) for tokens x [T,H]."""
    s = gate_scores(x, weight, cfg.scoring_func)
    return select_experts(s, bias, top_k=cfg.num_experts_per_tok, n_group=cfg.n_group, topk_group=cfg.topk_group,
                          method=cfg.topk_method, norm_topk_prob=cfg.norm_topk_prob,
                          routed_scaling_factor=cfg.routed_scaling_factor)


@contextmanager
def capture_routing(model: nn.Module, n_group: int | None = None, topk_group: int | None = None,
                    group_score_topk: int | None = None) -> Iterator[list[dict]]:
    """Record every gate's routing while active (see module docstring); overrides apply only meanwhile."""
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    if n_group is not None:
        for g in gates:
            E = g.weight.shape[0]
            if E % n_group:
                raise ConfigError(f"n_group override ({n_group}) must divide n_routed_experts ({E})")
            if topk_group is not None and (topk_group > n_group or g.top_k > topk_group * (E // n_group)):
                raise ConfigError(f"topk_group override ({topk_group}) with n_group {n_group} cannot hold top-"
                                 f"{g.top_k} of {E} experts")
    over = {k: v for k, v in (("n_group", n_group), ("topk_group", topk_group),
                              ("group_score_topk", group_score_topk)) if v is not None}
    records: list[dict] = []
    saved = [(g.capture, g.overrides) for g in gates]
    for g in gates:
        g.capture, g.overrides = records, over
    try:
        yield records
    finally:
        for g, (c, o) in zip(gates, saved):
            g.capture, g.overrides = c, o
