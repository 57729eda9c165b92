"""Training on real text: the loss falls, and aux-loss-free balancing ends less imbalanced than none.
Fast variant: a 2-layer tiny (one MoE layer), 40 steps of 4 x 32 tokens. Slow: the full tiny, 300 steps."""

from __future__ import annotations

import json

import pytest
import torch

from dsv3sim.nn.train import TrainOptions, train


def _run(cfg, balance, steps, **kw):
    return train(cfg, TrainOptions(steps=steps, balance=balance, seed=0, **kw))


def test_small_loss_falls_and_aux_free_balances(tiny):
    cfg = tiny.with_(num_hidden_layers=2)
    kw = dict(batch=4, seq_len=32, warmup=5, corpus_bytes=300_000)
    m_af, af = _run(cfg, "aux-free", 40, **kw)
    m_no, no = _run(cfg, "none", 40, **kw)
    assert af["loss_last"] < af["loss_first"] - 0.8, (af["loss_first"], af["loss_last"])
    assert af["expert_load_max_over_mean"] < no["expert_load_max_over_mean"], (af["expert_load_max_over_mean"],
                                                                               no["expert_load_max_over_mean"])
    h = af["history"][-1]
    assert set(h) >= {"step", "loss", "expert_load_max_over_mean", "expert_load"}
    assert len(h["expert_load"]) == cfg.n_moe_layers and len(h["expert_load"][0]) == cfg.n_routed_experts
    assert sum(h["expert_load"][0]) == 4 * 32 * cfg.num_experts_per_tok  # every token routed to k experts
    assert m_af.layers[1].mlp.gate.e_score_correction_bias.abs().sum() > 0
    assert m_no.layers[1].mlp.gate.e_score_correction_bias.abs().sum() == 0
    json.dumps(af)  # JSON-serialisable as printed by `dsv3sim train --json`


def test_cli_train_and_generate_json(tmp_path, capsys):
    from dsv3sim.cli import main

    ck = tmp_path / "t.safetensors"
    assert main(["train", "tiny", "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--balance", "aux-loss",
                 "--seed", "1", "--save", str(ck), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"loss_first", "loss_last", "expert_load_max_over_mean", "history"} <= set(out)
    assert main(["generate", "tiny", "--checkpoint", str(ck), "--tokens", "6", "--speculative", "mtp", "--seed", "0",
                 "--json"]) == 0
    g = json.loads(capsys.readouterr().out)
    assert g["identical_output"] and 0 <= g["mtp_acceptance_rate"] <= 1 and g["tokens_per_s"] > 0


@pytest.mark.slow
def test_tiny_300_steps(tiny):
    torch.set_num_threads(2)
    _, af = _run(tiny, "aux-free", 300)
    _, no = _run(tiny, "none", 300)
    assert af["loss_last"] < af["loss_first"] - 2.0
    assert af["expert_load_max_over_mean"] < no["expert_load_max_over_mean"]
