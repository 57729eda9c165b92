"""One decode layer, kernel by kernel, priced from first principles (a CUDA-graph decode step as servers run it).

At decode batch sizes every GEMM is weight-read bound: M (tokens, or rows per expert) is far below the ridge
point, so the kernel's time is the weights it streams from HBM at the rate a small-M kernel reaches, plus the
per-kernel cost of a CUDA-graph replay. Legend: R requests on this GPU's attention replica per micro-batch,
q query tokens per request (1, or 2 when MTP's draft is verified), T = R x q tokens, H hidden, I expert
intermediate, nh heads (nh / tp on one rank of a TP attention group), C context, d_c + d_r latent width.

Per kernel:  t = max(FLOPs / (peak(dtype) x eff_compute), bytes / (HBM x f_stream)) + t_launch

- ``f_stream`` (weight-streaming fraction of HBM bandwidth at small M), measured in the H200 tables
  (``profiles/h200/kernels.csv``, CUDA-graph replays), median bytes / time / HBM bandwidth: for grouped GEMMs
  the BF16 grouped rows with at most 64 rows per expert (``torch._grouped_mm`` / per-expert loop, ~0.58); for
  dense BF16 GEMMs (cuBLAS, as servers run the head, router and absorbed projections) the BF16 rows with M <= 64
  and weights of at least 7168 x 4096 (~0.78). FP8 dense GEMMs are DeepGEMM's in DeepSeek's serving; its
  published M = 64 rows (``DEEPGEMM_M64``, H800) stream at a median 0.71 of the H800's HBM, which is used for
  them. A weight-read-bound kernel streams bytes, so the grouped fraction applies to FP8 experts too. (The table's FP8 grouped rows are cuBLAS block-scaled kernels tuned for large M,
  1.3-1.8 TB/s; DeepSeek decodes with DeepGEMM's masked grouped GEMM, whose published dense small-M rows reach
  0.50-0.80 of H800 HBM, deepseek-ai/DeepGEMM README, M = 64.)
- ``t_launch``: the smallest kernel time in the H200 tables (graph replays; a 512-element RMSNorm): what one
  kernel costs in a CUDA-graph decode step however little it does.
- ``eff_compute``: DeepSeek's published kernel throughputs (``kernels.FP8_GEMM_EFF``, ``kernels.BF16_EFF``).
- Attention is FlashMLA-class (``flashmla_decode``): one fused kernel reading each request's latent cache once
  for all its q query tokens and all local heads (FlashMLA folds s_q into the head dimension), at FlashMLA's
  published memory-bound throughput (``kernels.MEM_EFF``: 3000 GB/s of 3.35 TB/s on H800).
- Routed experts (DeepGEMM masked layout): a local expert with no rows reads no weights; with ``rows`` spread
  over ``e`` local experts the expected number of active experts is e (1 - (1 - 1/e)^rows) (uniform routing).
- DeepEP low-latency kernels (``ep`` > 1), hook mode: the all-to-all itself holds no SMs, but its send and
  receive phases are kernels on the compute stream (deepseek-ai/DeepEP README, ``return_recv_hook``): dispatch
  send reads the BF16 tokens and writes one FP8 message per (token, expert) into the send buffer; dispatch
  receive is a launch (data lands in the expert layout); combine send copies each expert output row into
  the send buffer; combine receive reads the top-k BF16 rows per token and writes their weighted sum.
- GQA attention (Qwen3-MoE, Mixtral, gpt-oss): the H200 GQA decode table (``attn_decode_gqa``, FlashAttention-
  style split-KV over the KV heads, graph replays) at min(C, W) keys on a sliding-window layer, else the
  roofline; the shared expert has its own width when the model says so (``shared_intermediate_size``); MXFP4
  experts (gpt-oss) read 0.53 B per weight (``expert_weight_dtype``).
- TP attention (``attn_tp`` > 1, V3 §3.4.2 TP4 + SP): each rank runs the replica's T x tp tokens over nh / tp
  heads; q_a / kv_a projections are replicated, q_b / absorbed / o projections split by heads; the latent
  cache (one head shared by all heads) is read whole on every rank. SP all-gather / reduce-scatter of
  [T x tp, H] BF16 are added by the caller (NVLink ring).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.flops import attention_core_flops_per_token, decode_context
from dsv3sim.cost.memory import MXFP4_BYTES_PER_WEIGHT
from dsv3sim.workload.kernels import BF16_EFF, FP8_GEMM_EFF, MEM_EFF, gpu_perf, op_time

TABLE_GPU = "H200"
STREAM_MAX_ROWS = 64  # rows per expert at which the tables' grouped GEMMs are still weight-read bound
DENSE_MIN_WEIGHTS = 7168 * 4096  # dense weights large enough to fill every SM's stream
# DeepGEMM FP8 dense GEMMs at M = 64 on H800, (N, K) -> TFLOPS: deepseek-ai/DeepGEMM README "Normal GEMMs for
# dense models", first release (commit a6d97a1); also in benchmarks/bench_fp8_vs_deepgemm.py
DEEPGEMM_M64 = {(2112, 7168): 206, (24576, 1536): 289, (32768, 512): 219, (7168, 16384): 336, (4096, 7168): 287,
                (7168, 2048): 295}
H800_HBM = 3.35e12  # B/s, the GPU DeepGEMM's table was measured on


def deepgemm_stream_fraction() -> float:
    """Median over DEEPGEMM_M64 of (FP8 weights + FP8 A + BF16 C bytes) / time / H800 HBM bandwidth."""
    fr = []
    for (n, k), tf in DEEPGEMM_M64.items():
        t = 2.0 * 64 * n * k / (tf * 1e12)
        fr.append((n * k + 64 * k + 2.0 * 64 * n) / t / H800_HBM)
    return statistics.median(fr)
WEIGHT_KERNELS = frozenset({"q_a+kv_a_proj", "q_b_proj", "q_proj", "absorb_uk", "absorb_uv", "o_proj", "qkv_proj",
                            "router", "shared_gate_up", "shared_down", "experts_gate_up", "experts_down",
                            "mlp_gate_up", "mlp_down", "lm_head"})  # kernels whose bytes are mostly weights
SCALE_BYTES = 4.0 / 128**2  # FP8 weights: one FP32 scale per 128 x 128 block (V3 §3.3.2)


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeConstants:
    stream_fraction: float  # small-M grouped GEMMs' weight-read rate / HBM bandwidth
    dense_stream_fraction: float  # small-M dense BF16 GEMMs' (large weights) weight-read rate / HBM bandwidth
    fp8_dense_stream_fraction: float  # DeepGEMM's published M = 64 FP8 dense GEMMs
    launch_s: float  # one kernel in a CUDA-graph replay
    n_rows: int  # table rows the fraction comes from
    source: str


def _stream_fractions(rows: list, bw: float, op: str, min_weights: int) -> list[float]:
    """bytes / time / HBM bandwidth of the table's BF16 ``op`` rows with 0 < M <= STREAM_MAX_ROWS (and N x K >=
    ``min_weights``)."""
    fr = [r.bytes / r.time_s / bw for r in rows
          if r.op == op and r.dtype == "bf16" and 0 < (r.get("m") or 0) <= STREAM_MAX_ROWS
          and (r.get("n") or 0) * (r.get("k") or 0) >= min_weights and r.time_s > 0 and r.bytes > 0]
    if not fr:
        raise ValueError(f"profiles/{TABLE_GPU.lower()}/kernels.csv has no bf16 {op} rows with m <= "
                         f"{STREAM_MAX_ROWS}")
    return fr


@lru_cache(maxsize=1)
def decode_constants() -> DecodeConstants:
    """Measured on the H200 (committed table); see the module docstring."""
    from dsv3sim.config.hardware import get_gpu
    from dsv3sim.profile.table import profile_dir, read_rows

    rows = read_rows(profile_dir(TABLE_GPU) / "kernels.csv")
    bw = get_gpu(TABLE_GPU).hbm_bandwidth
    fr = _stream_fractions(rows, bw, "grouped_gemm", 0)
    dense = _stream_fractions(rows, bw, "gemm", DENSE_MIN_WEIGHTS)
    launch = min(r.time_s for r in rows if r.time_s > 0)
    return DecodeConstants(stream_fraction=statistics.median(fr), dense_stream_fraction=statistics.median(dense),
                           fp8_dense_stream_fraction=deepgemm_stream_fraction(),
                           launch_s=launch, n_rows=len(fr) + len(dense),
                           source=f"profiles/{TABLE_GPU.lower()}/kernels.csv: small-M grouped GEMMs stream weights "
                                  f"at {statistics.median(fr):.2f} of HBM ({len(fr)} rows), dense GEMMs at "
                                  f"{statistics.median(dense):.2f} ({len(dense)} rows, BF16), DeepGEMM FP8 dense at "
                                  f"{deepgemm_stream_fraction():.2f} (published, H800); one graph kernel "
                                  f">= {launch * 1e6:.2f} us")


@dataclass(frozen=True, kw_only=True, slots=True)
class Kernel:
    slice: str  # "attn(F)" | "mlp(F)"
    name: str
    time_s: float
    flops: float
    bytes: float
    bound: str  # "memory" | "compute" | "launch"


def kernel(slice_: str, name: str, gpu: str, dtype: str, flops: float, bytes_: float, *,
           stream: str | None = "grouped") -> Kernel:
    """One kernel: compute at the published efficiency, bytes at the small-M streaming rate (``stream`` =
    "grouped" or "dense") or at FlashMLA's memory-bound rate (None), plus the CUDA-graph launch cost."""
    g = gpu_perf(gpu)
    k = decode_constants()
    peak = g.fp8_flops * FP8_GEMM_EFF if dtype == "fp8" else g.bf16_flops * BF16_EFF
    t_c = flops / peak if flops else 0.0
    if stream == "dense" and dtype == "fp8":
        stream = "dense_fp8"
    frac = {"grouped": k.stream_fraction, "dense": k.dense_stream_fraction, "dense_fp8": k.fp8_dense_stream_fraction,
            None: MEM_EFF}[stream]
    t_m = bytes_ / (g.hbm_bw * frac) if bytes_ else 0.0
    bound = "launch" if max(t_c, t_m) < k.launch_s else ("compute" if t_c > t_m else "memory")
    return Kernel(slice=slice_, name=name, time_s=max(t_c, t_m) + k.launch_s, flops=flops, bytes=bytes_, bound=bound)


