"""Memory: weights by dtype (with FP8 block scales), gradients, optimizer states, activations.

Training states follow DeepSeek-V3 §3.3.3 ("Low-precision storage"): BF16 weights used by compute, FP32 master
weights and FP32 gradients (for accumulation) kept by the optimizer, AdamW first/second moments in BF16.
So 2 + 4 + 4 + 2 + 2 = 14 bytes per parameter before sharding; ZeRO-1 shards master weights and moments over
data-parallel ranks (Rajbhandari et al. 2020, stage 1).

FP8 weights (V3 §3.3.2, HF ``quantization_config.weight_block_size``): every linear of the decoder layers is
E4M3 with one FP32 ``weight_scale_inv`` per 128x128 block; embedding, output head, norms and the router stay
BF16 (DeepSeek-V3 checkpoint layout).

MXFP4 experts (gpt-oss model card §2; OCP Microscaling spec v1.0 §6.3): the routed experts' matrices are FP4
(E2M1, 0.5 B) with one E8M0 scale (1 B) per 32 elements = 0.53125 B per weight; attention, router, embedding,
head, norms and biases stay BF16 (``quantization_config.modules_to_not_convert``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.params import attention_params, count_params, expert_matmul_params, expert_params

MXFP4_BLOCK = 32  # elements per E8M0 scale (OCP MX spec v1.0)
MXFP4_BYTES_PER_WEIGHT = 0.5 + 1.0 / MXFP4_BLOCK
WEIGHT_DTYPES = ("bf16", "fp8", "fp32", "mxfp4")


def _linear_shapes_per_layer(cfg: ModelConfig, i: int) -> list[tuple[int, int, int]]:
    """(out, in, count) of every linear weight in layer i that DeepSeek stores in FP8."""
    H = cfg.hidden_size
    shapes: list[tuple[int, int, int]] = []
    if cfg.attention == "mla":
        nh = cfg.num_attention_heads
        dq = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if cfg.q_lora_rank:
            shapes += [(cfg.q_lora_rank, H, 1), (nh * dq, cfg.q_lora_rank, 1)]
        else:
            shapes.append((nh * dq, H, 1))
        shapes += [(cfg.kv_lora_rank + cfg.qk_rope_head_dim, H, 1),
                   (nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank, 1),
                   (H, nh * cfg.v_head_dim, 1)]
    else:
        nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        shapes += [(nh * hd, H, 1), (nkv * hd, H, 2), (H, nh * hd, 1)]
    if cfg.is_moe_layer(i):
        E, I = cfg.n_routed_experts, cfg.moe_intermediate_size
        shapes += [(I, H, 2 * E), (H, I, E)]
        if cfg.shared_intermediate_size:
            Is = cfg.shared_intermediate_size
            shapes += [(Is, H, 2), (H, Is, 1)]
    else:
        I = cfg.intermediate_size
        shapes += [(I, H, 2), (H, I, 1)]
    return shapes


def fp8_weight_bytes(cfg: ModelConfig, block: tuple[int, int] = (128, 128), include_mtp: bool = False) -> int:
    """Bytes of the weights with decoder linears in FP8 (1 B) + FP32 block scales, the rest in BF16."""
    if len(block) != 2 or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in block):
        raise ConfigError(f"FP8 weight block must be two positive integers [rows, cols], got {list(block)}")
    pc = count_params(cfg)
    layers = list(range(cfg.num_hidden_layers))
    if include_mtp:
        layers += [cfg.num_hidden_layers] * cfg.num_nextn_predict_layers
    fp8_elems = 0
    scale_bytes = 0
    for i in layers:
        for out, inp, cnt in _linear_shapes_per_layer(cfg, i):
            fp8_elems += out * inp * cnt
            scale_bytes += math.ceil(out / block[0]) * math.ceil(inp / block[1]) * 4 * cnt
    total = pc.total + (pc.mtp if include_mtp else 0)
    return fp8_elems + scale_bytes + 2 * (total - fp8_elems)


def mxfp4_weight_bytes(cfg: ModelConfig, include_mtp: bool = False) -> int:
    """Routed-expert matrices in MXFP4, everything else (expert biases included) BF16."""
    pc = count_params(cfg)
    total = pc.total + (pc.mtp if include_mtp else 0)
    layers = cfg.n_moe_layers + (cfg.num_nextn_predict_layers if include_mtp and cfg.is_moe else 0)
    fp4 = layers * cfg.n_routed_experts * expert_matmul_params(cfg)
    return int(math.ceil(fp4 * MXFP4_BYTES_PER_WEIGHT) + 2 * (total - fp4))


def checkpoint_weight_dtype(cfg: ModelConfig) -> str:
    """The format the model is published in: "mxfp4" (gpt-oss experts), "fp8" (DeepSeek-V3, Kimi K2), "bf16"."""
    if cfg.expert_weight_format == "mxfp4":
        return "mxfp4"
    return "fp8" if cfg.fp8_weight_block else "bf16"


def routed_expert_bytes(cfg: ModelConfig, dtype: str) -> float:
    """One routed expert's weights in ``dtype`` (FP8: + FP32 scale per 128x128 block; MXFP4: + E8M0 per 32),
    its biases in BF16."""
    mat, bias = expert_matmul_params(cfg), expert_params(cfg) - expert_matmul_params(cfg)
    per = {"bf16": 2.0, "fp32": 4.0, "fp8": 1.0 + 4.0 / 128 ** 2, "mxfp4": MXFP4_BYTES_PER_WEIGHT}.get(dtype)
    if per is None:
        raise ConfigError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)}; got {dtype!r}")
    return mat * per + 2.0 * bias


def weight_bytes(cfg: ModelConfig, dtype: str = "bf16", include_mtp: bool = False) -> int:
    pc = count_params(cfg)
    n = pc.total + (pc.mtp if include_mtp else 0)
    if dtype == "bf16":
        return 2 * n
    if dtype == "fp32":
        return 4 * n
    if dtype == "fp8":
        return fp8_weight_bytes(cfg, cfg.fp8_weight_block or (128, 128), include_mtp)
    if dtype == "mxfp4":
        return mxfp4_weight_bytes(cfg, include_mtp)
    raise ConfigError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)}; got {dtype!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainingStateBytes:
    """Per GPU, for ``params`` parameters held on it and a ZeRO-1 data-parallel degree ``dp``."""

    weights: float  # BF16 compute copy
    gradients: float  # FP32 accumulation
    master_weights: float  # FP32, sharded by ZeRO-1
    optimizer_moments: float  # 2 x BF16, sharded by ZeRO-1

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.master_weights + self.optimizer_moments


def training_state_bytes(params: float, dp: int = 1, zero1: bool = True) -> TrainingStateBytes:
    """DeepSeek-V3 §3.3.3 precisions; ZeRO-1 divides master weights and moments by dp."""
    if dp < 1:
        raise ConfigError(f"dp must be >= 1, got {dp}")
    shard = dp if zero1 else 1
    return TrainingStateBytes(weights=2.0 * params, gradients=4.0 * params,
                              master_weights=4.0 * params / shard, optimizer_moments=4.0 * params / shard)


def activation_bytes_per_token_per_layer(cfg: ModelConfig, moe: bool, fp8_cache: bool = True,
                                         recompute_norm_and_up_proj: bool = True) -> float:
    """Activations a layer keeps for backward, per token (bytes).

    Itemised, with DeepSeek-V3 §3.2.3 memory savings: RMSNorm outputs and MLA up-projections recomputed in
    backward (``recompute_norm_and_up_proj``; the query from the up-projection included, so only the latent
    inputs stay); inputs of FP8 GEMMs cached in FP8 (1 B + 1x128 scales) where V3 §3.3.4 does so (MoE up-proj
    inputs and the linear after attention); with ``fp8_cache`` and recomputation also V3 §3.3.3's MoE SwiGLU
    trick: its inputs (the gate/up outputs) cached in FP8 and its output recomputed in backward. Everything
    else BF16 (2 B).
    """
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    a = 1.0 + 4.0 / 128 if fp8_cache else 2.0  # bytes per cached FP8 element incl. its 1x128 scale
    b = 2.0
    total = 2 * H * b  # layer inputs to the two norms (the residual stream)
    if cfg.attention == "mla":
        dqk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if cfg.q_lora_rank:
            total += cfg.q_lora_rank * b  # c_q (input of q_b_proj)
        total += (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * b  # latent + rope key
        if not recompute_norm_and_up_proj:
            total += nh * (dqk + dqk + cfg.v_head_dim) * b  # q, k, v materialised
        # recomputed (V3 §3.2.3): q is rebuilt from c_q by the up-projection in backward, nothing more kept
        total += nh * cfg.v_head_dim * a  # attention output (input of o_proj), FP8 cached
        total += nh * 4  # softmax log-sum-exp per head (FP32), flash-attention style
    else:
        hd, nkv = cfg.head_dim, cfg.num_key_value_heads
        total += (nh + 2 * nkv) * hd * b + nh * hd * b + nh * 4
    if moe:
        k, I = cfg.num_experts_per_tok, cfg.moe_intermediate_size
        n_act = k + cfg.n_shared_experts
        width = k * I + cfg.shared_intermediate_size  # SwiGLU width over the chosen and shared experts
        total += n_act * H * a  # expert inputs (dispatched, FP8)
        if fp8_cache and recompute_norm_and_up_proj:  # V3 §3.3.3: SwiGLU inputs FP8, output recomputed
            total += 2 * width * a
        else:
            total += 2 * width * b  # gate/up outputs for SwiGLU backward
            total += width * b  # SwiGLU output (input of down proj)
        total += cfg.n_routed_experts * 4  # router scores (FP32)
    else:
        I = cfg.intermediate_size
        total += H * a + 3 * I * b
    return total


def activation_bytes_per_token(cfg: ModelConfig, layers: list[int] | None = None, **kw) -> float:
    layers = list(range(cfg.num_hidden_layers)) if layers is None else layers
    return sum(activation_bytes_per_token_per_layer(cfg, cfg.is_moe_layer(i), **kw) for i in layers)


def attention_params_per_layer(cfg: ModelConfig) -> int:
    return sum(attention_params(cfg).values())
