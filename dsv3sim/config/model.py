"""ModelConfig: a frozen description of a DeepSeek-family (or dense GQA) transformer.

Read from the model's own Hugging Face ``config.json`` (DeepSeek-V2/V3, Llama/Qwen style dense GQA)
or from DeepSeek's inference ``config_671B.json`` (its short key names go through ``INFERENCE_ALIASES``).
Keys absent from the file take the defaults of their ``model_type`` (``MODEL_TYPE_DEFAULTS``).
Every variant is a field; nothing downstream tests for a particular width.

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

DEEPSEEK_TYPES = ("deepseek_v2", "deepseek_v3")
DENSE_TYPES = ("llama", "qwen2", "qwen3", "mistral")

# DeepSeek inference config_671B.json key -> HF config.json key
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

# Defaults per model_type for keys a config may omit (HF configuration_deepseek.py defaults, V2/V3 reports).
MODEL_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "deepseek_v2": dict(scoring_func="softmax", topk_method="group_limited_greedy", norm_topk_prob=False,
                        routed_scaling_factor=1.0, num_nextn_predict_layers=0, n_group=1, topk_group=1,
                        first_k_dense_replace=0, moe_layer_freq=1, n_shared_experts=0, aux_loss_alpha=0.001,
                        seq_aux=True, q_lora_rank=None),
    "deepseek_v3": dict(scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True,
                        routed_scaling_factor=2.5, num_nextn_predict_layers=1, n_group=8, topk_group=4,
                        first_k_dense_replace=3, moe_layer_freq=1, n_shared_experts=1, aux_loss_alpha=0.0001,
                        seq_aux=True, q_lora_rank=1536),
    "llama": dict(),
    "qwen2": dict(),
    "qwen3": dict(),
    "mistral": dict(),
}


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
    """One transformer. ``attention`` is "mla" for DeepSeek models, "gqa" for dense Llama/Qwen configs."""

    name: str
    model_type: str
    attention: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    # GQA
    head_dim: int = 0
    # MLA (DeepSeek-V2 §2.1)
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # DeepSeekMoE (V2 §2.2, V3 §2.1.2)
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    moe_intermediate_size: int = 0
    num_experts_per_tok: int = 0
    n_group: int = 1
    topk_group: int = 1
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    topk_method: str = "greedy"
    norm_topk_prob: bool = False
    aux_loss_alpha: float = 0.0
    seq_aux: bool = True
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

    def is_moe_layer(self, i: int) -> bool:
        """Layer i uses DeepSeekMoE (HF modeling_deepseek: i >= first_k_dense_replace and i % freq == 0)."""
        return self.is_moe and i >= self.first_k_dense_replace and i % self.moe_layer_freq == 0

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


def _validate(c: ModelConfig) -> None:
    def need_pos(name: str) -> None:
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{c.name}: field '{name}' must be a positive integer, got {v!r}")

    if c.attention not in ("mla", "gqa"):
        raise ConfigError(f"{c.name}: attention must be 'mla' or 'gqa', got {c.attention!r}")
    for n in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads"):
        need_pos(n)
    if c.attention == "mla":
        for n in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            need_pos(n)
        if c.q_lora_rank is not None:
            need_pos("q_lora_rank")
    else:
        need_pos("head_dim")
        if c.num_attention_heads % c.num_key_value_heads:
            raise ConfigError(f"{c.name}: num_attention_heads ({c.num_attention_heads}) must be divisible by "
                              f"num_key_value_heads ({c.num_key_value_heads})")
    if c.n_routed_experts < 0:
        raise ConfigError(f"{c.name}: field 'n_routed_experts' must be >= 0, got {c.n_routed_experts}")
    if c.is_moe:
        for n in ("moe_intermediate_size", "num_experts_per_tok", "n_group", "topk_group", "moe_layer_freq"):
            need_pos(n)
        if c.n_shared_experts < 0:
            raise ConfigError(f"{c.name}: field 'n_shared_experts' must be >= 0, got {c.n_shared_experts}")
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
        if c.first_k_dense_replace < 0 or c.first_k_dense_replace > c.num_hidden_layers:
            raise ConfigError(f"{c.name}: first_k_dense_replace ({c.first_k_dense_replace}) must be within "
                              f"[0, num_hidden_layers={c.num_hidden_layers}]")
    if c.num_nextn_predict_layers < 0:
        raise ConfigError(f"{c.name}: field 'num_nextn_predict_layers' must be >= 0, got {c.num_nextn_predict_layers}")


_INT_KEYS = {f.name for f in fields(ModelConfig) if f.type in ("int", "int | None")}


def from_dict(raw: dict[str, Any], name: str = "model") -> ModelConfig:
    """Build a ModelConfig from an HF config.json (or DeepSeek inference config) dict."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: config must be a JSON object, got {type(raw).__name__}")
    d = dict(raw)
    rope = dict(d.get("rope_scaling") or {})
    if "dim" in d and "hidden_size" not in d:  # DeepSeek inference config_671B.json
        d.setdefault("model_type", "deepseek_v3")
        for short, long in INFERENCE_ALIASES.items():
            if short in d:
                v = d.pop(short)
                if long.startswith("rope_scaling."):
                    rope[long.split(".", 1)[1]] = v
                else:
                    d[long] = v
        # ModelArgs defaults of DeepSeek-V3 inference/model.py for keys config_671B.json omits
        for k, v in (("original_max_position_embeddings", 4096), ("factor", 40), ("beta_fast", 32),
                     ("beta_slow", 1), ("mscale", 1.0)):
            rope.setdefault(k, v)
        rope.setdefault("type", "yarn")
        rope.setdefault("mscale_all_dim", rope["mscale"])
        d.setdefault("intermediate_size", d.get("intermediate_size"))
        d.setdefault("num_key_value_heads", d.get("num_attention_heads"))
        d.setdefault("max_position_embeddings", 4096 * 4)  # ModelArgs.max_seq_len
        if d.get("dtype") == "fp8":
            d["quantization_config"] = {"weight_block_size": [128, 128]}
    mt = d.get("model_type")
    if mt not in MODEL_TYPE_DEFAULTS:
        raise ConfigError(f"{name}: unknown model_type {mt!r}; known: {', '.join(MODEL_TYPE_DEFAULTS)}")
    for k, v in MODEL_TYPE_DEFAULTS[mt].items():
        d.setdefault(k, v)
    required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
    missing = [k for k in required if d.get(k) is None]
    if missing:
        raise ConfigError(f"{name}: missing required field(s): {', '.join(missing)}")
    d.setdefault("num_key_value_heads", d["num_attention_heads"])
    attention = "mla" if mt in DEEPSEEK_TYPES else "gqa"
    kw: dict[str, Any] = dict(name=name, model_type=mt, attention=attention)
    for f in fields(ModelConfig):
        if f.name in ("name", "model_type", "attention", "rope_scaling", "fp8_weight_block", "extra"):
            continue
        if f.name in d and d[f.name] is not None or f.name == "q_lora_rank" and f.name in d:
            kw[f.name] = d[f.name]
    for k in _INT_KEYS:
        v = kw.get(k)
        if isinstance(v, float) and v.is_integer():
            kw[k] = int(v)
        elif v is not None and not isinstance(v, int):
            raise ConfigError(f"{name}: field '{k}' must be an integer, got {v!r}")
    if attention == "gqa":
        kw.setdefault("head_dim", d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"])
        kw["n_routed_experts"] = 0
    if rope and (rope.get("type") or rope.get("rope_type")) == "yarn":
        rs = {k: rope[k] for k in ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
                                    "mscale", "mscale_all_dim") if k in rope}
        kw["rope_scaling"] = RopeScaling(**rs)
    q = d.get("quantization_config") or {}
    if q.get("weight_block_size"):
        kw["fp8_weight_block"] = tuple(int(x) for x in q["weight_block_size"])
    kw["extra"] = {k: v for k, v in raw.items() if k not in kw}
    try:
        return ModelConfig(**kw)
    except TypeError as e:  # wrong value types in user input
        raise ConfigError(f"{name}: {e}") from None


def load_model_config(path: str | Path) -> ModelConfig:
    """Load a config file; ``path`` may also be a bare name from the repo's ``model/`` folder."""
    p = resolve_model_path(path)
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None
    return from_dict(raw, name=p.stem)


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
