"""Per-layer compute slices (attn, mlp) of forward, backward-input and backward-weight, from kernel times.

Slices carry DeepSeek's profile-data names: ``attn(F)``, ``mlp(F)``, ``attn(B)``, ``attn(W)``, ``mlp(B)``,
``mlp(W)`` (deepseek-ai/profile-data train.json). A slice is a list of kernels; its time is the sum of
``kernels.op_time`` over them. Shapes (legend: T tokens on this GPU, H hidden, I expert intermediate,
R rows reaching this GPU's experts, S sequence length, nh heads):

- attention projections: one GEMM per linear, [T, in] x [in, out], 2 T in out FLOPs; FP8 where DeepSeek-V3
  §3.3 quantises linears (Fprop/Dgrad/Wgrad), BF16 otherwise.
- attention core (causal, training/prefill): T x 2 nh (d_qk + d_v) (S+1)/2 FLOPs forward (cost/flops.py);
  backward 2.5x forward (FlashAttention-2, Dao 2023 §3.1.2: five matmuls in backward vs two in forward).
- a sliding-window layer (``cfg.window_of(i)`` = W) attends the windowed causal mean (cost/flops.py); decode
  layers are ``decode_ops.decode_layer_kernels``.
- router: [T, H] x [H, E] BF16 (V3 §3.3: gating kept in higher precision).
- MoE: grouped GEMM of the local experts over R rows (gate+up [R,H]x[H,2I], down [R,I]x[I,H]) plus the
  shared expert over T rows (DeepSeek: n_shared x T rows of width I; a shared expert of its own width I_s,
  Qwen2-MoE: T rows of I_s); dense layers an [T,H]x[H,3I] MLP.
- backward: dgrad = forward GEMM FLOPs (B); wgrad = forward GEMM FLOPs (W). With ``recompute`` the RMSNorms and
  MLA up-projections (q_b_proj, kv_b_proj) run again in B (DeepSeek-V3 §3.2.3).
- element-wise ops (RMSNorm, SwiGLU, rope) as memory-bound reads+writes of their tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.flops import attention_core_flops_per_token, causal_mean_context
from dsv3sim.workload.interference import is_memory_bound
from dsv3sim.workload.kernels import gpu_perf, op_time
from dsv3sim.workload.layer_extras import attention_linears, training_extras

ATTN_BWD_FACTOR = 2.5  # FlashAttention-2 §3.1.2: backward = 5 matmuls / forward = 2
CAST_BYTES_PER_ELEM = 2.0 + 1.0 + 4.0 / 128  # BF16 in, FP8 out, one FP32 scale per 128 elements


def _expert_rows(cfg: ModelConfig, tokens: int, expert_rows: int, local_experts: int) -> list[tuple[int, int, int]]:
    """(rows, experts, width) of the routed grouped GEMM and of the shared expert(s)."""
    out = [(expert_rows, max(1, local_experts), cfg.moe_intermediate_size)]
    if cfg.n_shared_experts and cfg.shared_expert_intermediate_size:
        out.append((tokens, 1, cfg.shared_expert_intermediate_size))
    elif cfg.n_shared_experts:
        out.append((tokens * cfg.n_shared_experts, 1, cfg.moe_intermediate_size))
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class LayerSlices:
    """Seconds of each compute slice of one layer for one micro-batch, on full SMs and on the compute partition."""

    times: dict[str, float]  # slice name -> s (all SMs)
    times_partial: dict[str, float]  # slice name -> s (n_sms - comm_sms SMs)
    flops: dict[str, float]
    sources: tuple[str, ...]
    op_times: dict[str, float] = field(default_factory=dict)  # kernel op -> s summed over the slices (all SMs)


class _Acc:
    def __init__(self, gpu: str, sm_fraction: float, mem_stretch: float = 1.0, production: bool = False,
                 kernel_impl: Mapping[tuple[str, str], str] | None = None) -> None:
        self.gpu, self.frac, self.mem_stretch = gpu, sm_fraction, mem_stretch
        self.kernel_impl = dict(kernel_impl or {})  # (op, dtype) -> the profile tables' impl that prices it
        # production step: norms are DeepSeek's kernel (kernels.NORM_EFF) and the MoE input norm sits with the router
        self.production = production
        self.norm_op = "rmsnorm_deployed" if production else "rmsnorm"
        self.t: dict[str, float] = {}
        self.tp: dict[str, float] = {}
        self.f: dict[str, float] = {}
        self.op: dict[str, float] = {}
        self.src: set[str] = set()

    def add(self, slice_: str, op: str, dtype: str, flops: float, bytes_: float, count: int = 1,
            **shape: int) -> None:
        """``count`` identical kernels one after another (per-expert weight gradients)."""
        if (op, dtype) in self.kernel_impl:
            shape = {**shape, "impl": self.kernel_impl[op, dtype]}
        a = op_time(self.gpu, op, dtype, flops=flops, bytes_=bytes_, **shape)
        b = op_time(self.gpu, op, dtype, flops=flops, bytes_=bytes_, sm_fraction=self.frac, **shape)
        tb = b.time_s
        if self.mem_stretch != 1.0:  # beside the all-to-all, memory-bound kernels share HBM (interference.py)
            g = gpu_perf(self.gpu)
            if is_memory_bound(flops, bytes_, g.fp8_flops if dtype == "fp8" else g.bf16_flops, g.hbm_bw):
                tb *= self.mem_stretch
        self.t[slice_] = self.t.get(slice_, 0.0) + count * a.time_s
        self.tp[slice_] = self.tp.get(slice_, 0.0) + count * tb
        self.f[slice_] = self.f.get(slice_, 0.0) + count * flops
        self.op[op] = self.op.get(op, 0.0) + count * a.time_s
        self.src.add(a.source)

    def gemm(self, slice_: str, m: int, k: int, n: int, dtype: str, groups: int = 1, cast_b: bool = False,
             count: int = 1, cast_slice: str | None = None) -> None:
        """[m, k] x [k, n] (``groups`` experts sharing the m rows), ``count`` times one after another; FP8 GEMMs
        first quantise A (and B for a weight gradient, whose operands are both activations) to 1x128-tile FP8 in
        a fused memory-bound cast (V3 §3.3.2)."""
        if m <= 0:
            return
        eb = 1.0 if dtype == "fp8" else 2.0
        op = "grouped_gemm" if groups > 1 else "gemm"
        shape = {"m": m, "n": n, "k": k} if groups == 1 else {"e": groups, "m": max(1, m // groups), "n": n, "k": k}
        self.add(slice_, op, dtype, 2.0 * m * k * n, eb * (m * k + groups * k * n) + 2.0 * m * n, count=count,
                 **shape)
        if dtype == "fp8":  # ``cast_slice``: where the cast runs when it is not the GEMM's slice
            elems = m * k + (k * n if cast_b else 0)
            self.add(cast_slice or slice_, "fp8_cast_fused", "bf16", 0.0, elems * CAST_BYTES_PER_ELEM, count=count)

    def wgrad(self, slice_: str, out_f: int, rows: int, in_f: int, dtype: str, groups: int = 1) -> None:
        """Weight gradient dW[out_f, in_f] = dY^T [out_f, rows] x X [rows, in_f]; with ``groups`` experts each
        expert's own GEMM over its rows / groups tokens (K = tokens, M = out features: not the forward's
        grouping of rows), one per expert."""
        if rows > 0:
            self.gemm(slice_, out_f, max(1, rows // groups), in_f, dtype, cast_b=True, count=groups)

    def eltwise(self, slice_: str, rows: int, width: int, passes: float = 2.0, op: str = "rmsnorm") -> None:
        """Memory-bound element-wise op over [rows, width] (RMSNorm, SwiGLU), ``passes`` reads+writes."""
        if rows <= 0:
            return
        self.add(slice_, op, "bf16", 0.0, 2.0 * rows * width * passes, m=int(rows), n=int(width))

    def done(self) -> LayerSlices:
        return LayerSlices(times=dict(self.t), times_partial=dict(self.tp), flops=dict(self.f),
                           sources=tuple(sorted(self.src)), op_times=dict(self.op))


def training_layer(cfg: ModelConfig, i: int, *, gpu: str, tokens: int, seq_len: int, expert_rows: int,
                   local_experts: int, gemm_dtype: str, sm_fraction: float, recompute: bool = True,
                   extras: bool = False, mem_stretch: float = 1.0,
                   kernel_impl: Mapping[tuple[str, str], str] | None = None) -> LayerSlices:
    """F/B/W slices of layer ``i`` for ``tokens`` tokens (whole sequences of ``seq_len``) on one GPU. ``extras``:
    the production kernels of ``layer_extras`` (the simulated training step sets it; validate's comparison with
    our own PyTorch runs does not); ``mem_stretch``: memory-bound kernels' factor on the compute
    partition beside the all-to-all (``interference.memory_bound_stretch``); ``kernel_impl``: (op, dtype) -> the
    implementation whose profile rows price that kernel (the predictor's ``impl`` key, e.g. ("grouped_gemm",
    "fp8") -> "nn.gluon", the executable model's grouped kernel), instead of the table's default."""
    a = _Acc(gpu, sm_fraction, mem_stretch, production=extras, kernel_impl=kernel_impl)
    if extras:
        for e in training_extras(cfg, i, tokens=tokens, expert_rows=expert_rows, local_experts=local_experts):
            a.add(e.slice, e.op, "bf16", 0.0, e.bytes)
    _attention_slices(a, cfg, i, tokens=tokens, seq_len=seq_len, gemm_dtype=gemm_dtype, recompute=recompute)
    _ffn_slices(a, cfg, i, tokens=tokens, expert_rows=expert_rows, local_experts=local_experts, gemm_dtype=gemm_dtype)
    return a.done()


def _attention_slices(a: _Acc, cfg: ModelConfig, i: int, *, tokens: int, seq_len: int, gemm_dtype: str,
                      recompute: bool) -> None:
    """Attention of layer ``i``: norm, projections (forward, dgrad, wgrad; up-projections recomputed in the
    backward, V3 §3.2.3), the core (causal, or the sliding window's roofline), the backward's norms."""
    H = cfg.hidden_size
    lin = attention_linears(cfg)
    up_proj = {"q_b_proj", "kv_b_proj"}
    # attention: norm, projections, core, output projection
    a.eltwise("attn(F)", tokens, H, op=a.norm_op)
    for name, k, n in lin:
        a.gemm("attn(F)", tokens, k, n, gemm_dtype)
        a.gemm("attn(B)", tokens, n, k, gemm_dtype)  # dgrad
        # wgrad [n, T] x [T, k]; production: its operands are cast and transposed in the backward, where the
        # output gradient appears (profile-data: per_channel_cast_and_transpose in attn(B), attn(W) GEMMs only)
        a.gemm("attn(W)", n, tokens, k, gemm_dtype, cast_b=True, cast_slice="attn(B)" if a.production else None)
        if recompute and name in up_proj:
            a.gemm("attn(B)", tokens, k, n, gemm_dtype)  # recomputed up-projection (V3 §3.2.3)
    core = tokens * attention_core_flops_per_token(cfg, causal_mean_context(seq_len, cfg.window_of(i)))
    nh = cfg.num_attention_heads
    dv = cfg.v_dim
    n_kv = nh if cfg.attention == "mla" else cfg.num_key_value_heads  # MLA materialises K, V per head
    qkv_bytes = 2.0 * tokens * (nh * cfg.qk_head_dim + n_kv * (cfg.qk_head_dim + dv))
    ashape = {"s": seq_len, "h": nh, "b": max(1, tokens // seq_len), "dqk": cfg.qk_head_dim, "dv": dv}
    window = cfg.window_of(i)
    if window and window < seq_len:  # sliding-window kernel: no causal-attention table entry, the roofline
        ashape["w"] = window
        a.add("attn(F)", "attn_prefill_swa", "bf16", core, qkv_bytes, **ashape)
        a.add("attn(B)", "attn_prefill_swa_bwd", "bf16", ATTN_BWD_FACTOR * core, 2 * qkv_bytes, **ashape)
    else:
        a.add("attn(F)", "attn_prefill", "bf16", core, qkv_bytes, **ashape)
        a.add("attn(B)", "attn_prefill_bwd", "bf16", ATTN_BWD_FACTOR * core, 2 * qkv_bytes, **ashape)
    a.eltwise("attn(B)", tokens, H, 2 + (1 if recompute else 0), op=a.norm_op)


def _ffn_slices(a: _Acc, cfg: ModelConfig, i: int, *, tokens: int, expert_rows: int, local_experts: int,
                gemm_dtype: str) -> None:
    """FFN of layer ``i``: the router and the routed + shared experts on their rows (MoE), or the dense MLP."""
    H = cfg.hidden_size
    if cfg.is_moe_layer(i):
        E = cfg.n_routed_experts
        a.gemm("attn(F)", tokens, H, E, "bf16")  # router (BF16, V3 §3.3)
        a.gemm("attn(B)", tokens, E, H, "bf16")
        a.gemm("attn(W)", E, tokens, H, "bf16")
        if a.production:  # the MoE input norm feeds the router: profile-data has it, and its backward, in attn(F/B)
            a.eltwise("attn(F)", tokens, H, op=a.norm_op)
            a.eltwise("attn(B)", tokens, H, 3, op=a.norm_op)
        else:
            a.eltwise("mlp(F)", tokens, H)  # post-attention norm
        for r, g, I in _expert_rows(cfg, tokens, expert_rows, local_experts):
            a.gemm("mlp(F)", r, H, 2 * I, gemm_dtype, g)
            a.gemm("mlp(F)", r, I, H, gemm_dtype, g)
            a.eltwise("mlp(F)", r, 2 * I, 0.75, op="swiglu")  # SwiGLU: read 2I, write I
            a.gemm("mlp(B)", r, H, I, gemm_dtype, g)
            a.gemm("mlp(B)", r, 2 * I, H, gemm_dtype, g)
            a.eltwise("mlp(B)", r, 2 * I, 1.5, op="swiglu")
            a.wgrad("mlp(W)", H, r, I, gemm_dtype, g)
            a.wgrad("mlp(W)", 2 * I, r, H, gemm_dtype, g)
    else:
        I = cfg.intermediate_size
        a.eltwise("mlp(F)", tokens, H, op=a.norm_op)
        if a.production:
            a.eltwise("mlp(B)", tokens, H, 3, op=a.norm_op)
        a.gemm("mlp(F)", tokens, H, 2 * I, gemm_dtype)
        a.gemm("mlp(F)", tokens, I, H, gemm_dtype)
        a.eltwise("mlp(F)", tokens, 2 * I, 0.75, op="swiglu")
        a.gemm("mlp(B)", tokens, H, I, gemm_dtype)
        a.gemm("mlp(B)", tokens, 2 * I, H, gemm_dtype)
        a.eltwise("mlp(B)", tokens, 2 * I, 1.5, op="swiglu")
        a.gemm("mlp(W)", H, tokens, I, gemm_dtype, cast_b=True)
        a.gemm("mlp(W)", 2 * I, tokens, H, gemm_dtype, cast_b=True)


def head_slices(cfg: ModelConfig, *, gpu: str, tokens: int, sm_fraction: float, n_heads: int = 1) -> LayerSlices:
    """Output head(s) + cross-entropy (BF16, V3 §3.3 keeps the output head in BF16); the embedding is a gather."""
    a = _Acc(gpu, sm_fraction)
    V, H = cfg.vocab_size, cfg.hidden_size
    for _ in range(n_heads):
        a.gemm("attn(F)", tokens, H, V, "bf16")
        a.eltwise("attn(F)", tokens, V, 2, op="softmax_xent")  # softmax cross-entropy over the logits
        a.gemm("attn(B)", tokens, V, H, "bf16")
        a.gemm("attn(W)", V, tokens, H, "bf16")
    return a.done()


def prefill_layer(cfg: ModelConfig, i: int, *, gpu: str, tokens: int, seq_len: int, expert_rows: int,
                  local_experts: int, gemm_dtype: str, sm_fraction: float) -> LayerSlices:
    """Forward-only slices for a prefill micro-batch (same kernels as the training forward)."""
    s = training_layer(cfg, i, gpu=gpu, tokens=tokens, seq_len=seq_len, expert_rows=expert_rows,
                       local_experts=local_experts, gemm_dtype=gemm_dtype, sm_fraction=sm_fraction, recompute=False)
    keep = ("attn(F)", "mlp(F)")
    return LayerSlices(times={k: v for k, v in s.times.items() if k in keep},
                       times_partial={k: v for k, v in s.times_partial.items() if k in keep},
                       flops={k: v for k, v in s.flops.items() if k in keep}, sources=s.sources)
