"""ModelConfig: a frozen description of a DeepSeek-family (MLA) or GQA transformer, dense or MoE.

Read from the model's own Hugging Face ``config.json``: DeepSeek-V2/V3 and their derivatives (Kimi K2,
DeepSeek-V3.1/R1 fine-tunes, recognised by ``architectures``), Qwen3-MoE, Qwen2-MoE, Mixtral, gpt-oss and
dense Llama/Qwen/Mistral (the family registry and its key maps: ``model_families.py``); or from DeepSeek's
inference ``config_16B/236B/671B.json`` (short key names through ``INFERENCE_ALIASES``; a softmax gate reads
as V2, a sigmoid one as V3; ``q_lora_rank: 0`` means no query compression). Keys absent from the file take the
defaults of the family's HF configuration class. Every value is type-checked, finite and bounded
(``model_fields.py``); every variant is a field; nothing downstream tests for a particular width.

Facts: DeepSeek-V2 report (arXiv 2405.04434) §2.1 (MLA), §2.2 (DeepSeekMoE, device-limited routing);
DeepSeek-V3 report (arXiv 2412.19437) §2.1.2 (sigmoid gate, aux-loss-free bias, node-limited routing),
§2.2 (MTP), §3.3 (FP8).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model_families import ARCH_KEY, MOE_SIZE_FIELDS, Family, family_of
from dsv3sim.config.model_fields import (
    check_limit,
    effective_limits,
    read_dict,
    read_float,
    read_int,
    read_list,
    read_str,
    read_value,
)

# DeepSeek inference config (config_16B/236B/671B.json, DeepSeek-V3 inference/model.py ModelArgs) -> HF key
INFERENCE_ALIASES: dict[str, str] = {
    "dim": "hidden_size",
    "inter_dim": "intermediate_size",
    "moe_inter_dim": "moe_intermediate_size",
    "n_layers": "num_hidden_layers",
    "n_dense_layers": "first_k_dense_replace",
    "n_heads": "num_attention_heads",
    "n_activated_experts": "num_experts_per_tok",
    "n_expert_groups": "n_group",
    "n_limited_groups": "topk_group",
    "route_scale": "routed_scaling_factor",
    "score_func": "scoring_func",
    "original_seq_len": "rope_scaling.original_max_position_embeddings",
    "rope_factor": "rope_scaling.factor",
    "beta_fast": "rope_scaling.beta_fast",
    "beta_slow": "rope_scaling.beta_slow",
    "mscale": "rope_scaling.mscale",
    "max_seq_len": "max_position_embeddings",
}
# ModelArgs fields read under their own name; together with INFERENCE_ALIASES the closed key set of the format
INFERENCE_KEYS = ("vocab_size", "n_routed_experts", "n_shared_experts", "q_lora_rank", "kv_lora_rank",
                  "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_theta", "dtype", "max_batch_size",
                  "scale_fmt")
# ModelArgs defaults (DeepSeek-V3 inference/model.py) for keys an inference config omits
INFERENCE_DEFAULTS: dict[str, Any] = {"first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
                                          "routed_scaling_factor": 1.0, "scoring_func": "softmax", "q_lora_rank": 0,
                                          "max_position_embeddings": 4096 * 4, "rope_theta": 10000.0}
ROPE_TYPES = ("yarn", "default", "linear", "dynamic", "llama3", "longrope", "su", "mrope", "ntk")
TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")
LAYER_TYPES = ("full_attention", "sliding_attention")
EXPERT_FORMATS = ("", "mxfp4")


@dataclass(frozen=True, kw_only=True, slots=True)
class RopeScaling:
    """YaRN long-context scaling (DeepSeek-V2 §3.3 / App.; Peng et al. 2023)."""

    type: str = "yarn"
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0

    def softmax_mscale(self) -> float:
        """Multiplier of the softmax scale: mscale(factor, mscale_all_dim)**2 (DeepSeek-V3 inference/model.py)."""
        if self.type != "yarn" or self.factor <= 1.0 or not self.mscale_all_dim:
            return 1.0
        m = 0.1 * self.mscale_all_dim * math.log(self.factor) + 1.0
        return m * m


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """One transformer. ``attention`` is "mla" for the DeepSeek family (incl. Kimi K2), "gqa" for the others;
    ``family`` names the FAMILIES entry it was read as (model_families.py)."""

    name: str
    model_type: str
    attention: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    family: str = ""
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    # GQA (Llama / Qwen / Mixtral / gpt-oss): biases, per-head q/k RMSNorm (Qwen3), a learned softmax sink per
    # head (gpt-oss), sliding-window layers (layer_types[i] == "sliding_attention" attends the last
    # sliding_window keys)
    head_dim: int = 0
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    attention_sinks: bool = False
    sliding_window: int = 0
    layer_types: tuple[str, ...] = ()
    # MLA (DeepSeek-V2 §2.1)
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE (DeepSeekMoE V2 §2.2, V3 §2.1.2; Qwen/Mixtral/gpt-oss routers are softmax + top-k, n_group = 1)
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0  # 0: n_shared_experts x moe_intermediate_size (DeepSeek)
    shared_expert_gate: bool = False  # Qwen2-MoE: sigmoid(W x) scales the shared expert
    router_bias: bool = False  # gpt-oss
    expert_bias: bool = False  # gpt-oss: biases of gate/up [2I] and down [H] per expert
    swiglu_limit: float = 0.0  # gpt-oss clamped SwiGLU (0: plain SwiGLU)
    expert_weight_format: str = ""  # "mxfp4" (gpt-oss checkpoint) or "" (as the rest of the model)
    num_experts_per_tok: int = 0
    n_group: int = 1
    topk_group: int = 1
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    moe_layer_offset: int = 0  # layer i is MoE when (i + offset) % freq == 0 (Qwen: 1, DeepSeek: 0)
    mlp_only_layers: tuple[int, ...] = ()
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    topk_method: str = "greedy"
    norm_topk_prob: bool = False
    aux_loss_alpha: float = 0.0
    seq_aux: bool = True
    # counting convention: Qwen and Mistral count the embedding in the activated parameters, DeepSeek and
    # OpenAI do not (cost/params.py)
    activated_counts_embedding: bool = False
    # MTP (V3 §2.2)
    num_nextn_predict_layers: int = 0
    # FP8 (V3 §3.3): weight block [rows, cols], None when the checkpoint is not quantised
    fp8_weight_block: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _validate(self)

    # --- derived ---------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.attention == "mla" else self.head_dim

    @property
    def v_dim(self) -> int:
        """Per-head value width: v_head_dim (MLA) or head_dim (GQA)."""
        return self.v_head_dim if self.attention == "mla" else self.head_dim

    @property
    def rope_dim(self) -> int:
        """Rotated width per head: the decoupled rope key (MLA) or the whole head (GQA)."""
        return self.qk_rope_head_dim if self.attention == "mla" else self.head_dim

    @property
    def shared_intermediate_size(self) -> int:
        """Width of the shared expert(s) as one SwiGLU (0 without shared experts)."""
        if not self.n_shared_experts:
            return 0
        return self.shared_expert_intermediate_size or self.n_shared_experts * self.moe_intermediate_size

    def is_moe_layer(self, i: int) -> bool:
        """Layer i is MoE: i >= first_k_dense_replace, (i + moe_layer_offset) % moe_layer_freq == 0 and i not in
        mlp_only_layers (HF modeling_deepseek / modeling_qwen*_moe)."""
        return (self.is_moe and i >= self.first_k_dense_replace and (i + self.moe_layer_offset) % self.moe_layer_freq == 0
                and i not in self.mlp_only_layers)

    def window_of(self, i: int) -> int:
        """Keys attended by layer i's sliding window, 0 for a full-attention layer (MTP layers are full)."""
        if 0 <= i < len(self.layer_types) and self.layer_types[i] == "sliding_attention":
            return self.sliding_window
        return 0

    @property
    def n_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.num_hidden_layers))

    @property
    def n_dense_layers(self) -> int:
        return self.num_hidden_layers - self.n_moe_layers

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(d_qk), times the YaRN mscale correction for extended contexts."""
        s = self.qk_head_dim ** -0.5
        if self.rope_scaling is not None and self.max_position_embeddings > self.rope_scaling.original_max_position_embeddings:
            s *= self.rope_scaling.softmax_mscale()
        return s

    def with_(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


_KINDS = {f.name: f.type for f in fields(ModelConfig)}


def _need_pos(c: ModelConfig, name: str) -> None:
    v = getattr(c, name)
    if v <= 0:
        raise ConfigError(f"{c.name}: field '{name}' must be a positive integer, got {v!r}")


def _need_nonneg(c: ModelConfig, name: str) -> None:
    if getattr(c, name) < 0:
        raise ConfigError(f"{c.name}: field '{name}' must be >= 0, got {getattr(c, name)!r}")


def _validate(c: ModelConfig) -> None:
    """Types, finiteness and ranges of every field, with the field and value in each message."""
    for f, kind in _KINDS.items():
        if kind in ("int", "int | None", "float", "bool", "str"):
            read_value(c.name, f, getattr(c, f), kind)
    _check_sizes(c)
    _check_attention(c)
    _check_nonneg_and_formats(c)
    _check_layer_types(c)
    if c.is_moe:
        _check_moe_routing(c)
    _check_fp8_block(c)


def _check_sizes(c: ModelConfig) -> None:
    """The attention kind, the core sizes, the norm epsilon and the RoPE base."""
    if c.attention not in ("mla", "gqa"):
        raise ConfigError(f"{c.name}: attention must be 'mla' or 'gqa', got {c.attention!r}")
    for n in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "max_position_embeddings"):
        _need_pos(c, n)
    if not 0 < c.rms_norm_eps < 1:
        raise ConfigError(f"{c.name}: field 'rms_norm_eps' must be in (0, 1), got {c.rms_norm_eps!r}")
    if c.rope_theta <= 0:
        raise ConfigError(f"{c.name}: field 'rope_theta' must be > 0, got {c.rope_theta!r}")


def _check_attention(c: ModelConfig) -> None:
    """MLA's latent and head widths (V2 report §2.1), or GQA's head width and head grouping."""
    if c.attention == "mla":
        for n in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            _need_pos(c, n)
        if c.q_lora_rank is not None:
            _need_pos(c, "q_lora_rank")
        if c.qk_rope_head_dim % 2:
            raise ConfigError(f"{c.name}: field 'qk_rope_head_dim' must be even (rotated in pairs), got "
                              f"{c.qk_rope_head_dim}")
    else:
        _need_pos(c, "head_dim")
        if c.num_attention_heads % c.num_key_value_heads:
            raise ConfigError(f"{c.name}: num_attention_heads ({c.num_attention_heads}) must be divisible by "
                              f"num_key_value_heads ({c.num_key_value_heads})")


def _check_nonneg_and_formats(c: ModelConfig) -> None:
    """Counts that may be zero (experts, MTP depth, window), the aux-loss weight, the SwiGLU clamp, the expert
    weight format."""
    for n in ("n_routed_experts", "n_shared_experts", "shared_expert_intermediate_size", "num_nextn_predict_layers",
              "sliding_window", "moe_layer_offset"):
        _need_nonneg(c, n)
    if c.aux_loss_alpha < 0:
        raise ConfigError(f"{c.name}: field 'aux_loss_alpha' must be >= 0, got {c.aux_loss_alpha!r}")
    if c.swiglu_limit < 0:
        raise ConfigError(f"{c.name}: field 'swiglu_limit' must be >= 0, got {c.swiglu_limit!r}")
    if c.expert_weight_format not in EXPERT_FORMATS:
        raise ConfigError(f"{c.name}: expert_weight_format must be one of {EXPERT_FORMATS}, got "
                          f"{c.expert_weight_format!r}")


def _check_layer_types(c: ModelConfig) -> None:
    """Per-layer attention kinds: known names, one per layer, a window where sliding layers need one."""
    if not c.layer_types:
        return
    bad = sorted({t for t in c.layer_types if t not in LAYER_TYPES}, key=str)
    if bad:
        raise ConfigError(f"{c.name}: layer_types must hold only {', '.join(LAYER_TYPES)}; got {bad}")
    if len(c.layer_types) != c.num_hidden_layers:
        raise ConfigError(f"{c.name}: layer_types has {len(c.layer_types)} entries for num_hidden_layers "
                          f"{c.num_hidden_layers}")
    if "sliding_attention" in c.layer_types and c.sliding_window <= 0:
        raise ConfigError(f"{c.name}: sliding_attention layers need sliding_window > 0, got {c.sliding_window}")


def _check_moe_routing(c: ModelConfig) -> None:
    """Expert widths, top-k within the group limit (V2 report §2.2, V3 report §2.1.2), the gate's scoring and
    selection method, and which layers are MoE."""
    for n in ("moe_intermediate_size", "num_experts_per_tok", "n_group", "topk_group", "moe_layer_freq"):
        _need_pos(c, n)
    if c.routed_scaling_factor <= 0:
        raise ConfigError(f"{c.name}: field 'routed_scaling_factor' must be > 0, got {c.routed_scaling_factor!r}")
    if c.num_experts_per_tok > c.n_routed_experts:
        raise ConfigError(f"{c.name}: num_experts_per_tok ({c.num_experts_per_tok}) exceeds n_routed_experts "
                          f"({c.n_routed_experts})")
    if c.n_routed_experts % c.n_group:
        raise ConfigError(f"{c.name}: n_routed_experts ({c.n_routed_experts}) must be divisible by "
                          f"n_group ({c.n_group})")
    if c.topk_group > c.n_group:
        raise ConfigError(f"{c.name}: topk_group ({c.topk_group}) must be <= n_group ({c.n_group})")
    per_group = c.n_routed_experts // c.n_group
    if c.num_experts_per_tok > c.topk_group * per_group:
        raise ConfigError(f"{c.name}: num_experts_per_tok ({c.num_experts_per_tok}) exceeds the experts in "
                          f"topk_group ({c.topk_group}) groups of {per_group}")
    if c.scoring_func not in ("softmax", "sigmoid"):
        raise ConfigError(f"{c.name}: scoring_func must be 'softmax' or 'sigmoid', got {c.scoring_func!r}")
    if c.topk_method not in TOPK_METHODS:
        raise ConfigError(f"{c.name}: topk_method must be one of {', '.join(TOPK_METHODS)}, got "
                          f"{c.topk_method!r}")
    if c.first_k_dense_replace < 0 or c.first_k_dense_replace > c.num_hidden_layers:
        raise ConfigError(f"{c.name}: first_k_dense_replace ({c.first_k_dense_replace}) must be within "
                          f"[0, num_hidden_layers={c.num_hidden_layers}]")
    bad_l = [i for i in c.mlp_only_layers if isinstance(i, bool) or not isinstance(i, int)
             or not 0 <= i < c.num_hidden_layers]
    if bad_l:
        raise ConfigError(f"{c.name}: mlp_only_layers must be layer indices in [0, {c.num_hidden_layers}), "
                          f"got {bad_l}")


def _check_fp8_block(c: ModelConfig) -> None:
    """The FP8 weight-quantisation block (V3 report §3.3: 128x128 weight blocks)."""
    if c.fp8_weight_block is not None:
        blk = c.fp8_weight_block
        if (len(blk) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in blk)):
            raise ConfigError(f"{c.name}: quantization_config.weight_block_size must be two positive integers "
                              f"[rows, cols], got {list(blk)}")


_SPECIAL = ("name", "model_type", "attention", "family", "rope_scaling", "fp8_weight_block", "extra", "layer_types",
            "mlp_only_layers")


def _inference_to_hf(d: dict[str, Any], name: str) -> dict[str, Any]:
    """DeepSeek's inference format (config_16B/236B/671B.json) -> HF keys. The family follows the gate: sigmoid
    scores mean V3's aux-loss-free gate (noaux_tc, with the selection bias), softmax means V2's; V2's group
    limit is group_limited_greedy (group scored by its max, V3 inference/model.py Gate for dim != 7168)."""
    unknown = sorted(k for k in d if k not in INFERENCE_ALIASES and k not in INFERENCE_KEYS)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) in a DeepSeek inference config: {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(set(INFERENCE_ALIASES) | set(INFERENCE_KEYS)))})")
    out: dict[str, Any] = {}
    rope: dict[str, Any] = {}
    for k, v in d.items():
        long = INFERENCE_ALIASES.get(k, k)
        if long.startswith("rope_scaling."):
            rope[long.split(".", 1)[1]] = v
        else:
            out[long] = v
    for k, v in INFERENCE_DEFAULTS.items():
        out.setdefault(k, v)
    score = read_str(name, "score_func", out["scoring_func"])
    v3 = score == "sigmoid"
    out["model_type"] = "deepseek_v3" if v3 else "deepseek_v2"
    if not v3:
        out.setdefault("num_nextn_predict_layers", 0)
        out["topk_method"] = "group_limited_greedy" if out["n_group"] != 1 else "greedy"
    for k, v in (("original_max_position_embeddings", 4096), ("factor", 40), ("beta_fast", 32),
                 ("beta_slow", 1), ("mscale", 1.0)):
        rope.setdefault(k, v)
    rope["type"] = "yarn"
    rope.setdefault("mscale_all_dim", rope["mscale"])
    out["rope_scaling"] = rope
    out["num_key_value_heads"] = out.get("num_attention_heads")
    dtype = out.pop("dtype", "bf16")
    if dtype not in ("bf16", "fp8"):
        raise ConfigError(f"{name}: field 'dtype' must be 'bf16' or 'fp8', got {dtype!r}")
    if dtype == "fp8":
        out["quantization_config"] = {"weight_block_size": [128, 128]}
    for k in ("max_batch_size", "scale_fmt"):
        out.pop(k, None)
    return out


def _rope(r: Any, name: str) -> RopeScaling | None:
    rope = read_dict(name, "rope_scaling", r)
    if not rope:
        return None
    typ = rope.get("type", rope.get("rope_type"))
    if typ not in ROPE_TYPES:
        raise ConfigError(f"{name}: rope_scaling type must be one of {', '.join(ROPE_TYPES)}, got {typ!r}")
    if "factor" in rope and read_float(name, "rope_scaling.factor", rope["factor"]) <= 0:
        raise ConfigError(f"{name}: field 'rope_scaling.factor' must be > 0, got {rope['factor']!r}")
    if typ != "yarn":
        return None
    kw: dict[str, Any] = {}
    for k in ("factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
        if k in rope:
            kw[k] = read_float(name, f"rope_scaling.{k}", rope[k])
    if "original_max_position_embeddings" in rope:
        kw["original_max_position_embeddings"] = read_int(name, "rope_scaling.original_max_position_embeddings",
                                                          rope["original_max_position_embeddings"])
    if kw.get("factor", 1.0) < 1.0:
        raise ConfigError(f"{name}: field 'rope_scaling.factor' must be >= 1 for yarn, got {kw['factor']!r}")
    for k in ("beta_fast", "beta_slow"):
        if kw.get(k, 1.0) <= 0:
            raise ConfigError(f"{name}: field 'rope_scaling.{k}' must be > 0, got {kw[k]!r}")
    for k in ("mscale", "mscale_all_dim"):
        if kw.get(k, 0.0) < 0:
            raise ConfigError(f"{name}: field 'rope_scaling.{k}' must be >= 0, got {kw[k]!r}")
    if kw.get("original_max_position_embeddings", 1) <= 0:
        raise ConfigError(f"{name}: field 'rope_scaling.original_max_position_embeddings' must be > 0, got "
                          f"{kw['original_max_position_embeddings']!r}")
    return RopeScaling(**kw)


def _quantization(q: Any, name: str) -> tuple[tuple[int, int] | None, str]:
    """(FP8 weight block, expert weight format) from ``quantization_config``."""
    q = read_dict(name, "quantization_config", q)
    method = read_str(name, "quantization_config.quant_method", q["quant_method"]) if "quant_method" in q else ""
    if method == "mxfp4":
        return None, "mxfp4"
    if method not in ("", "fp8"):
        raise ConfigError(f"{name}: quantization_config.quant_method {method!r} is not modelled (known: fp8, mxfp4)")
    if q.get("weight_block_size") is None:
        return None, ""
    blk = read_list(name, "quantization_config.weight_block_size", q["weight_block_size"])
    if len(blk) != 2:
        raise ConfigError(f"{name}: quantization_config.weight_block_size must be two positive integers "
                          f"[rows, cols], got {blk!r}")
    vals = tuple(read_int(name, "quantization_config.weight_block_size", x) for x in blk)
    if min(vals) <= 0:
        raise ConfigError(f"{name}: quantization_config.weight_block_size must be two positive integers "
                          f"[rows, cols], got {blk!r}")
    return (vals[0], vals[1]), ""


def from_dict(raw: dict[str, Any], name: str = "model", *, limits: dict[str, int] | None = None) -> ModelConfig:
    """Build a ModelConfig from an HF config.json (or a DeepSeek inference config) dict. Bad input raises one
    ConfigError naming the field and the value (model_fields.py, model_families.py)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: config must be a JSON object, got {type(raw).__name__}")
    lim = effective_limits(limits)
    d = dict(raw)
    if "dim" in d and "hidden_size" not in d and "model_type" not in d:
        d = _inference_to_hf(d, name)
    fam = family_of(d.get("model_type"), d.get("architectures"), name)
    unknown = sorted(k for k in d if ARCH_KEY.search(k) and k not in fam.understood)
    if unknown:
        raise ConfigError(f"{name}: key(s) {', '.join(unknown)} are not understood for the {fam.name} family "
                          f"(model_type {d.get('model_type')!r}); refusing to drop them and build a different model")
    kw, width_from = _family_values(d, fam, name)
    _read_typed_values(kw, lim, name)
    if width_from:
        kw["moe_intermediate_size"] = kw[width_from]
    _check_dense_has_no_expert_sizes(d, kw, fam, name)
    _normalise_shapes(kw, fam, lim, name)
    kw["rope_scaling"] = _rope(d.get("rope_scaling"), name)
    blk, fmt = _quantization(d.get("quantization_config"), name)
    if blk is not None:
        kw["fp8_weight_block"] = blk
    if fmt:
        kw["expert_weight_format"] = fmt
    kw.update(name=name, model_type=str(d.get("model_type")), attention=fam.attention, family=fam.name)
    kw["extra"] = {k: v for k, v in raw.items() if k not in kw}
    try:
        return ModelConfig(**kw)
    except TypeError as e:  # wrong value types in user input
        raise ConfigError(f"{name}: {e}") from None


