"""Gate: group-limited top-k against a brute-force reference; selection-only bias; capture_routing."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn.routing import Gate, capture_routing, select_experts
from dsv3sim.nn.transformer import Transformer


def brute_force(scores, bias, k, n_group, topk_group, gst):
    """Plain-Python reference: best-scoring groups by sum of top-gst (biased) scores, then top-k inside them."""
    T, E = scores.shape
    per = E // n_group
    out = []
    for t in range(T):
        c = [float(scores[t, e] + (bias[e] if bias is not None else 0)) for e in range(E)]
        gs = [sum(sorted(c[g * per:(g + 1) * per], reverse=True)[:gst]) for g in range(n_group)]
        keep = sorted(range(n_group), key=lambda g: -gs[g])[:topk_group]
        allowed = [e for e in range(E) if e // per in keep]
        out.append(sorted(sorted(allowed, key=lambda e: -c[e])[:k]))
    return out


@pytest.mark.parametrize("n_group,topk_group,k,gst", [(4, 2, 4, 2), (8, 3, 6, 2), (4, 1, 3, 3), (2, 2, 5, 2)])
def test_selection_equals_brute_force_and_stays_in_groups(n_group, topk_group, k, gst):
    g = torch.Generator().manual_seed(n_group * 10 + k)
    T, E = 64, 16
    scores = torch.rand(T, E, generator=g)
    bias = torch.randn(E, generator=g) * 0.1
    ids, w = select_experts(scores, bias, top_k=k, n_group=n_group, topk_group=topk_group, method="noaux_tc",
                            group_score_topk=gst)
    assert sorted(map(sorted, ids.tolist())) == sorted(brute_force(scores, bias, k, n_group, topk_group, gst))
    groups = ids // (E // n_group)
    assert max(len(set(r)) for r in groups.tolist()) <= topk_group  # never leaves the chosen groups


def test_bias_changes_selection_not_weights():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(200, 16, generator=g)
    bias = torch.zeros(16)
    bias[:4] = 0.5  # favour experts 0-3
    kw = dict(top_k=4, n_group=4, topk_group=2, method="noaux_tc", routed_scaling_factor=2.5)
    ids0, _ = select_experts(scores, None, **kw)
    ids1, w1 = select_experts(scores, bias, **kw)
    assert not torch.equal(ids0, ids1)
    assert (ids1 < 4).float().mean() > (ids0 < 4).float().mean() + 0.2
    raw = scores.gather(1, ids1)
    torch.testing.assert_close(w1, raw / raw.sum(-1, keepdim=True) * 2.5)  # gating uses raw affinities only
    torch.testing.assert_close(w1.sum(-1), torch.full((200,), 2.5))


def test_v2_group_limited_greedy_uses_group_max_and_softmax():
    scores = torch.tensor([[0.30, 0.00, 0.20, 0.19, 0.05, 0.0]])  # 3 groups of 2
    ids, w = select_experts(scores, None, top_k=2, n_group=3, topk_group=1, method="group_limited_greedy",
                            norm_topk_prob=False, routed_scaling_factor=1.0)
    assert sorted(ids[0].tolist()) == [0, 1]  # group 0 has the max (0.30); top-2 sum would pick group 1
    torch.testing.assert_close(w, scores.gather(1, ids))


def test_gate_module_sigmoid_and_bias(tiny):
    torch.manual_seed(0)
    gate = Gate(tiny, layer=1)
    torch.nn.init.normal_(gate.weight, std=0.1)
    x = torch.randn(10, tiny.hidden_size)
    ids, w, s = gate(x)
    torch.testing.assert_close(s, torch.sigmoid(x @ gate.weight.t()))
    assert ids.shape == (10, tiny.num_experts_per_tok) and gate.e_score_correction_bias.requires_grad is False


def test_capture_routing_records_and_restores(tiny):
    torch.manual_seed(0)
    m = Transformer(tiny).eval()
    tok = torch.randint(0, tiny.vocab_size, (2, 8))
    with torch.no_grad(), capture_routing(m, n_group=8, topk_group=2, group_score_topk=1) as rec:
        m(tok)
    assert [r["layer"] for r in rec] == [i for i in range(tiny.num_hidden_layers) if tiny.is_moe_layer(i)]
    r = rec[0]
    assert r["expert_ids"].shape == (16, tiny.num_experts_per_tok) and r["scores"].shape == (16, 16)
    assert max(len(set(row)) for x in rec for row in (x["expert_ids"] // 2).tolist()) <= 2  # 2 of 8 groups
    n = len(rec)
    with torch.no_grad():
        m(tok)
    assert len(rec) == n  # nothing appended after exit
    assert all(g.capture is None and g.overrides == {} for g in m.modules() if isinstance(g, Gate))


def test_capture_rejects_bad_override(tiny):
    m = Transformer(tiny)
    with pytest.raises(ValueError, match="n_group"), capture_routing(m, n_group=3):
        pass
