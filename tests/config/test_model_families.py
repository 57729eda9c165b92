"""Model families: recognition by model_type and architectures, published parameter counts, DeepSeek's inference
configs, and the refusal of every malformed or unknown model-config field (one line naming field and value)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsv3sim.config import ConfigError, from_dict, load_model_config
from dsv3sim.config.model import resolve_model_path
from dsv3sim.cost.params import count_params


def raw(name: str) -> dict:
    return json.loads(resolve_model_path(name).read_text())


# Published totals / activated per token. Sources: Kimi K2 model card ("1.04T total, 32B activated");
# Qwen3 tech report Table 1-2 (235B/22B, 30.5B/3.3B); Qwen1.5-MoE-A2.7B blog (14.3B/2.7B);
# Qwen2 report Table 1 (57B/14B); Mixtral paper §1 (46.7B/12.9B); gpt-oss model card Table 1 (116.83B/5.13B);
# DeepSeek-V3 report abstract (671B/37B); DeepSeek-V2 report abstract (236B/21B) and V2-Lite card (15.7B/2.4B).
PUBLISHED = [("kimi-k2", 1.04e12, 32e9), ("qwen3-235b-a22b", 235e9, 22e9), ("qwen3-30b-a3b", 30.5e9, 3.3e9),
             ("mixtral-8x7b", 46.7e9, 12.9e9), ("gpt-oss-120b", 116.83e9, 5.13e9),
             ("qwen1.5-moe-a2.7b", 14.3e9, 2.7e9), ("qwen2-57b-a14b", 57e9, 14e9), ("deepseek-v3", 671e9, 37e9),
             ("deepseek-v2", 236e9, 21e9), ("deepseek-v2-inference-236B", 236e9, 21e9)]


@pytest.mark.parametrize("name, total, activated", PUBLISHED)
def test_published_total_and_activated_within_2_percent(name, total, activated):
    pc = count_params(load_model_config(name))
    assert pc.total == pytest.approx(total, rel=0.02)
    assert pc.activated == pytest.approx(activated, rel=0.02)


def test_conventions_differ_only_in_the_embedding():
    """Qwen/Mistral count the embedding as activated, DeepSeek/OpenAI do not (cost/params.py docstring)."""
    for name, counts in (("qwen3-30b-a3b", True), ("mixtral-8x7b", True), ("gpt-oss-120b", False),
                         ("kimi-k2", False)):
        pc = count_params(load_model_config(name))
        assert (pc.activated_by_component["embedding"] > 0) is counts, name
        assert pc.activated_by_component["head"] == pc.by_component["head"]


def test_recognised_by_architectures():
    k2 = load_model_config("kimi-k2")
    assert (k2.model_type, k2.family, k2.attention) == ("kimi_k2", "deepseek_v3", "mla")
    assert k2.n_routed_experts == 384 and k2.num_attention_heads == 64 and k2.scoring_func == "sigmoid"
    assert k2.num_nextn_predict_layers == 0 and k2.fp8_weight_block == (128, 128)
    # a fine-tune that renames model_type but keeps the architecture (DeepSeek-R1 / V3.1 derivatives)
    r = raw("deepseek-v3")
    r["model_type"] = "my_r1_finetune"
    c = from_dict(r, "ft")
    assert c.family == "deepseek_v3" and count_params(c).total == count_params(load_model_config("deepseek-v3")).total
    with pytest.raises(ConfigError, match="unknown model_type 'x' with architectures"):
        from_dict({**r, "model_type": "x", "architectures": ["XForCausalLM"]}, "x")


def test_deepseek_inference_configs_match_their_hf_configs():
    for inf_name, hf_name in (("deepseek-v2-lite-inference-16B", "deepseek-v2-lite"),
                              ("deepseek-v2-inference-236B", "deepseek-v2"),
                              ("deepseek-v3-inference-671B", "deepseek-v3")):
        inf, hf = load_model_config(inf_name), load_model_config(hf_name)
        for f in ("family", "hidden_size", "num_hidden_layers", "first_k_dense_replace", "n_routed_experts",
                  "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group", "q_lora_rank", "scoring_func",
                  "topk_method", "routed_scaling_factor", "norm_topk_prob", "num_nextn_predict_layers"):
            assert getattr(inf, f) == getattr(hf, f), (inf_name, f)
        assert count_params(inf).total == count_params(hf).total
    lite = load_model_config("deepseek-v2-lite-inference-16B")
    assert lite.q_lora_rank is None and lite.scoring_func == "softmax" and lite.topk_method == "greedy"
    v2 = load_model_config("deepseek-v2-inference-236B")
    assert v2.topk_method == "group_limited_greedy" and v2.model_type == "deepseek_v2"  # no sigmoid gate


def test_q_lora_rank_zero_means_no_query_compression():
    r = raw("deepseek-v2-lite")
    r["q_lora_rank"] = 0
    c = from_dict(r, "z")
    assert c.q_lora_rank is None
    assert count_params(c).total == count_params(load_model_config("deepseek-v2-lite")).total


def test_family_layouts():
    g = load_model_config("gpt-oss-120b")
    assert g.layer_types[:2] == ("sliding_attention", "full_attention") and g.window_of(0) == 128
    assert g.window_of(1) == 0 and g.attention_sinks and g.expert_bias and g.router_bias
    assert g.expert_weight_format == "mxfp4" and g.moe_intermediate_size == 2880
    q = load_model_config("qwen1.5-moe-a2.7b")
    assert q.shared_intermediate_size == 5632 and q.shared_expert_gate and q.qkv_bias and not q.o_bias
    assert q.sliding_window == 0  # stored but disabled (use_sliding_window false)
    m = load_model_config("mixtral-8x7b")
    assert m.moe_intermediate_size == 14336 and m.n_moe_layers == 32 and m.norm_topk_prob
    r = raw("gpt-oss-120b")
    del r["layer_types"]  # HF GptOssConfig default: even layers sliding, odd full
    assert from_dict(r, "g").layer_types == g.layer_types
    r = raw("qwen3-30b-a3b")
    r.update(decoder_sparse_step=2, mlp_only_layers=[3])
    c = from_dict(r, "sparse")
    # HF Qwen3-MoE: MoE when (i+1) % step == 0 and i not in mlp_only_layers
    assert [i for i in range(8) if c.is_moe_layer(i)] == [1, 5, 7]


BAD = [  # (model, change, words the one-line message must contain)
    ("deepseek-v3", {"rope_scaling": [1, 2]}, "'rope_scaling' must be an object or null, got [1, 2]"),
    ("deepseek-v3", {"rope_scaling": 3}, "'rope_scaling' must be an object or null, got 3"),
    ("deepseek-v3", {"model_type": ["deepseek_v3"]}, "'model_type' must be a string"),
    ("deepseek-v3", {"architectures": "DeepseekV3ForCausalLM"}, "'architectures' must be a list of strings"),
    ("deepseek-v3", {"quantization_config": "fp8"}, "'quantization_config' must be an object or null, got 'fp8'"),
    ("llama3-70b", {"num_attention_heads": 0}, "'num_attention_heads' must be a positive integer, got 0"),
    ("deepseek-v3", {"quantization_config": {"weight_block_size": [0, 0]}}, "weight_block_size must be two positive"),
    ("deepseek-v3", {"quantization_config": {"weight_block_size": [128]}}, "got [128]"),
    ("deepseek-v3", {"num_nextn_predict_layers": 1e12}, "'num_nextn_predict_layers' = 1000000000000 exceeds the limit 16"),
    ("deepseek-v3", {"num_hidden_layers": 1e9}, "'num_hidden_layers' = 1000000000 exceeds the limit 1024"),
    ("deepseek-v3", {"vocab_size": 1e30}, "'vocab_size' = "),
    ("deepseek-v3", {"rms_norm_eps": 0}, "'rms_norm_eps' must be in (0, 1), got 0"),
    ("deepseek-v3", {"rms_norm_eps": -1}, "'rms_norm_eps' must be in (0, 1), got -1"),
    ("deepseek-v3", {"rms_norm_eps": "1e-6"}, "'rms_norm_eps' must be a number, got '1e-6'"),
    ("deepseek-v3", {"rms_norm_eps": float("nan")}, "'rms_norm_eps' must be finite, got nan"),
    ("deepseek-v3", {"rope_theta": 0}, "'rope_theta' must be > 0, got 0"),
    ("deepseek-v3", {"rope_theta": -5}, "'rope_theta' must be > 0, got -5"),
    ("deepseek-v3", {"rope_theta": "big"}, "'rope_theta' must be a number, got 'big'"),
    ("deepseek-v3", {"routed_scaling_factor": 0}, "'routed_scaling_factor' must be > 0, got 0"),
    ("deepseek-v3", {"routed_scaling_factor": -2.5}, "'routed_scaling_factor' must be > 0, got -2.5"),
    ("deepseek-v3", {"routed_scaling_factor": "2.5"}, "'routed_scaling_factor' must be a number, got '2.5'"),
    ("deepseek-v3", {"routed_scaling_factor": float("inf")}, "'routed_scaling_factor' must be finite, got inf"),
    ("deepseek-v3", {"norm_topk_prob": "true"}, "'norm_topk_prob' must be true or false, got 'true'"),
    ("deepseek-v3", {"tie_word_embeddings": "false"}, "'tie_word_embeddings' must be true or false, got 'false'"),
    ("deepseek-v3", {"seq_aux": 1}, "'seq_aux' must be true or false, got 1"),
    ("deepseek-v3", {"hidden_size": True}, "'hidden_size' must be an integer, got True"),
    ("deepseek-v3", {"n_group": 8.5}, "'n_group' must be an integer, got 8.5"),
    ("deepseek-v3", {"topk_method": "magic"}, "topk_method must be one of"),
    ("deepseek-v3", {"scoring_func": 3}, "'scoring_func' must be a string, got 3"),
    ("deepseek-v3", {"moe_layer_freq": 0}, "'moe_layer_freq' must be a positive integer, got 0"),
    ("deepseek-v3", {"max_position_embeddings": -1}, "'max_position_embeddings' must be a positive integer"),
    ("deepseek-v3", {"qk_rope_head_dim": 63}, "'qk_rope_head_dim' must be even"),
    ("deepseek-v3", {"rope_scaling": {"type": "yarn", "factor": float("inf")}}, "'rope_scaling.factor' must be finite"),
    ("deepseek-v3", {"rope_scaling": {"type": "yarn", "factor": 0.5}}, "'rope_scaling.factor' must be >= 1"),
    ("deepseek-v3", {"rope_scaling": {"type": "weird"}}, "rope_scaling type must be one of"),
    ("deepseek-v3", {"num_local_experts": 8}, "num_local_experts are not understood for the deepseek_v3 family"),
    ("mixtral-8x7b", {"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
     ("num_experts_per_tok, num_local_experts, output_router_logits, router_aux_loss_coef are not understood for "
     "the mistral family")),
    ("qwen3-235b-a22b", {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]},
     "num_experts, num_experts_per_tok"),
    ("mixtral-8x7b", {"model_type": "mistral"},
     "model_type 'mistral' (mistral) and architectures ['MixtralForCausalLM'] (mixtral) name different"),
    ("llama3-70b", {"q_lora_rank": 1536}, "q_lora_rank are not understood for the llama family"),
    ("gpt-oss-120b", {"layer_types": ["full_attention"] * 3}, "layer_types has 3 entries for num_hidden_layers 36"),
    ("gpt-oss-120b", {"layer_types": ["diagonal"] * 36}, "layer_types must hold only"),
    ("gpt-oss-120b", {"sliding_window": -1}, "'sliding_window' must be >= 0, got -1"),
    ("gpt-oss-120b", {"experts_per_token": 5}, "experts_per_token (5) and num_experts_per_tok (4) disagree"),
    ("gpt-oss-120b", {"quantization_config": {"quant_method": "gptq"}}, "quant_method 'gptq' is not modelled"),
    ("qwen3-30b-a3b", {"mlp_only_layers": [99]}, "mlp_only_layers must be layer indices in [0, 48), got [99]"),
    ("qwen3-30b-a3b", {"mlp_only_layers": "all"}, "'mlp_only_layers' must be a list"),
    ("qwen3-30b-a3b", {"num_experts_per_tok": 200}, "num_experts_per_tok (200) exceeds n_routed_experts (128)"),
    ("qwen1.5-moe-a2.7b", {"use_sliding_window": "no"}, "'use_sliding_window' must be true or false"),
    ("kimi-k2", {"n_routed_experts": None},
     "'n_routed_experts' is None (no routed experts: a dense model) but the config sizes experts with"),
    ("mixtral-8x7b", {"num_local_experts": 0}, "'num_local_experts' is 0 (no routed experts"),
    ("deepseek-v2-lite-inference-16B", {"foo": 1}, "unknown key(s) in a DeepSeek inference config: foo"),
    ("deepseek-v2-lite-inference-16B", {"score_func": ["sigmoid"]}, "'score_func' must be a string"),
    ("deepseek-v2-lite-inference-16B", {"dtype": "int3"}, "'dtype' must be 'bf16' or 'fp8', got 'int3'"),
]


@pytest.mark.parametrize("model, change, needle", BAD, ids=[f"{m}:{','.join(c)}" for m, c, _ in BAD])
def test_refusals_name_field_and_value(model, change, needle):
    r = raw(model)
    r.update(change)
    with pytest.raises(ConfigError) as e:
        from_dict(r, "bad")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and msg.startswith("bad: ")


def test_limits_can_be_raised(monkeypatch):
    r = raw("tiny")
    r["num_hidden_layers"] = 2000
    with pytest.raises(ConfigError, match="exceeds the limit 1024"):
        from_dict(r, "deep")
    assert from_dict(r, "deep", limits={"num_hidden_layers": 4096}).num_hidden_layers == 2000
    monkeypatch.setenv("DSV3SIM_MODEL_LIMITS", "num_hidden_layers=4096")
    assert from_dict(r, "deep").num_hidden_layers == 2000
    monkeypatch.setenv("DSV3SIM_MODEL_LIMITS", "layers=lots")
    with pytest.raises(ConfigError, match="DSV3SIM_MODEL_LIMITS: expected field=N"):
        from_dict(r, "deep")


@pytest.mark.parametrize("change, needle", [({"rms_norm_eps": -1}, "'rms_norm_eps' must be in (0, 1), got -1"),
                                            ({"num_hidden_layers": 1e9}, "exceeds the limit 1024"),
                                            ({"model_type": "mistral"}, "name different model families")])
def test_cli_refuses_with_one_line_and_exit_2(tmp_path, change, needle):
    r = raw("mixtral-8x7b")
    r.update(change)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(r))
    out = subprocess.run([sys.executable, "-m", "dsv3sim", "stats", str(p)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_limit_flag_raises_a_model_limit(tmp_path, capsys):
    """`dsv3sim --limit FIELD=N` raises a model-config size limit for one command, like the other size limits."""
    from dsv3sim.cli import main

    r = raw("tiny")
    r["num_hidden_layers"] = 2000
    p = tmp_path / "deep.json"
    p.write_text(json.dumps(r))
    assert main(["stats", str(p), "--json"]) == 2
    assert "exceeds the limit 1024" in capsys.readouterr().err
    assert main(["--limit", "num_hidden_layers=4096", "stats", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_total"] > 0
    assert main(["--limit", "num_hidden_layers=lots", "stats", str(p)]) == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_unreadable_config_file_is_one_line(tmp_path):
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model_config(p)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        from_dict([1, 2], "list")  # type: ignore[arg-type]
