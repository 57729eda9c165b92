"""Parameter counts of a DeepSeek-family (MLA + DeepSeekMoE + MTP) or GQA (dense or MoE) transformer.

Counts follow the Hugging Face module layout of each family (modeling_deepseek.py, modeling_qwen3_moe.py,
modeling_qwen2_moe.py, modeling_mixtral.py, modeling_gpt_oss.py), so that they equal ``numel()`` of the
executable model (dsv3sim.nn builds every family on the meta device).

"Activated per token" follows each model's own published convention:
- DeepSeek (V3 report, abstract: 671B total, 37B activated), Kimi K2 (1.04T / 32B) and gpt-oss (model card
  Table 1: 116.8B total, 5.13B active, where "active" counts the unembedding but not the embedding): every
  non-expert parameter once, plus the shared experts and the top-k routed experts of each MoE layer; the output
  head counts, the embedding lookup does not.
- Qwen (Qwen3 report Table 1-2: 235B/22B, 30.5B/3.3B; Qwen1.5-MoE-A2.7B: 14.3B/2.7B) and Mistral
  (Mixtral-8x7B: 46.7B/12.9B): the same, plus the embedding (``activated_counts_embedding``).
MTP modules are reported separately (V3 README: 671B main model + 14B MTP module weights = 685B on the Hub,
where the MTP layer stores its own copies of the embedding and output head).

Legend: H hidden, V vocab, nh heads, d_c kv_lora_rank, d_q q_lora_rank, d_n qk_nope, d_r qk_rope, d_v v_head,
E routed experts, I_e moe_intermediate_size, I dense intermediate_size, I_s shared-expert width, hd head_dim,
nkv key/value heads.
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
        if cfg.qkv_bias:
            p["qkv_bias"] = nh * hd + 2 * nkv * hd
        if cfg.o_bias:
            p["o_bias"] = H
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's q and k (weights [hd] shared by the heads)
            p["q_norm"] = p["k_norm"] = hd
        if cfg.attention_sinks:  # gpt-oss: one learned sink logit per head
            p["sinks"] = nh
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


def is_norm(key: str) -> bool:
    return key.endswith("norm")


def mlp_params(cfg: ModelConfig) -> int:
    """Dense SwiGLU MLP: gate, up (H x I) and down (I x H)."""
    return 3 * cfg.hidden_size * cfg.intermediate_size


def expert_matmul_params(cfg: ModelConfig) -> int:
    """Matrices of one routed expert (SwiGLU with I_e): gate, up [I_e, H], down [H, I_e]."""
    return 3 * cfg.hidden_size * cfg.moe_intermediate_size


def expert_params(cfg: ModelConfig) -> int:
    """One routed expert, with gpt-oss's biases (gate/up 2 I_e, down H) where the family has them."""
    bias = 2 * cfg.moe_intermediate_size + cfg.hidden_size if cfg.expert_bias else 0
    return expert_matmul_params(cfg) + bias


def shared_expert_params(cfg: ModelConfig) -> int:
    """All shared experts of one MoE layer as one SwiGLU of width I_s, plus Qwen2-MoE's gate [1, H]."""
    return 3 * cfg.hidden_size * cfg.shared_intermediate_size + (cfg.hidden_size if cfg.shared_expert_gate else 0)


def gate_params(cfg: ModelConfig) -> int:
    """Router centroids E x H, plus the selection bias of aux-loss-free balancing (V3 §2.1.2) for noaux_tc and
    gpt-oss's router bias."""
    E = cfg.n_routed_experts
    return E * cfg.hidden_size + (E if cfg.topk_method == "noaux_tc" else 0) + (E if cfg.router_bias else 0)


def layer_params(cfg: ModelConfig, i: int) -> dict[str, int]:
    """One decoder layer by component."""
    attn = attention_params(cfg)
    norm_in_attn = sum(v for k, v in attn.items() if is_norm(k))
    out = {"attention": sum(attn.values()) - norm_in_attn, "norms": 2 * cfg.hidden_size + norm_in_attn}
    if cfg.is_moe_layer(i):
        out["gate"] = gate_params(cfg)
        out["shared_experts"] = shared_expert_params(cfg)
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
    activated: int  # per token, the family's published convention (module docstring)
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
    if not cfg.activated_counts_embedding:
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