def _family_values(d: dict[str, Any], fam: Family, name: str) -> tuple[dict[str, Any], str | None]:
    """Field values: the file's (renamed), then the family's defaults for absent/null keys, then its fixed facts.
    Returns them and the field the expert width is copied from (None: the file sizes experts itself)."""
    kw: dict[str, Any] = {}
    for k in fam.read_keys:
        if k in d and (d[k] is not None or k == "q_lora_rank"):
            kw[fam.renames.get(k, k)] = d[k]
    for k, v in fam.defaults.items():
        if kw.get(k) is None and not (k == "q_lora_rank" and "q_lora_rank" in d):
            kw[k] = v
    if fam.hook is not None:
        fam.hook(d, kw, name)
    fixed = dict(fam.fixed)
    width_from = fixed.pop("expert_width_from", None)
    kw.update(fixed)
    required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
    missing = [k for k in required if kw.get(k) is None]
    if missing:
        raise ConfigError(f"{name}: missing required field(s): {', '.join(missing)}")
    kw.setdefault("num_key_value_heads", kw["num_attention_heads"])
    return kw, width_from


def _read_typed_values(kw: dict[str, Any], lim: dict[str, int], name: str) -> None:
    """Each plain field read as its annotated type (in place), integers held to their size limits."""
    for k in list(kw):
        if k in _KINDS and k not in _SPECIAL:
            kw[k] = read_value(name, k, kw[k], _KINDS[k])
            if k in lim and isinstance(kw[k], int):
                check_limit(name, k, kw[k], lim)


