"""Load balancing of DeepSeekMoE: aux-loss-free bias update, sequence-wise balance loss, classic aux loss.

* Aux-loss-free (V3 §2.1.2, eq. 16; Wang et al. 2024 "Auxiliary-loss-free load balancing"): after each step,
  per MoE layer, b_i <- b_i + gamma * sign(mean_j c_j - c_i) with c_i the tokens routed to expert i in the
  step: overloaded experts' bias falls, underloaded experts' rises. V3 used gamma = 0.001 (§4.2).
* Complementary sequence-wise balance loss (V3 eq. 17-20): per sequence of T tokens,
  f_i = N_r / (K_r T) sum_t 1[i in TopK_t], s'_{i,t} = s_{i,t} / sum_j s_{j,t}, P_i = 1/T sum_t s'_{i,t},
  L_bal = alpha sum_i f_i P_i; averaged over the batch's sequences. V3 alpha = 0.0001.
* Classic expert-level auxiliary loss (V2 §2.2.3 eq. 23-25; Switch/GShard lineage): the same f_i P_i product
  over all tokens of the batch, the only balancing force (no bias).
"""

from __future__ import annotations

import torch


def expert_load(ids: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Tokens routed to each expert: ids [T,k] -> counts [E] (LongTensor)."""
    return torch.bincount(ids.reshape(-1), minlength=n_experts)


@torch.no_grad()
def update_bias(bias: torch.Tensor, load: torch.Tensor, gamma: float) -> None:
    """In place: b_i += gamma * sign(mean(c) - c_i) (V3 §2.1.2)."""
    c = load.to(bias.dtype)
    bias.add_(gamma * torch.sign(c.mean() - c))


def _f_p(scores: torch.Tensor, ids: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [N,T,E], ids [N,T,k] -> f [N,E], P [N,E] of V3 eq. 18-19."""
    N, T, E = scores.shape
    onehot = torch.zeros(N, T, E, device=scores.device, dtype=scores.dtype).scatter_(2, ids, 1.0)
    f = onehot.sum(1) * (E / (top_k * T))
    s_norm = scores / scores.sum(-1, keepdim=True).clamp_min(1e-20)
    return f, s_norm.mean(1)


def sequence_balance_loss(scores: torch.Tensor, ids: torch.Tensor, *, batch: int, top_k: int,
                          alpha: float) -> torch.Tensor:
    """V3 eq. 17: scores [B*S,E] (raw affinities), ids [B*S,k]; mean over sequences of alpha sum_i f_i P_i."""
    E = scores.shape[-1]
    f, p = _f_p(scores.view(batch, -1, E), ids.view(batch, -1, ids.shape[-1]), top_k)
    return alpha * (f * p).sum(-1).mean()


def aux_balance_loss(scores: torch.Tensor, ids: torch.Tensor, *, top_k: int, alpha: float) -> torch.Tensor:
    """Classic expert-level balance loss over the whole batch of tokens (V2 eq. 23-25)."""
    E = scores.shape[-1]
    f, p = _f_p(scores.view(1, -1, E), ids.view(1, -1, ids.shape[-1]), top_k)
    return alpha * (f * p).sum()


def max_over_mean(load: torch.Tensor) -> float:
    """Imbalance of one layer: max_i c_i / mean_i c_i (1.0 = perfectly balanced)."""
    c = load.float()
    return float(c.max() / c.mean().clamp_min(1e-12))
