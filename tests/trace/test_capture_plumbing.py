"""capture_trace's plumbing with a stand-in model: gate overrides for node-limited routing reach the gate, and
per-forward records are assembled into [L, T, k] in token order. The real model is tested in test_capture.py."""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import torch

from dsv3sim.config import load_model_config
from dsv3sim.trace.capture import capture_trace, node_limit_overrides
from dsv3sim.trace.gate_np import limited_topk
from dsv3sim.trace.layout import EpLayout


class _StubModel:
    """Scores are a fixed function of the token id; routing uses whatever group limit capture set."""

    def __init__(self, cfg):
        self.cfg, self.records, self.over = cfg, None, {}
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(cfg.vocab_size, 2, cfg.n_routed_experts, generator=g)

    def eval(self):
        return self

    def __call__(self, tokens):
        flat = tokens.reshape(-1)
        for j, layer in enumerate((1, 2)):
            sc = self.table[flat, j].numpy()
            ids = limited_topk(sc, self.cfg.num_experts_per_tok, self.over.get("n_group", self.cfg.n_group),
                               self.over.get("topk_group", self.cfg.topk_group), self.over.get("group_score_topk", 2))
            self.records.append({"layer": layer, "expert_ids": torch.from_numpy(ids),
                                 "weights": torch.ones(ids.shape), "scores": torch.from_numpy(sc)})


@contextlib.contextmanager
def _stub_capture(model, **over):
    model.records, model.over = [], over
    yield model.records


def test_capture_assembles_records_and_applies_node_limit(monkeypatch):
    mod = types.ModuleType("dsv3sim.nn.routing")
    mod.capture_routing = _stub_capture
    monkeypatch.setitem(sys.modules, "dsv3sim.nn.routing", mod)
    cfg = load_model_config("tiny")
    model = _StubModel(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (5, 12), generator=torch.Generator().manual_seed(1))
    layout = EpLayout(n_experts=16, ep=8, gpus_per_node=2)
    tr = capture_trace(model, cfg, tokens, layout=layout, node_limit=1, batch_size=2)
    assert tr.expert_ids.shape == (2, 60, 4) and list(tr.layers) == [1, 2]
    assert tr.meta["gate_overrides"] == {"n_group": 4, "topk_group": 1, "group_score_topk": 4}
    assert (tr.node_ids() == tr.node_ids()[:, :, :1]).all()            # one node per token
    # token order: row t of the trace is token tokens.reshape(-1)[t]
    want = limited_topk(model.table[tokens.reshape(-1), 0].numpy(), 4, 4, 1, 4)
    assert np.array_equal(tr.expert_ids[0], want)
    assert np.array_equal(tr.seq_ids, np.repeat(np.arange(5), 12)) and tr.token_ids.tolist() == tokens.reshape(-1).tolist()


def test_node_limit_overrides_follow_v3_rule():
    v3 = load_model_config("deepseek-v3")
    o = node_limit_overrides(v3, EpLayout(n_experts=256, ep=64, gpus_per_node=8), 4)
    assert o == {"n_group": 8, "topk_group": 4, "group_score_topk": 2}   # V3 §2.1.2: top K/M = 8/4 per node
