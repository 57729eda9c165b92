"""Registry of the model families the loader reads, and how each one's ``config.json`` maps onto ModelConfig.

A config is recognised by its ``model_type`` or, when that is a derivative's own label (Kimi K2 ships
``model_type: kimi_k2`` with ``architectures: [DeepseekV3ForCausalLM]``), by its ``architectures``. Each family
lists the keys it renames, the defaults of its Hugging Face configuration class for keys a file may omit, the
facts its modeling code fixes (q/k norms, biases, shared-expert gate) and the MoE/attention-variant keys it
understands. A key that looks like an MoE or attention-variant setting (``ARCH_KEY``) but is not understood by
the family is an error naming the keys: a Mixtral relabelled ``mistral`` must not load as a dense 7B model.

Families and their sources (HF transformers ``models/<family>/configuration_*.py`` and ``modeling_*.py``):
- deepseek_v2 / deepseek_v3 (+ kimi_k2): MLA + DeepSeekMoE (DeepSeek-V2 §2, V3 §2; Kimi K2 tech report §2.3).
- qwen3_moe: GQA with per-head q/k RMSNorm, no biases, 128 routed experts, no shared expert; layer i is MoE when
  i is not in ``mlp_only_layers`` and (i+1) % decoder_sparse_step == 0 (Qwen3 tech report §2, Table 2).
- qwen2_moe: GQA with q/k/v biases; a shared expert of ``shared_expert_intermediate_size`` scaled by
  sigmoid(shared_expert_gate(x)) (Qwen2 tech report §2.2.2).
- mixtral: GQA, 8 experts of width ``intermediate_size``, top-2 of a softmax over the chosen logits
  (Mixtral of Experts, arXiv 2401.04088 §2.1).
- gpt_oss: GQA with biases on q/k/v/o, a learned attention sink per head, sliding-window (128) layers alternating
  with full ones (``layer_types``), router with bias, experts with biases and a clamped SwiGLU, expert weights in
  MXFP4 (gpt-oss model card §2).
- dense llama / qwen2 / qwen3 / mistral: GQA with the respective biases, q/k norms and windows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsv3sim.config.errors import ConfigError

# Keys that change the architecture's expert or attention layout. One of these that a family does not read is
# refused (never silently dropped).
ARCH_KEY = re.compile(r"expert|moe|router|routed|topk|top_k|n_group|sparse_step|mlp_only|scoring|lora_rank|"
                      r"qk_nope|qk_rope|v_head_dim|sliding|layer_types|sink|nextn")

# Read by every family under the same name.
COMMON_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
               "tie_word_embeddings", "head_dim")
DEEPSEEK_KEYS = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                 "n_routed_experts", "n_shared_experts", "moe_intermediate_size", "num_experts_per_tok", "n_group",
                 "topk_group", "first_k_dense_replace", "moe_layer_freq", "routed_scaling_factor", "scoring_func",
                 "topk_method", "norm_topk_prob", "aux_loss_alpha", "seq_aux", "num_nextn_predict_layers")
# Fields that size experts: set in a config whose n_routed_experts ends up 0, they mean a contradiction
MOE_SIZE_FIELDS = ("moe_intermediate_size", "num_experts_per_tok", "n_shared_experts",
                   "shared_expert_intermediate_size")
# MoE keys of the HF Qwen/Mixtral/gpt-oss classes that do not change the parameter layout (training options)
MOE_TRAINING_KEYS = ("router_aux_loss_coef", "output_router_logits", "router_jitter_noise")


@dataclass(frozen=True, kw_only=True, slots=True)
class Family:
    name: str
    attention: str  # "mla" | "gqa"
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    keys: tuple[str, ...] = ()  # read under the field's own name (besides COMMON_KEYS)
    renames: dict[str, str] = field(default_factory=dict)  # config key -> ModelConfig field
    defaults: dict[str, Any] = field(default_factory=dict)  # when the key is absent or null
    fixed: dict[str, Any] = field(default_factory=dict)  # set by the family's modeling code
    ignored: tuple[str, ...] = ()  # ARCH_KEY-matching keys read elsewhere or without effect on the layout
    hook: Callable[[dict, dict, str], None] | None = None  # (config, fields so far, name) -> adds fields
    source: str = ""

    @property
    def read_keys(self) -> tuple[str, ...]:
        """Keys copied into ModelConfig fields (renamed where ``renames`` says so); the hook reads the rest."""
        return COMMON_KEYS + self.keys + tuple(self.renames)

    @property
    def understood(self) -> frozenset[str]:
        return frozenset(self.read_keys + self.ignored)


def _windows(d: dict, kw: dict, name: str) -> None:
    """Sliding-window layers: gpt-oss ``layer_types``; Mistral/Mixtral ``sliding_window`` on every layer; Qwen
    ``use_sliding_window`` from layer ``max_window_layers`` on (HF Qwen2/Qwen3 configuration ``layer_types``)."""
    from dsv3sim.config.model_fields import read_bool, read_int, read_list

    win = d.get("sliding_window")
    L = d.get("num_hidden_layers")
    lt = d.get("layer_types")
    if lt is not None:
        kw["layer_types"] = tuple(read_list(name, "layer_types", lt))
    if win is None:
        return
    win = read_int(name, "sliding_window", win)
    if "use_sliding_window" in d and not read_bool(name, "use_sliding_window", d["use_sliding_window"]):
        return  # Qwen: the window is stored but disabled
    kw["sliding_window"] = win
    if lt is None and isinstance(L, int) and not isinstance(L, bool):
        first = d.get("max_window_layers", 0) if "use_sliding_window" in d else 0
        first = read_int(name, "max_window_layers", first)
        kw["layer_types"] = tuple("sliding_attention" if i >= first else "full_attention" for i in range(L))


def _qwen2_moe(d: dict, kw: dict, name: str) -> None:
    _windows(d, kw, name)
    s = d.get("shared_expert_intermediate_size", 0) or 0
    kw["n_shared_experts"] = 1 if s else 0
    kw["shared_expert_gate"] = bool(s)


def _gpt_oss(d: dict, kw: dict, name: str) -> None:
    from dsv3sim.config.model_fields import read_bool, read_float, read_int

    _windows(d, kw, name)
    L = d.get("num_hidden_layers")
    if d.get("layer_types") is None and "sliding_window" in kw and isinstance(L, int) and not isinstance(L, bool):
        # HF GptOssConfig default: even layers sliding, odd layers full
        kw["layer_types"] = tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L))
    b = read_bool(name, "attention_bias", d.get("attention_bias", True))
    kw["qkv_bias"] = kw["o_bias"] = b
    if "experts_per_token" in d and "num_experts_per_tok" in d:
        a, c = (read_int(name, k, d[k]) for k in ("experts_per_token", "num_experts_per_tok"))
        if a != c:
            raise ConfigError(f"{name}: experts_per_token ({a}) and num_experts_per_tok ({c}) disagree")
    elif "experts_per_token" in d:
        kw["num_experts_per_tok"] = d["experts_per_token"]
    kw["swiglu_limit"] = read_float(name, "swiglu_limit", d.get("swiglu_limit", 7.0))


def _attention_bias(d: dict, kw: dict, name: str) -> None:
    """Llama/Mistral/Qwen3: ``attention_bias`` puts a bias on q, k, v and o."""
    from dsv3sim.config.model_fields import read_bool

    b = read_bool(name, "attention_bias", d.get("attention_bias", False))
    kw["qkv_bias"] = kw["o_bias"] = b
    _windows(d, kw, name)


def _qwen3(d: dict, kw: dict, name: str) -> None:
    _attention_bias(d, kw, name)


_DS_IGNORED = ("ep_size", "topk_method", "n_group")
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="deepseek_v2", attention="mla", model_types=("deepseek_v2",),
           architectures=("DeepseekV2ForCausalLM",), keys=DEEPSEEK_KEYS, ignored=_DS_IGNORED,
           defaults={"scoring_func": "softmax", "topk_method": "group_limited_greedy", "norm_topk_prob": False,
                     "routed_scaling_factor": 1.0, "num_nextn_predict_layers": 0, "n_group": 1, "topk_group": 1,
                     "first_k_dense_replace": 0, "moe_layer_freq": 1, "n_shared_experts": 0, "aux_loss_alpha": 0.001,
                     "seq_aux": True},
           source="HF configuration_deepseek.py (DeepSeek-V2); DeepSeek-V2 report §2"),
    Family(name="deepseek_v3", attention="mla", model_types=("deepseek_v3", "kimi_k2"),
           architectures=("DeepseekV3ForCausalLM",), keys=DEEPSEEK_KEYS, ignored=_DS_IGNORED,
           defaults={"scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
                     "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1, "n_group": 8, "topk_group": 4,
                     "first_k_dense_replace": 3, "moe_layer_freq": 1, "n_shared_experts": 1, "aux_loss_alpha": 0.0001,
                     "seq_aux": True, "q_lora_rank": 1536},
           source="HF configuration_deepseek.py (DeepSeek-V3); DeepSeek-V3 report §2; Kimi K2 report §2.3"),
    Family(name="qwen3_moe", attention="gqa", model_types=("qwen3_moe",), architectures=("Qwen3MoeForCausalLM",),
           keys=("moe_intermediate_size", "num_experts_per_tok", "norm_topk_prob"),
           renames={"num_experts": "n_routed_experts", "decoder_sparse_step": "moe_layer_freq",
                    "mlp_only_layers": "mlp_only_layers"},
           defaults={"norm_topk_prob": False, "moe_layer_freq": 1, "n_routed_experts": 128, "num_experts_per_tok": 8,
                     "moe_intermediate_size": 768},
           fixed={"qk_norm": True, "moe_layer_offset": 1, "scoring_func": "softmax", "topk_method": "greedy",
                  "n_shared_experts": 0, "activated_counts_embedding": True},
           ignored=MOE_TRAINING_KEYS + ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types"),
           hook=_qwen3, source="HF configuration_qwen3_moe.py / modeling_qwen3_moe.py; Qwen3 tech report"),
    Family(name="qwen2_moe", attention="gqa", model_types=("qwen2_moe",), architectures=("Qwen2MoeForCausalLM",),
           keys=("moe_intermediate_size", "num_experts_per_tok", "norm_topk_prob", "shared_expert_intermediate_size"),
           renames={"num_experts": "n_routed_experts", "decoder_sparse_step": "moe_layer_freq",
                    "mlp_only_layers": "mlp_only_layers"},
           defaults={"norm_topk_prob": False, "moe_layer_freq": 1, "n_routed_experts": 60, "num_experts_per_tok": 4,
                     "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632},
           fixed={"qkv_bias": True, "moe_layer_offset": 1, "scoring_func": "softmax", "topk_method": "greedy",
                  "activated_counts_embedding": True},
           ignored=MOE_TRAINING_KEYS + ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types"),
           hook=_qwen2_moe, source="HF configuration_qwen2_moe.py / modeling_qwen2_moe.py; Qwen2 report §2.2"),
    Family(name="mixtral", attention="gqa", model_types=("mixtral",), architectures=("MixtralForCausalLM",),
           keys=("num_experts_per_tok",), renames={"num_local_experts": "n_routed_experts"},
           defaults={"n_routed_experts": 8, "num_experts_per_tok": 2},
           fixed={"scoring_func": "softmax", "topk_method": "greedy", "norm_topk_prob": True,
                  "activated_counts_embedding": True, "expert_width_from": "intermediate_size"},
           ignored=MOE_TRAINING_KEYS + ("sliding_window", "layer_types"),
           hook=_attention_bias, source="HF modeling_mixtral.py; Mixtral of Experts (arXiv 2401.04088)"),
    Family(name="gpt_oss", attention="gqa", model_types=("gpt_oss",), architectures=("GptOssForCausalLM",),
           keys=("num_experts_per_tok",), renames={"num_local_experts": "n_routed_experts"},
           defaults={"n_routed_experts": 128, "num_experts_per_tok": 4, "head_dim": 64},
           fixed={"scoring_func": "softmax", "topk_method": "greedy", "norm_topk_prob": True, "attention_sinks": True,
                  "router_bias": True, "expert_bias": True, "expert_width_from": "intermediate_size"},
           ignored=MOE_TRAINING_KEYS + ("experts_per_token", "sliding_window", "layer_types", "swiglu_limit"),
           hook=_gpt_oss, source="HF modeling_gpt_oss.py; gpt-oss-120b & gpt-oss-20b model card (2025)"),
    Family(name="llama", attention="gqa", model_types=("llama",), architectures=("LlamaForCausalLM",),
           hook=_attention_bias, source="HF modeling_llama.py"),
    Family(name="mistral", attention="gqa", model_types=("mistral",), architectures=("MistralForCausalLM",),
           ignored=("sliding_window",), hook=_attention_bias, source="HF modeling_mistral.py"),
    Family(name="qwen2", attention="gqa", model_types=("qwen2",), architectures=("Qwen2ForCausalLM",),
           fixed={"qkv_bias": True}, ignored=("sliding_window", "use_sliding_window", "layer_types"),
           hook=_windows, source="HF modeling_qwen2.py"),
    Family(name="qwen3", attention="gqa", model_types=("qwen3",), architectures=("Qwen3ForCausalLM",),
           fixed={"qk_norm": True}, ignored=("sliding_window", "use_sliding_window", "layer_types"),
           hook=_qwen3, source="HF modeling_qwen3.py"),
)}
_BY_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}
_BY_ARCH = {a: f for f in FAMILIES.values() for a in f.architectures}


def known_model_types() -> list[str]:
    return sorted(_BY_TYPE)


def known_architectures() -> list[str]:
    return sorted(_BY_ARCH)


def family_of(model_type: Any, architectures: Any, name: str) -> Family:
    """The family of a config: its ``model_type`` when known, else its ``architectures``; a conflict is an error."""
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError(f"{name}: field 'model_type' must be a string, got {model_type!r}")
    if architectures is not None and (not isinstance(architectures, list)
                                      or not all(isinstance(a, str) for a in architectures)):
        raise ConfigError(f"{name}: field 'architectures' must be a list of strings, got {architectures!r}")
    by_arch = {_BY_ARCH[a].name: _BY_ARCH[a] for a in architectures or () if a in _BY_ARCH}
    if len(by_arch) > 1:
        raise ConfigError(f"{name}: architectures {architectures!r} name more than one family "
                          f"({', '.join(sorted(by_arch))})")
    fam_t = _BY_TYPE.get(model_type) if model_type is not None else None
    fam_a = next(iter(by_arch.values()), None)
    if fam_t is not None and fam_a is not None and fam_t.name != fam_a.name:
        raise ConfigError(f"{name}: model_type {model_type!r} ({fam_t.name}) and architectures {architectures!r} "
                          f"({fam_a.name}) name different model families")
    fam = fam_t or fam_a
    if fam is None:
        raise ConfigError(f"{name}: unknown model_type {model_type!r} with architectures {architectures!r}; known "
                          f"model types: {', '.join(known_model_types())}; architectures: "
                          f"{', '.join(known_architectures())}")
    return fam