def _check_dense_has_no_expert_sizes(d: dict[str, Any], kw: dict[str, Any], fam: Family, name: str) -> None:
    """A dense model only when nothing sizes experts (HF DeepSeek-V2: n_routed_experts null = dense MLPs)."""
    if kw.get("n_routed_experts"):
        return
    sized = sorted(k for k in d if fam.renames.get(k, k) in MOE_SIZE_FIELDS and d[k] not in (None, 0))
    if sized:
        src = next((k for k, f in fam.renames.items() if f == "n_routed_experts"), "n_routed_experts")
        raise ConfigError(f"{name}: field '{src}' is {d.get(src)!r} (no routed experts: a dense model) but the "
                          f"config sizes experts with {', '.join(sized)}")


def _normalise_shapes(kw: dict[str, Any], fam: Family, lim: dict[str, int], name: str) -> None:
    """In place: q_lora_rank 0 as None, layer lists as tuples, GQA's head_dim (derived when absent, limited)."""
    if kw.get("q_lora_rank") == 0:
        kw["q_lora_rank"] = None  # q_lora_rank 0 / null: no query compression (V2-Lite)
    if "mlp_only_layers" in kw:
        kw["mlp_only_layers"] = tuple(read_list(name, "mlp_only_layers", kw["mlp_only_layers"]))
    if "layer_types" in kw:
        kw["layer_types"] = tuple(kw["layer_types"])
    if fam.attention == "gqa":
        if "head_dim" not in kw:
            kw["head_dim"] = kw["hidden_size"] // kw["num_attention_heads"] if kw["num_attention_heads"] > 0 else 0
        check_limit(name, "head_dim", kw["head_dim"], lim)


def load_model_config(path: str | Path, *, limits: dict[str, int] | None = None) -> ModelConfig:
    """Load a config file; ``path`` may also be a bare name from the repo's ``model/`` folder."""
    p = resolve_model_path(path)
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the model config ({e.strerror or e})") from None
    return from_dict(raw, name=p.stem, limits=limits)


def model_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "model"


def resolve_model_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    for cand in (model_dir() / p, model_dir() / f"{p}.json"):
        if cand.is_file():
            return cand
    known = sorted(x.stem for x in model_dir().glob("*.json"))
    raise ConfigError(f"model config {str(path)!r} not found (a path, or one of: {', '.join(known)})")