def gemm(slice_: str, name: str, gpu: str, m: int, k: int, n: int, dtype: str, *, groups: int = 1,
         weight_dtype: str | None = None) -> Kernel:
    """[m, k] x [k, n] with ``groups`` weight matrices [k, n] (experts) read once each, stored in
    ``weight_dtype`` (default ``dtype``; "mxfp4" for gpt-oss experts)."""
    wd = weight_dtype or dtype
    eb = {"fp8": 1.0 + SCALE_BYTES, "mxfp4": MXFP4_BYTES_PER_WEIGHT}.get(wd, 2.0)
    ab = 1.0 if dtype == "fp8" else 2.0
    return kernel(slice_, name, gpu, dtype, 2.0 * m * k * n, groups * k * n * eb + m * k * ab + 2.0 * m * n,
                  stream="grouped" if groups > 1 else "dense")


def eltwise(slice_: str, name: str, gpu: str, rows: int, width: int, passes: float = 2.0) -> Kernel:
    return kernel(slice_, name, gpu, "bf16", 0.0, 2.0 * rows * width * passes, stream=None)


def flashmla_decode(gpu: str, *, requests: int, q_per_request: int, context: int, heads: int, dc: int, dr: int,
                    kv_dtype_bytes: float = 2.0) -> Kernel:
    """Fused MLA decode attention (FlashMLA-class): reads each request's latent cache [C, d_c + d_r] once for
    its q query tokens x ``heads`` heads; FLOPs 2 x (d_c + d_r) + 2 x d_c per (query, head, position)."""
    flops = requests * q_per_request * heads * context * (2.0 * (dc + dr) + 2.0 * dc)
    nbytes = requests * (context * (dc + dr) * kv_dtype_bytes + q_per_request * heads * (dc + dr + dc) * 2.0)
    return kernel("attn(F)", "flashmla", gpu, "bf16", flops, nbytes, stream=None)


