"""ModelConfig loading: HF keys, inference aliases, model_type defaults, and clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsv3sim.config import ConfigError, from_dict, load_model_config


def test_hf_and_inference_configs_agree():
    hf = load_model_config("deepseek-v3")
    inf = load_model_config("deepseek-v3-inference-671B")
    for f in ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
              "first_k_dense_replace", "num_attention_heads", "n_routed_experts", "n_shared_experts",
              "num_experts_per_tok", "n_group", "topk_group", "routed_scaling_factor", "scoring_func",
              "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        assert getattr(hf, f) == getattr(inf, f), f
    assert hf.softmax_scale == pytest.approx(inf.softmax_scale)


def test_model_type_defaults_fill_absent_keys():
    base = json.loads(load_model_config.__globals__["resolve_model_path"]("deepseek-v2-lite").read_text())
    for k in ("scoring_func", "topk_method", "q_lora_rank"):
        base.pop(k, None)
    c = from_dict(base, "v2lite-stripped")
    assert c.scoring_func == "softmax" and c.q_lora_rank is None
    v3 = {k: v for k, v in json.loads(load_model_config.__globals__["resolve_model_path"]("deepseek-v3").read_text()).items()
          if k not in ("scoring_func", "topk_method")}
    c3 = from_dict(v3, "v3-stripped")
    assert c3.scoring_func == "sigmoid" and c3.topk_method == "noaux_tc"


def test_yarn_mscale_correction():
    c = load_model_config("deepseek-v3")
    # mscale = 0.1 * 1.0 * ln(40) + 1; softmax scale = d_qk^-0.5 * mscale^2 (DeepSeek-V3 inference/model.py)
    import math

    m = 0.1 * math.log(40) + 1
    assert c.softmax_scale == pytest.approx(192 ** -0.5 * m * m)


def test_layers_and_gqa():
    v3 = load_model_config("deepseek-v3")
    assert v3.n_dense_layers == 3 and v3.n_moe_layers == 58
    ll = load_model_config("llama3-70b")
    assert ll.attention == "gqa" and ll.head_dim == 128 and not ll.is_moe


@pytest.mark.parametrize("change, needle", [
    ({"hidden_size": -5}, "hidden_size"),
    ({"n_routed_experts": 250}, "n_group (8)"),
    ({"model_type": "gpt9", "architectures": ["Gpt9ForCausalLM"]}, "unknown model_type 'gpt9'"),
    ({"topk_group": 9}, "topk_group (9)"),
    ({"num_hidden_layers": "sixty"}, "num_hidden_layers"),
])
def test_bad_fields_name_field_and_values(change, needle):
    raw = json.loads(load_model_config.__globals__["resolve_model_path"]("deepseek-v3").read_text())
    raw.update(change)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        from_dict(raw, "bad")


def test_missing_field():
    with pytest.raises(ConfigError, match="missing required field"):
        from_dict({"model_type": "deepseek_v3", "hidden_size": 64}, "bad")


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    raw = json.loads(load_model_config.__globals__["resolve_model_path"]("deepseek-v3").read_text())
    raw["n_routed_experts"] = 250
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(raw))
    r = subprocess.run([sys.executable, "-m", "dsv3sim", "stats", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "n_routed_experts (250)" in r.stderr and len(r.stderr.strip().splitlines()) == 1
