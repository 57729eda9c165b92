"""Parameter counts of a DeepSeek-family (MLA + DeepSeekMoE + MTP) or dense GQA transformer.

Counts follow the Hugging Face module layout of DeepSeek-V2/V3 (modeling_deepseek.py), so that they equal
``numel()`` of the executable model. "Activated per token" follows DeepSeek's convention (V3 report, abstract:
671B total, 37B activated): every non-expert parameter counts once, plus the shared experts and the top-k
routed experts of each MoE layer; the output head counts, the embedding lookup does not; MTP modules are
reported separately (V3 README: 671B main model + 14B MTP module weights = 685B on the Hub, where the MTP
layer stores its own copies of the embedding and output head).

Legend: H hidden, V vocab, nh heads, d_c kv_lora_rank, d_q q_lora_rank, d_n qk_nope, d_r qk_rope, d_v v_head,
E routed experts, I_e moe_intermediate_size, I dense intermediate_size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsv3sim.config.model import ModelConfig


def attention_params(cfg: ModelConfig) -> dict[str, int]:
    """Weights of one attention block, by matrix (norms inside MLA included). DeepSeek-V2 §2.1.2-2.1.3."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    if cfg.attention == "gqa":
        hd, nkv = cfg.head_dim, cfg.num_key_value_heads
        p = {"q_proj": H * nh * hd, "k_proj": H * nkv * hd, "v_proj": H * nkv * hd, "o_proj": nh * hd * H}
        if _has_qkv_bias(cfg):
            p["qkv_bias"] = nh * hd + 2 * nkv * hd
        return p
    dq = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    p: dict[str, int] = {}
    if cfg.q_lora_rank:
        p["q_a_proj"] = H * cfg.q_lora_rank  # W^{DQ}: c_q = W^{DQ} h        (V2 eq. 12)
        p["q_a_layernorm"] = cfg.q_lora_rank
        p["q_b_proj"] = cfg.q_lora_rank * nh * dq  # W^{UQ}, W^{QR}         (V2 eq. 13-14)
    else:
        p["q_proj"] = H * nh * dq
    p["kv_a_proj_with_mqa"] = H * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)  # W^{DKV}, W^{KR}  (V2 eq. 9, 15)
    p["kv_a_layernorm"] = cfg.kv_lora_rank
    p["kv_b_proj"] = cfg.kv_lora_rank * nh * (cfg.qk_nope_head_dim + cfg.v_head_dim)  # W^{UK}, W^{UV}
    p["o_proj"] = nh * cfg.v_head_dim * H  # W^O                              (V2 eq. 19)
    return p


def _has_qkv_bias(cfg: ModelConfig) -> bool:
    return bool(cfg.extra.get("attention_bias")) or cfg.model_type == "qwen2"


def mlp_params(cfg: ModelConfig) -> int:
    """Dense SwiGLU MLP: gate, up (H x I) and down (I x H)."""
    return 3 * cfg.hidden_size * cfg.intermediate_size


def expert_params(cfg: ModelConfig) -> int:
    """One fine-grained expert (SwiGLU with I_e)."""
    return 3 * cfg.hidden_size * cfg.moe_intermediate_size


def gate_params(cfg: ModelConfig) -> int:
    """Router centroids E x H, plus the selection bias of aux-loss-free balancing (V3 §2.1.2) for noaux_tc."""
    return cfg.n_routed_experts * cfg.hidden_size + (cfg.n_routed_experts if cfg.topk_method == "noaux_tc" else 0)


def layer_params(cfg: ModelConfig, i: int) -> dict[str, int]:
    """One decoder layer by component."""
    attn = attention_params(cfg)
    norm_in_attn = sum(v for k, v in attn.items() if k.endswith("layernorm"))
    out = {"attention": sum(attn.values()) - norm_in_attn, "norms": 2 * cfg.hidden_size + norm_in_attn}
    if cfg.is_moe_layer(i):
        out["gate"] = gate_params(cfg)
        out["shared_experts"] = cfg.n_shared_experts * expert_params(cfg)
        out["routed_experts"] = cfg.n_routed_experts * expert_params(cfg)
    else:
        out["dense_mlp"] = mlp_params(cfg)
    return out


def mtp_module_params(cfg: ModelConfig) -> dict[str, int]:
    """One MTP module (V3 §2.2, eq. 21): enorm, hnorm, projection M_k (2H -> H), its own block (a MoE layer
    in V3), the shared head's RMSNorm. Embedding and output head are shared with the main model."""
    H = cfg.hidden_size
    block = layer_params(cfg, cfg.num_hidden_layers)  # MTP blocks sit after the last main layer
    block["norms"] += 3 * H  # enorm, hnorm, shared_head.norm
    block["mtp_projection"] = 2 * H * H
    return block


@dataclass(frozen=True, kw_only=True, slots=True)
class ParamCounts:
    total: int  # main model, every parameter once (MTP excluded)
    activated: int  # per token, DeepSeek's convention (embedding excluded, head included)
    mtp: int  # all MTP modules, shared embedding/head excluded
    mtp_activated: int
    mtp_per_module: int = 0
    n_mtp_modules: int = 0
    by_component: dict[str, int] = field(default_factory=dict)
    activated_by_component: dict[str, int] = field(default_factory=dict)

    @property
    def total_with_mtp(self) -> int:
        return self.total + self.mtp

    @property
    def hub_checkpoint(self) -> int:
        """As stored on the Hub: MTP layers carry their own embedding and head copies (V3 README: 685B)."""
        per_copy = self.by_component.get("embedding", 0) + self.by_component.get("head", 0)
        return self.total + self.mtp + self.n_mtp_modules * per_copy


def count_params(cfg: ModelConfig) -> ParamCounts:
    """Total and activated parameters by component. Equal to numel() of dsv3sim.nn's model."""
    H, V = cfg.hidden_size, cfg.vocab_size
    comp: dict[str, int] = {"embedding": V * H, "head": 0 if cfg.tie_word_embeddings else V * H,
                            "attention": 0, "dense_mlp": 0, "shared_experts": 0, "routed_experts": 0,
                            "norms": H, "gate": 0}
    for i in range(cfg.num_hidden_layers):
        for k, v in layer_params(cfg, i).items():
            comp[k] += v
    total = sum(comp.values())
    act = dict(comp)
    act["embedding"] = 0
    if cfg.is_moe:
        act["routed_experts"] = cfg.n_moe_layers * cfg.num_experts_per_tok * expert_params(cfg)
    if cfg.tie_word_embeddings:
        act["head"] = V * H
    mtp_one = mtp_module_params(cfg) if cfg.num_nextn_predict_layers else {}
    mtp_per = sum(mtp_one.values())
    mtp_act_one = dict(mtp_one)
    if "routed_experts" in mtp_act_one:
        mtp_act_one["routed_experts"] = cfg.num_experts_per_tok * expert_params(cfg)
    n = cfg.num_nextn_predict_layers
    return ParamCounts(total=total, activated=sum(act.values()), mtp=n * mtp_per,
                       mtp_activated=n * sum(mtp_act_one.values()) if n else 0, mtp_per_module=mtp_per,
                       n_mtp_modules=n, by_component=comp, activated_by_component=act)
