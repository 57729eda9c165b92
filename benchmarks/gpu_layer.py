"""Set-up and timing the GPU layer benchmarks share (``bench_layer_gpu.py``, ``bench_fp8_layer.py``, ``profile_layer_fp8.py``):
one MoE decoder layer of a model config built in BF16 on the device (weights N(0, 0.02), norms 1, the gate's bias
correction 0), its RoPE tables, a random input and output gradient, and the layer's forward FLOPs.

Not a test; imported by the scripts beside it (they put this folder on ``sys.path`` by running from it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.nn.block import Block
from dsv3sim.nn.layers import rope_cos_sin, yarn_inv_freq


def moe_config(name: str) -> ModelConfig:
    """The config with its layer 0 a MoE layer (the layer the benchmarks time)."""
    cfg = load_model_config(name)
    return cfg if cfg.is_moe_layer(0) else cfg.with_(first_k_dense_replace=0)


def batch_shape(tokens: int, seq_len: int) -> tuple[int, int]:
    """(sequences B, sequence length S) of a step of ``tokens`` tokens at most ``seq_len`` long."""
    S = min(seq_len, tokens)
    return max(1, tokens // S), S


@dataclass
class LayerCase:
    blk: Block
    cos: torch.Tensor
    sin: torch.Tensor
    h: torch.Tensor   # [B, S, H] input, requires grad
    gy: torch.Tensor  # [B, S, H] output gradient


def one_layer(cfg: ModelConfig, B: int, S: int, *, device: str = "cuda", dtype=torch.bfloat16,
              cast: bool = True) -> LayerCase:
    """Layer 0 of ``cfg`` built directly in ``dtype`` on ``device`` (a 13B-parameter layer never exists in FP32);
    ``cast`` also casts the buffers created in FP32."""
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            blk = Block(cfg, 0)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for n_, p in blk.named_parameters():
            if n_.endswith("e_score_correction_bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    if cast:
        blk = blk.to(dtype)
    inv, msc = yarn_inv_freq(cfg)
    cos, sin = rope_cos_sin(inv.to(device), torch.arange(S, device=device), msc)
    h = torch.randn(B, S, cfg.hidden_size, device=device, dtype=dtype, requires_grad=True)
    gy = torch.randn(B, S, cfg.hidden_size, device=device, dtype=dtype)
    return LayerCase(blk=blk, cos=cos, sin=sin, h=h, gy=gy)


def set_fp8(blk: Block, on: bool) -> None:
    for m in blk.modules():
        if hasattr(m, "fp8"):
            m.fp8 = on


def layer_gemm_flops(cfg: ModelConfig, T: int) -> dict[str, float]:
    """Forward GEMM FLOPs of one MLA+MoE layer for T tokens (attention core separately: ``layer_forward_flops``)."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    dqk, dv = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    proj = (H * cfg.q_lora_rank + cfg.q_lora_rank * nh * dqk if cfg.q_lora_rank else H * nh * dqk)
    proj += H * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) + cfg.kv_lora_rank * nh * (cfg.qk_nope_head_dim + dv)
    proj += nh * dv * H
    moe = 3 * H * cfg.moe_intermediate_size * cfg.num_experts_per_tok
    shared = 3 * H * cfg.moe_intermediate_size * cfg.n_shared_experts
    gate = H * cfg.n_routed_experts
    return {"attn_proj": 2 * T * proj, "moe": 2 * T * moe, "shared": 2 * T * shared, "gate": 2 * T * gate}


def layer_forward_flops(cfg: ModelConfig, B: int, S: int) -> float:
    """The GEMMs plus the causal attention core (S^2 / 2 per sequence and head, q.k and p.v)."""
    head_dims = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim
    return sum(layer_gemm_flops(cfg, B * S).values()) + 2 * B * S * S / 2 * cfg.num_attention_heads * head_dims


def timed(fn, reps: int, warmup: int = 3, graph: bool = False) -> float:
    """Median seconds of fn (eager) or of its CUDA-graph replay; each sample is one call between two events."""
    if graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        run = g.replay
    else:
        run = fn
    for _ in range(warmup):
        run()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in ev:
        a.record()
        run()
        b.record()
    torch.cuda.synchronize()
    ts = sorted(a.elapsed_time(b) / 1e3 for a, b in ev)
    return ts[len(ts) // 2]
