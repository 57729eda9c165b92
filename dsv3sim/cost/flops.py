"""FLOPs per token: training (forward + backward, causal attention at sequence length S), prefill, decode.

Conventions (stated so users can compare):
- A matmul of an [m, k] by [k, n] costs 2 m k n FLOPs. Norms, activations, softmax and rope are ignored
  (< 1% at DeepSeek-V3 shapes).
- Linear FLOPs per token = 2 x (activated matmul parameters), the output head included, the embedding lookup
  not (it is a gather). Backward = 2 x forward (input and weight gradients), so training = 3 x forward.
- Causal attention at sequence length S: a query at position i attends i+1 keys; the mean is (S+1)/2. Per
  layer and token the forward core costs 2 nh (d_qk + d_v) (S+1)/2 (QK^T and PV).
- Sliding-window layers (gpt-oss, Mistral; ``cfg.window_of(i)`` = W) attend at most W keys: the causal mean
  becomes (sum_{p=1..S} min(p, W)) / S and decode reads min(C, W) keys. Attention sinks (one logit per head)
  and biases are ignored like norms.
- Decode at context C uses MLA's absorbed form (DeepSeek-V2 §2.1.2, "absorb W^{UK} into W^{UQ} and W^{UV}
  into W^O"): scores over the latent cost 2 nh (d_c + d_r) C, the weighted sum 2 nh d_c C, plus the
  absorptions 2 nh d_n d_c (query) and 2 nh d_c d_v (output) per token; kv_b_proj is not applied per step.
Check: DeepSeek-V3 at S=4096 gives ~250 GFLOP/token for training ("Insights into DeepSeek-V3", ISCA'25, Table 2:
250 GFLOPS/token) — reproduced in tests/validation/test_published_stats.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.params import attention_params, expert_matmul_params, is_norm, mlp_params

_NOT_MATMUL = ("qkv_bias", "o_bias", "sinks")


def attention_linear_params(cfg: ModelConfig) -> int:
    """Weights of the attention projections (norms, biases and sinks excluded)."""
    return sum(v for k, v in attention_params(cfg).items() if not is_norm(k) and k not in _NOT_MATMUL)


def layer_linear_params_activated(cfg: ModelConfig, i: int) -> dict[str, int]:
    out = {"attention_proj": attention_linear_params(cfg)}
    if cfg.is_moe_layer(i):
        out["gate"] = cfg.n_routed_experts * cfg.hidden_size
        out["shared_experts"] = 3 * cfg.hidden_size * cfg.shared_intermediate_size + (
            cfg.hidden_size if cfg.shared_expert_gate else 0)
        out["routed_experts"] = cfg.num_experts_per_tok * expert_matmul_params(cfg)
    else:
        out["dense_mlp"] = mlp_params(cfg)
    return out


def attention_core_flops_per_token(cfg: ModelConfig, context: float) -> float:
    """Forward QK^T + PV for one token attending ``context`` keys, one layer (naive/materialised form)."""
    return 2.0 * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_dim) * context


def causal_mean_context(seq_len: int, window: int = 0) -> float:
    """Mean keys attended per query of a causal sequence of ``seq_len``: (S+1)/2, or with a sliding window W < S
    (W(W+1)/2 + (S-W) W) / S."""
    if window <= 0 or window >= seq_len:
        return (seq_len + 1) / 2.0
    return (window * (window + 1) / 2.0 + (seq_len - window) * window) / seq_len


def decode_context(cfg: ModelConfig, i: int, context: float) -> float:
    """Keys read by one decoded token in layer ``i`` at ``context`` cached tokens."""
    w = cfg.window_of(i)
    return min(context, w) if w else context


@dataclass(frozen=True, kw_only=True, slots=True)
class FlopsPerToken:
    forward: float
    backward: float
    by_component: dict[str, float] = field(default_factory=dict)  # forward only

    @property
    def training(self) -> float:
        return self.forward + self.backward


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, include_mtp: bool = False) -> FlopsPerToken:
    """Forward (and backward = 2x) FLOPs per token of a causal sequence of ``seq_len`` tokens."""
    if seq_len <= 0:
        raise ConfigError(f"seq_len must be > 0, got {seq_len}")
    comp: dict[str, float] = {}
    layers = list(range(cfg.num_hidden_layers))
    if include_mtp:
        layers += [cfg.num_hidden_layers] * cfg.num_nextn_predict_layers
    for i in layers:
        for k, v in layer_linear_params_activated(cfg, i).items():
            comp[k] = comp.get(k, 0.0) + 2.0 * v
        ctx = causal_mean_context(seq_len, cfg.window_of(i))
        comp["attention_core"] = comp.get("attention_core", 0.0) + attention_core_flops_per_token(cfg, ctx)
    heads = 1 + (cfg.num_nextn_predict_layers if include_mtp else 0)
    comp["head"] = 2.0 * cfg.vocab_size * cfg.hidden_size * heads
    if include_mtp and cfg.num_nextn_predict_layers:
        comp["mtp_projection"] = 2.0 * 2 * cfg.hidden_size ** 2 * cfg.num_nextn_predict_layers
    fwd = sum(comp.values())
    return FlopsPerToken(forward=fwd, backward=2.0 * fwd, by_component=comp)


def train_flops_per_token(cfg: ModelConfig, seq_len: int = 4096, include_mtp: bool = False) -> float:
    """Forward + backward FLOPs per trained token (causal, sequence length ``seq_len``)."""
    return forward_flops_per_token(cfg, seq_len, include_mtp).training


def prefill_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs per prompt token when prefilling ``seq_len`` tokens."""
    return forward_flops_per_token(cfg, seq_len).forward


def decode_flops_per_token(cfg: ModelConfig, context: int) -> float:
    """Forward FLOPs of one generated token attending ``context`` cached tokens (absorbed MLA)."""
    if context < 0:
        raise ConfigError(f"context must be >= 0, got {context}")
    total = 2.0 * cfg.vocab_size * cfg.hidden_size
    for i in range(cfg.num_hidden_layers):
        lin = layer_linear_params_activated(cfg, i)
        if cfg.attention == "mla":
            nh, dc, dr = cfg.num_attention_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim
            attn = attention_params(cfg)
            lin["attention_proj"] -= attn["kv_b_proj"]  # absorbed, not applied per step
            core = 2.0 * nh * (dc + dr) * context + 2.0 * nh * dc * context
            absorb = 2.0 * nh * cfg.qk_nope_head_dim * dc + 2.0 * nh * dc * cfg.v_head_dim
            total += core + absorb
        else:
            total += attention_core_flops_per_token(cfg, decode_context(cfg, i, context))
        total += 2.0 * sum(lin.values())
    return total
