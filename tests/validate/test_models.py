"""validate runs the project's executable model for every family dsv3sim.nn builds (no stand-in) or refuses it
before launch; the calibration profiles a GQA MoE model's components."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsv3sim.config import load_model_config
from dsv3sim.config.errors import ConfigError
from dsv3sim.validate.components import profile_components
from dsv3sim.validate.nn_adapter import build
from dsv3sim.validate.spec import RunSpec

REPO = Path(__file__).resolve().parents[2]


def _tiny_qwen3(tmp_path: Path) -> Path:
    """Qwen3-MoE (GQA, 128 experts top-8) at toy width: same family, same code paths."""
    cfg = json.loads((REPO / "model" / "qwen3-30b-a3b.json").read_text())
    cfg.update(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, num_experts=16, num_hidden_layers=2, vocab_size=256)
    p = tmp_path / "qwen3-toy.json"
    p.write_text(json.dumps(cfg))
    return p


def test_gqa_moe_builds_from_nn_and_profiles(tmp_path):
    path = _tiny_qwen3(tmp_path)
    cfg = load_model_config(str(path))
    assert cfg.attention != "mla" and cfg.is_moe
    parts = build(cfg, seed=0)
    assert "dsv3sim.nn.transformer.Transformer" in parts.source
    spec = RunSpec(job="calibrate", model=str(path), nproc=1, seq_len=8, micro_batch=2, profile_reps=1)
    out = profile_components(cfg, spec, torch.device("cpu"), lambda: None, parts=parts, reps=1)
    for k in ("attn", "gate", "head", "embed", "optim"):
        assert out[k]["F"] > 0, k
    assert out["expert"]["fwd"]["b_s_per_row"] > 0
    assert 0 < out["window"]["share"] <= 1.5


def test_unsupported_model_refused_naming_the_fields():
    cfg = load_model_config("gpt-oss-120b")
    with pytest.raises(ConfigError, match="router_bias"):
        build(cfg, seed=0)


def test_cli_refuses_unsupported_model_before_launch(capsys):
    from dsv3sim.cli import main

    assert main(["validate", "--model", "gpt-oss-120b", "--nproc", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model gpt-oss-120b" in err[0]