def active_experts(rows: float, local: int) -> float:
    """Expected local experts with >= 1 of ``rows`` uniformly routed rows."""
    if local <= 1:
        return float(local) if rows > 0 else 0.0
    return local * (1.0 - (1.0 - 1.0 / local) ** rows)


def decode_layer_kernels(cfg: ModelConfig, i: int, *, gpu: str, requests: int, q: int, context: int,
                         expert_rows: int, local_experts: int, gemm_dtype: str = "fp8", kv_dtype_bytes: float = 2.0,
                         attn_tp: int = 1, ep: int = 1, expert_weight_dtype: str | None = None) -> list[Kernel]:
    """The kernels of decoder layer ``i`` for one micro-batch of ``requests`` x ``q`` tokens on one GPU."""
    H = cfg.hidden_size
    T = requests * q * attn_tp  # tokens the attention replica's ranks each see (SP all-gathered)
    out: list[Kernel] = [eltwise("attn(F)", "input_norm", gpu, T, H)]
    attention = _mla_kernels if cfg.attention == "mla" else _gqa_kernels
    out += attention(cfg, i, gpu=gpu, requests=requests, q=q, context=context, gemm_dtype=gemm_dtype,
                     kv_dtype_bytes=kv_dtype_bytes, attn_tp=attn_tp)
    t = requests * q  # tokens of this GPU after the SP reduce-scatter
    out.append(eltwise("mlp(F)", "post_attn_norm", gpu, t, H))
    if cfg.is_moe_layer(i):
        out += _moe_kernels(cfg, gpu=gpu, tokens=t, expert_rows=expert_rows, local_experts=local_experts,
                            gemm_dtype=gemm_dtype, ep=ep, expert_weight_dtype=expert_weight_dtype)
    else:
        Id = cfg.intermediate_size
        out.append(gemm("mlp(F)", "mlp_gate_up", gpu, t, H, 2 * Id, gemm_dtype))
        out.append(eltwise("mlp(F)", "mlp_swiglu+quant", gpu, t, 2 * Id, 0.75))
        out.append(gemm("mlp(F)", "mlp_down", gpu, t, Id, H, gemm_dtype))
    return out


