"""Memory-bound work of a production training layer beyond its GEMMs, attention, norms, SwiGLU and FP8 input casts.

DeepSeek's training profile (deepseek-ai/profile-data train.json, 4 MoE layers at EP64, 4K tokens) spends ~25 ms
of each overlapped F&B pair in casts, transposes and copies and ~13 ms in other small kernels, beside ~86 ms of
GEMMs and attention. ``layer_ops`` already prices the norms, SwiGLU and one fused FP8 cast per GEMM operand; this
module lists the rest, each as bytes read + written from the tensor shapes (no calibration), priced by
``kernels.op_time`` as memory-bound kernels. Legend: T tokens on this GPU, H hidden, R (token, expert) rows the
GPU's experts receive, nh heads, d_qk = d_nope + d_rope, P parameters of a slice.

| slice | op | bytes | source |
|---|---|---|---|
| attn(F) | q_a / kv_a RMSNorm (MLA) | 2 x 2 T (q_lora + kv_lora) | DeepSeek-V2 §2.1.2 (norms on the latents) |
| attn(F) | RoPE + assembling q and k [T, nh, d_qk] for the attention kernel | 2 x 2 x 2 T nh d_qk | V3 §2.1.1 eq. 3-5 (k^R shared, broadcast) |
| attn(F), mlp(F) | residual add [T, H] (read 2, write 1) | 3 x 2 T H | pre-norm block |
| attn(F) | cast of the output projection's input [T, nh d_v] to E5M6, cached for the backward (read 2, write 1.5) | 3.5 T nh d_v | V3 §3.3.3; profile `per_token_cast_to_fp8_with_fp8_special_fmt` |
| attn(B) | its cast back to BF16 for the output projection's weight gradient (read 1.5, write 2) | 3.5 T nh d_v | profile `per_token_cast_back_special_fmt` |
| mlp(F) | MoE permute: received tokens (FP8 + scales) into per-expert rows | 2 R (H + H/32) | profile `expand_to_fused_with_scales` |
| mlp(F) | MoE unpermute: gate-weighted sum of R expert rows per token, BF16 | 2 x 2 R H | profile `reduce_fused` |
| attn(B), mlp(B) | the same passes backwards (split of dq/dk, norm backward, residual-gradient adds, the gradients of permute/unpermute) | as forward | autograd of the above |
| attn(W), mlp(W) | FP32 gradient accumulation: read + write the FP32 gradient of every weight per micro-batch | 8 P | V3 §3.3.3 (gradients in FP32), DeepGEMM `*_acc` wgrad kernels in the profile |
"""

from __future__ import annotations

from dataclasses import dataclass

from dsv3sim.config.model import ModelConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class ExtraOp:
    slice: str
    op: str
    bytes: float


def attention_linears(cfg: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, in, out) of every attention linear, in execution order."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    if cfg.attention == "mla":
        dq = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        out: list[tuple[str, int, int]] = []
        if cfg.q_lora_rank:
            out += [("q_a_proj", H, cfg.q_lora_rank), ("q_b_proj", cfg.q_lora_rank, nh * dq)]
        else:
            out.append(("q_proj", H, nh * dq))
        out += [("kv_a_proj", H, cfg.kv_lora_rank + cfg.qk_rope_head_dim),
                ("kv_b_proj", cfg.kv_lora_rank, nh * (cfg.qk_nope_head_dim + cfg.v_head_dim)),
                ("o_proj", nh * cfg.v_head_dim, H)]
        return out
    hd, nkv = cfg.head_dim, cfg.num_key_value_heads
    return [("q_proj", H, nh * hd), ("k_proj", H, nkv * hd), ("v_proj", H, nkv * hd), ("o_proj", nh * hd, H)]


def _attn_weight_params(cfg: ModelConfig) -> float:
    return float(sum(k * n for _, k, n in attention_linears(cfg)))


def training_extras(cfg: ModelConfig, i: int, *, tokens: int, expert_rows: int, local_experts: int
                    ) -> list[ExtraOp]:
    """Extra memory-bound kernels of layer ``i`` for ``tokens`` tokens (module docstring table)."""
    T, H = float(tokens), float(cfg.hidden_size)
    nh = cfg.num_attention_heads
    out: list[ExtraOp] = []

    def both(slice_f: str, slice_b: str, op: str, b: float) -> None:
        out.append(ExtraOp(slice=slice_f, op=op, bytes=b))
        out.append(ExtraOp(slice=slice_b, op=op + "_bwd", bytes=b))

    if cfg.attention == "mla":
        lat = (cfg.q_lora_rank or 0) + cfg.kv_lora_rank
        both("attn(F)", "attn(B)", "latent_rmsnorm", 2 * 2 * T * lat)
        both("attn(F)", "attn(B)", "rope_qk_assemble", 2 * 2 * 2 * T * nh * cfg.qk_head_dim)
        e5m6 = 3.5 * T * nh * cfg.v_dim
        out.append(ExtraOp(slice="attn(F)", op="e5m6_cache_cast", bytes=e5m6))
        out.append(ExtraOp(slice="attn(B)", op="e5m6_cast_back", bytes=e5m6))
    both("attn(F)", "attn(B)", "residual_add", 3 * 2 * T * H)
    both("mlp(F)", "mlp(B)", "residual_add", 3 * 2 * T * H)
    attn_p = _attn_weight_params(cfg)
    if cfg.is_moe and cfg.is_moe_layer(i):
        R = float(expert_rows)
        both("mlp(F)", "mlp(B)", "moe_permute", 2 * R * (H + H / 32))
        both("mlp(F)", "mlp(B)", "moe_unpermute", 2 * 2 * R * H)
        I = cfg.moe_intermediate_size
        mlp_p = 3.0 * H * I * (max(1, local_experts) + cfg.n_shared_experts)
        attn_p += cfg.n_routed_experts * H  # router
    else:
        mlp_p = 3.0 * H * cfg.intermediate_size
    out.append(ExtraOp(slice="attn(W)", op="grad_accumulate", bytes=8.0 * attn_p))
    out.append(ExtraOp(slice="mlp(W)", op="grad_accumulate", bytes=8.0 * mlp_p))
    return out
