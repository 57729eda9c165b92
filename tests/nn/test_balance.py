"""Balancing: the aux-loss-free bias update evens a skewed gate; the balance losses equal their formulas."""

from __future__ import annotations

import torch

from dsv3sim.nn.balance import aux_balance_loss, expert_load, max_over_mean, sequence_balance_loss, update_bias
from dsv3sim.nn.routing import select_experts


def test_bias_update_reduces_imbalance_on_skewed_gate():
    g = torch.Generator().manual_seed(0)
    T, E, k = 512, 16, 4
    skew = torch.linspace(2.0, -2.0, E)  # expert 0 strongly preferred
    scores = torch.sigmoid(torch.randn(T, E, generator=g) + skew)
    bias = torch.zeros(E)
    kw = dict(top_k=k, n_group=4, topk_group=2, method="noaux_tc")
    first = max_over_mean(expert_load(select_experts(scores, bias, **kw)[0], E))
    w0 = select_experts(scores, bias, **kw)[1]
    for _ in range(300):
        update_bias(bias, expert_load(select_experts(scores, bias, **kw)[0], E), gamma=0.002)
    last = max_over_mean(expert_load(select_experts(scores, bias, **kw)[0], E))
    assert first > 2.5 and last < 1.3, (first, last)
    assert bias[0] < 0 < bias[-1]  # overloaded expert pushed down, underloaded pulled up
    assert not torch.equal(w0, select_experts(scores, bias, **kw)[1])  # (weights follow the new selection)


def _formula(scores, ids, k, alpha):
    T, E = scores.shape
    f = [E / (k * T) * sum(1 for t in range(T) if i in ids[t].tolist()) for i in range(E)]
    sn = scores / scores.sum(-1, keepdim=True)
    p = [float(sn[:, i].mean()) for i in range(E)]
    return alpha * sum(a * b for a, b in zip(f, p))


def test_balance_losses_equal_formulas():
    g = torch.Generator().manual_seed(1)
    B, S, E, k = 3, 10, 8, 2
    scores = torch.rand(B * S, E, generator=g)
    ids = scores.topk(k, -1).indices
    seq = sequence_balance_loss(scores, ids, batch=B, top_k=k, alpha=0.1)
    want = sum(_formula(scores[b * S:(b + 1) * S], ids[b * S:(b + 1) * S], k, 0.1) for b in range(B)) / B
    assert abs(float(seq) - want) < 1e-6
    assert abs(float(aux_balance_loss(scores, ids, top_k=k, alpha=0.1)) - _formula(scores, ids, k, 0.1)) < 1e-6
    uniform = torch.full((64, E), 0.5)
    ids_u = torch.arange(64 * k).view(64, k) % E  # perfectly balanced assignment
    assert abs(float(aux_balance_loss(uniform, ids_u, top_k=k, alpha=1.0)) - 1.0) < 1e-6  # minimum = alpha