def _mla_kernels(cfg: ModelConfig, i: int, *, gpu: str, requests: int, q: int, context: int, gemm_dtype: str,
                 kv_dtype_bytes: float, attn_tp: int) -> list[Kernel]:
    """MLA attention of one micro-batch with the absorbed up-projections and FlashMLA-class decode."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    T = requests * q * attn_tp
    nh_l = max(1, nh // attn_tp)
    dc, dr, dn, dv = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
    qa = cfg.q_lora_rank or 0
    out = [gemm("attn(F)", "q_a+kv_a_proj", gpu, T, H, qa + dc + dr, gemm_dtype),
           eltwise("attn(F)", "q_a/kv_a norm", gpu, T, qa + dc)]
    if qa:
        out.append(gemm("attn(F)", "q_b_proj", gpu, T, qa, nh_l * (dn + dr), gemm_dtype))
    else:
        out.append(gemm("attn(F)", "q_proj", gpu, T, H, nh_l * (dn + dr), gemm_dtype))
    out.append(eltwise("attn(F)", "rope", gpu, T, nh_l * dr + dr))
    # absorbed W_UK (q_nope -> latent) and W_UV (latent -> v): per-head BF16 bmm (DeepSeek-V2 §2.1.2)
    out.append(kernel("attn(F)", "absorb_uk", gpu, "bf16", 2.0 * T * nh_l * dn * dc,
                      nh_l * dn * dc * 2.0 + T * nh_l * (dn + dc) * 2.0))
    out.append(flashmla_decode(gpu, requests=requests * attn_tp, q_per_request=q, context=context, heads=nh_l,
                               dc=dc, dr=dr, kv_dtype_bytes=kv_dtype_bytes))
    out.append(kernel("attn(F)", "absorb_uv", gpu, "bf16", 2.0 * T * nh_l * dc * dv,
                      nh_l * dc * dv * 2.0 + T * nh_l * (dc + dv) * 2.0))
    out.append(gemm("attn(F)", "o_proj", gpu, T, nh_l * dv, H, gemm_dtype))
    return out


def _gqa_kernels(cfg: ModelConfig, i: int, *, gpu: str, requests: int, q: int, context: int, gemm_dtype: str,
                 kv_dtype_bytes: float, attn_tp: int) -> list[Kernel]:
    """GQA attention of one micro-batch: fused QKV, flash-decode over layer ``i``'s context, output projection."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    T = requests * q * attn_tp
    nh_l = max(1, nh // attn_tp)
    hd, nkv = cfg.head_dim, cfg.num_key_value_heads
    nkv_l = max(1, nkv // attn_tp)
    out = [gemm("attn(F)", "qkv_proj", gpu, T, H, (nh_l + 2 * nkv_l) * hd, gemm_dtype)]
    ctx = decode_context(cfg, i, context)  # a sliding-window layer reads min(C, W) keys
    kv = T * ctx * 2 * nkv_l * hd * kv_dtype_bytes / q  # each request's K and V read once for its q tokens
    core = T * attention_core_flops_per_token(cfg, ctx) * nh_l / nh
    t = op_time(gpu, "attn_decode_gqa", "bf16", flops=core, bytes_=kv, b=requests * attn_tp * q, t=int(ctx),
                h=nh_l, kvh=nkv_l, d=hd)
    out.append(Kernel(slice="attn(F)", name="flash_decode", time_s=t.time_s, flops=core, bytes=kv,
                      bound="memory" if kv / gpu_perf(gpu).hbm_bw > core / gpu_perf(gpu).bf16_flops else "compute"))
    out.append(gemm("attn(F)", "o_proj", gpu, T, nh_l * hd, H, gemm_dtype))
    return out


def _moe_kernels(cfg: ModelConfig, *, gpu: str, tokens: int, expert_rows: int, local_experts: int, gemm_dtype: str,
                 ep: int, expert_weight_dtype: str | None) -> list[Kernel]:
    """A MoE layer's router, shared experts, DeepEP low-latency phases (ep > 1) and routed-expert GEMMs."""
    H, t = cfg.hidden_size, tokens
    E, I = cfg.n_routed_experts, cfg.moe_intermediate_size
    out = [gemm("attn(F)", "router", gpu, t, H, E, "bf16"), eltwise("attn(F)", "topk", gpu, t, E)]
    if cfg.n_shared_experts:
        Is = cfg.shared_intermediate_size
        out.append(gemm("mlp(F)", "shared_gate_up", gpu, t, H, 2 * Is, gemm_dtype))
        out.append(eltwise("mlp(F)", "shared_swiglu+quant", gpu, t, 2 * Is, 0.75))
        out.append(gemm("mlp(F)", "shared_down", gpu, t, Is, H, gemm_dtype))
    if ep > 1:  # DeepEP low-latency send / receive phases (module docstring)
        k_ = cfg.num_experts_per_tok
        msg = H + H / 128 * 4 + 16  # FP8 payload + scales + metadata (DeepEP test_low_latency.py)
        out.append(kernel("attn(F)", "ll_dispatch_send", gpu, "bf16", 0.0, t * H * 2.0 + t * k_ * msg, stream=None))
        out.append(kernel("mlp(F)", "ll_dispatch_recv", gpu, "bf16", 0.0, 0.0, stream=None))
        out.append(kernel("mlp(F)", "ll_combine_send", gpu, "bf16", 0.0, 2 * expert_rows * H * 2.0, stream=None))
        out.append(kernel("attn(F)", "ll_combine_recv", gpu, "bf16", 0.0, t * k_ * H * 2.0 + t * H * 2.0,
                          stream=None))
    act = active_experts(expert_rows, local_experts)
    if expert_rows > 0 and act > 0:
        g = max(1, math.ceil(act))
        out.append(gemm("mlp(F)", "experts_gate_up", gpu, expert_rows, H, 2 * I, gemm_dtype, groups=g,
                        weight_dtype=expert_weight_dtype))
        out.append(eltwise("mlp(F)", "experts_swiglu+quant", gpu, expert_rows, 2 * I, 0.75))
        out.append(gemm("mlp(F)", "experts_down", gpu, expert_rows, I, H, gemm_dtype, groups=g,
                        weight_dtype=expert_weight_dtype))
    return out


def head_kernels(cfg: ModelConfig, *, gpu: str, tokens: int, attn_tp: int = 1) -> list[Kernel]:
    """Final norm + output head (BF16, V3 §3.3) over ``tokens`` positions + sampling. Under TP attention the head
    is vocabulary-parallel over the replica's ``attn_tp`` ranks (each reads V / attn_tp rows for the replica's
    tokens; sampling reduces per-rank top candidates, whose exchange is not modelled)."""
    H, V = cfg.hidden_size, cfg.vocab_size
    T, Vl = tokens * attn_tp, -(-V // attn_tp)
    return [eltwise("attn(F)", "final_norm", gpu, T, H), gemm("attn(F)", "lm_head", gpu, T, H, Vl, "bf16"),
            eltwise("attn(F)", "sample", gpu, T, Vl, 1.0)]


def slice_times(kernels: list[Kernel]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in kernels:
        out[k.slice] = out.get(k.slice, 0.0) + k.time_s
    return out
