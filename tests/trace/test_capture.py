"""Capture from the real executable model (dsv3sim.nn, tiny config): node-limited routing never exceeds M nodes,
and the captured choices equal an independent numpy re-selection from the recorded affinities."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dsv3sim.nn.routing")

from dsv3sim.config import load_model_config
from dsv3sim.trace.capture import capture_trace
from dsv3sim.trace.gate_np import limited_topk
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.stats import trace_stats


@pytest.fixture(scope="module")
def tiny_model():
    from dsv3sim.nn.transformer import Transformer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_model_config("tiny")
    model = Transformer(cfg)
    with torch.no_grad():  # a non-zero aux-loss-free bias, so selection (s + b) differs from the raw scores
        g = torch.Generator().manual_seed(1)
        for m in model.modules():
            if getattr(m, "e_score_correction_bias", None) is not None:
                m.e_score_correction_bias.copy_(torch.randn(m.e_score_correction_bias.shape, generator=g) * 0.05)
    tokens = torch.randint(0, cfg.vocab_size, (4, 32), generator=torch.Generator().manual_seed(2))
    return cfg, model, tokens


def _biases(model):
    from dsv3sim.nn.routing import Gate

    return {g.layer: g.e_score_correction_bias.detach().numpy() for g in model.modules() if isinstance(g, Gate)}


@pytest.mark.parametrize("ep,gpn,M", [(8, 2, 1), (8, 2, 3), (16, 4, 2)])
def test_node_limited_capture_never_exceeds_M(tiny_model, ep, gpn, M):
    cfg, model, tokens = tiny_model
    layout = EpLayout(n_experts=cfg.n_routed_experts, ep=ep, gpus_per_node=gpn)
    tr = capture_trace(model, cfg, tokens, layout=layout, node_limit=M)
    st = trace_stats(tr)
    assert st["max_nodes_per_token"] <= M and st["node_limit_respected"]
    per_token = [len(set(r)) for r in tr.node_ids().reshape(-1, tr.topk).tolist()]   # plain-Python recount
    assert max(per_token) <= M
    assert tr.meta["gate_overrides"]["n_group"] == layout.n_nodes


def test_captured_ids_equal_numpy_reselection(tiny_model):
    from dsv3sim.nn.routing import capture_routing

    cfg, model, tokens = tiny_model
    bias = _biases(model)
    layout = EpLayout(n_experts=16, ep=8, gpus_per_node=2)
    for over in ({}, {"n_group": 4, "topk_group": 1, "group_score_topk": 4}):
        model.eval()
        with torch.no_grad(), capture_routing(model, **over) as rec:
            model(tokens)
        for r in rec:
            choice = r["scores"].numpy() + bias[r["layer"]]
            want = limited_topk(choice, cfg.num_experts_per_tok, over.get("n_group", cfg.n_group),
                                over.get("topk_group", cfg.topk_group), over.get("group_score_topk", 2))
            assert np.array_equal(np.sort(r["expert_ids"].numpy(), 1), np.sort(want, 1))
    # the model's own group limit (4 groups, keep 2) is a 2-node limit when groups are nodes
    tr = capture_trace(model, cfg, tokens, layout=layout)
    assert tr.node_limit is None and trace_stats(tr)["max_nodes_per_token"] <= cfg.topk_group


def test_bad_node_limit(tiny_model):
    cfg, model, tokens = tiny_model
    with pytest.raises(ValueError, match="node-limit"):
        capture_trace(model, cfg, tokens, layout=EpLayout(n_experts=16, ep=8, gpus_per_node=2), node_limit=5)
    with pytest.raises(ValueError, match="layout"):
        capture_trace(model, cfg, tokens, node_limit=2)
