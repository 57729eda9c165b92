"""Checkpoints: safetensors round trip under DeepSeek's HF names (incl. e_score_correction_bias and FP8
weight_scale_inv); an FP8 checkpoint dequantises within the block bound."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from dsv3sim.nn import checkpoint
from dsv3sim.nn.transformer import Transformer


@pytest.fixture()
def model(tiny):
    torch.manual_seed(0)
    m = Transformer(tiny)
    with torch.no_grad():
        for g in m.moe_layers():
            g.gate.e_score_correction_bias.uniform_(-0.1, 0.1)
    return m


def _keys(path):
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def test_round_trip_hf_names(model, tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    checkpoint.save(model, p)
    keys = _keys(p)
    L = tiny.num_hidden_layers
    for k in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
              "model.layers.0.mlp.gate_proj.weight",  # dense first layer
              "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
              "model.layers.1.mlp.experts.15.down_proj.weight", "model.layers.1.mlp.shared_experts.up_proj.weight",
              "model.layers.1.self_attn.q_a_proj.weight", "model.layers.1.self_attn.q_a_layernorm.weight",
              "model.layers.1.self_attn.kv_a_proj_with_mqa.weight", "model.layers.1.self_attn.kv_b_proj.weight",
              f"model.layers.{L}.eh_proj.weight", f"model.layers.{L}.enorm.weight",
              f"model.layers.{L}.shared_head.norm.weight", f"model.layers.{L}.shared_head.head.weight",
              f"model.layers.{L}.embed_tokens.weight", f"model.layers.{L}.mlp.experts.0.gate_proj.weight"):
        assert k in keys, k
    assert not any(k.endswith("_scale_inv") for k in keys)
    torch.manual_seed(1)
    m2 = Transformer(tiny)
    assert checkpoint.load(m2, p) == []
    for (n, a), b in zip(model.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), n
    tok = torch.randint(0, tiny.vocab_size, (1, 6))
    torch.testing.assert_close(m2(tok), model(tok), rtol=0, atol=0)


def test_fp8_checkpoint(model, tiny, tmp_path):
    p = tmp_path / "fp8.safetensors"
    checkpoint.save(model, p, fp8=True)
    with safe_open(str(p), framework="pt") as f:
        w = f.get_tensor("model.layers.1.self_attn.q_b_proj.weight")
        s = f.get_tensor("model.layers.1.self_attn.q_b_proj.weight_scale_inv")
        assert w.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
        assert s.shape == (-(-w.shape[0] // 128), -(-w.shape[1] // 128))
        assert f.get_tensor("model.layers.1.mlp.gate.weight").dtype == torch.float32  # gate stays high precision
        assert "model.layers.1.mlp.experts.3.up_proj.weight_scale_inv" in f.keys()
        assert "lm_head.weight_scale_inv" not in f.keys()
    m2 = Transformer(tiny)
    checkpoint.load(m2, p)
    a, b = model.layers[1].self_attn.q_b_proj.weight, m2.layers[1].self_attn.q_b_proj.weight
    assert ((a - b).abs() <= a.abs() * 2 ** -4 + a.abs().max() / 448 * 2 ** -10 * 2 + 1e-12).all()
    assert torch.equal(model.layers[1].mlp.gate.e_score_correction_bias, m2.layers[1].mlp.gate.e_score_correction_bias)


def test_load_errors(model, tiny, tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "m.safetensors"
    checkpoint.save(model, p)
    with safe_open(str(p), framework="pt") as f:
        d = {k: f.get_tensor(k) for k in f.keys() if k != "model.norm.weight"}
    save_file(d, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="lacks"):
        checkpoint.load(Transformer(tiny), tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load(Transformer(tiny), tmp_path / "nope.safetensors")
