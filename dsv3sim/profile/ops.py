"""The operators the profiler times, each as a ``Case``: input sets to rotate, the call, FLOPs and bytes.

Dimension legend (DeepSeek-V3 names, config.json): M tokens, N output features, K input features,
E experts in a group GEMM, B batch, S sequence (prefill), T context (decode), H attention heads,
dqk = qk_nope_head_dim + qk_rope_head_dim (192), dv = v_head_dim (128), dc = kv_lora_rank (512),
dr = qk_rope_head_dim (64).

GEMM convention: C[M,N] = A[M,K] x B[K,N] with B stored as an nn.Linear weight W[N,K] (B = W^T).
FLOPs count 2 per multiply-add; bytes are the fewest HBM bytes (each operand read once, result written
once), the roofline denominator of METHOD.md.

Where ``dsv3sim.nn`` provides the operator (the model's own code, see ``dsv3sim/nn/NOTES.md``) the case
calls it (``impl`` says ``nn.<function>``); otherwise a plain-torch reference with the same math
(``impl`` = ``torch.<kernel>``). Attention runs in BF16 as DeepSeek-V3 does (report §3.3.1 keeps attention
in higher precision); ``dtype`` of GEMM-like ops is ``bf16`` or ``fp8`` (block-scaled, ``fp8.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dsv3sim.config.errors import ConfigError
from dsv3sim.nn import fp8 as fp8m
from dsv3sim.profile.timing import n_sets_for

BF16 = torch.bfloat16


@dataclass(kw_only=True, slots=True)
class Case:
    fn: Callable[..., Any]
    sets: list[tuple]
    flops: float
    bytes: float
    impl: str
    graph: bool = True  # False: time eager launches (ops whose capture is unreliable, e.g. autograd)


def _gen(device: str, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _randn(shape, device, g, dtype=BF16, scale=1.0) -> torch.Tensor:
    return (torch.randn(shape, device=device, generator=g, dtype=torch.float32) * scale).to(dtype)


def _sets(make: Callable[[], tuple], bytes_per_set: float, device: str, max_sets: int | None = None) -> list[tuple]:
    n = n_sets_for(bytes_per_set) if device != "cpu" else 2
    if max_sets:
        n = min(n, max_sets)
    return [make() for _ in range(n)]


# ---------------------------------------------------------------- GEMM


def gemm(*, m: int, n: int, k: int, dtype: str, device: str, seed: int = 0, emulate: bool = False) -> Case:
    """C[M,N] = A[M,K] W[N,K]^T in bf16, or fp8 with 1x128 / 128x128 block scales (DeepSeek-V3 §3.3.2)."""
    g = _gen(device, seed)
    flops = 2.0 * m * n * k
    if dtype in ("bf16", "fp32"):
        dt = BF16 if dtype == "bf16" else torch.float32
        eb = 2 if dtype == "bf16" else 4
        nbytes = (m * k + n * k + m * n) * eb
        sets = _sets(lambda: (_randn((m, k), device, g, dt), _randn((n, k), device, g, dt, 0.02)), nbytes, device)
        return Case(fn=lambda a, w: torch.mm(a, w.t()), sets=sets, flops=flops, bytes=nbytes, impl="torch.mm")
    if dtype != "fp8":
        raise ConfigError(f"gemm dtype must be bf16, fp32 or fp8, got {dtype!r}")
    nbytes = m * k + n * k + 2 * m * n + 4 * (m * k / 128 + n * k / 16384)

    m4 = -(-m // 4) * 4  # cuBLAS block-scaled FP8 needs M % 4 == 0 (seen on the H200): pad rows like a kernel tile

    def make() -> tuple:
        aq, sa = fp8m.quantize_1x128(_randn((m4 if not emulate else m, k), device, g))
        wq, sw = fp8m.quantize_128x128(_randn((n, k), device, g, scale=0.02))
        if emulate:
            return aq, sa, wq, sw
        sa_, sw_ = fp8m.prepare_scales(sa, sw)
        return aq, sa_, wq, sw_

    sets = _sets(make, nbytes, device)
    if emulate:
        return Case(fn=lambda aq, sa, wq, sw: fp8m.dequantize(aq, sa, 1).to(BF16) @ fp8m.dequantize(wq, sw, 128).to(
            BF16).t(), sets=sets, flops=flops, bytes=nbytes, impl="emulated-bf16")
    return Case(fn=lambda aq, sa, wq, sw: torch._scaled_mm(aq, wq.t(), sa, sw, out_dtype=BF16), sets=sets,
                flops=flops, bytes=nbytes, impl="torch._scaled_mm[1x128,128x128]")


# ---------------------------------------------------------------- grouped GEMM (routed experts)


def tokens_per_expert(e: int, m: int, dist: str, seed: int = 0) -> list[int]:
    """E group sizes averaging m tokens: 'uniform' (all m) or 'zipf' (load ~ 1/rank, the skew of an
    unbalanced router; same total E*m)."""
    if dist == "uniform":
        return [m] * e
    if dist == "zipf":
        w = [1.0 / (i + 1) for i in range(e)]
        tot = e * m
        raw = [tot * x / sum(w) for x in w]
        out = [int(r) for r in raw]
        out[0] += tot - sum(out)
        return out
    raise ConfigError(f"dist must be 'uniform' or 'zipf', got {dist!r}")


def grouped_gemm(*, e: int, m: int, n: int, k: int, dtype: str, device: str, dist: str = "uniform",
                 seed: int = 0, impl: str = "grouped") -> Case:
    """Routed experts: for each expert i, C_i[m_i,N] = X_i[m_i,K] W_i[N,K]^T (DeepSeekMoE, V3 §2.1.2).

    impl 'grouped': one torch._grouped_mm launch (bf16) ; 'loop': one GEMM per expert (fp8 block-scaled or bf16),
    captured in one CUDA graph so the launch gaps vanish as in a fused kernel's best case.
    """
    g = _gen(device, seed)
    tpe = tokens_per_expert(e, m, dist, seed)
    tot = sum(tpe)
    flops = 2.0 * tot * n * k
    eb = 1 if dtype == "fp8" else 2
    nbytes = (tot * k + e * n * k) * eb + tot * n * 2
    offs = torch.tensor([sum(tpe[: i + 1]) for i in range(e)], dtype=torch.int32, device=device)
    if impl == "grouped" and dtype == "bf16":
        sets = _sets(lambda: (_randn((tot, k), device, g), _randn((e, n, k), device, g, scale=0.02)), nbytes, device)
        return Case(fn=lambda x, w: torch._grouped_mm(x, w.transpose(-2, -1), offs=offs), sets=sets, flops=flops,
                    bytes=nbytes, impl="torch._grouped_mm")
    if impl != "loop" and impl != "grouped":
        raise ConfigError(f"grouped_gemm impl must be 'grouped' or 'loop', got {impl!r}")
    bounds = [0] + [sum(tpe[: i + 1]) for i in range(e)]
    if dtype == "fp8":
        def make() -> tuple:
            out = []
            for i in range(e):
                rows = -(-tpe[i] // 4) * 4  # M % 4 == 0 for cuBLAS block-scaled FP8 (padded rows, as a tile would)
                aq, sa = fp8m.quantize_1x128(_randn((rows, k), device, g))
                wq, sw = fp8m.quantize_128x128(_randn((n, k), device, g, scale=0.02))
                sa_, sw_ = fp8m.prepare_scales(sa, sw)
                out.append((aq, sa_, wq, sw_))
            return (out,)

        def fn(experts):
            return [torch._scaled_mm(aq, wq.t(), sa, sw, out_dtype=BF16) for aq, sa, wq, sw in experts if aq.shape[0]]
        return Case(fn=fn, sets=_sets(make, nbytes, device, max_sets=8), flops=flops, bytes=nbytes,
                    impl="loop:torch._scaled_mm[1x128,128x128]")

    def make_bf16() -> tuple:
        x = _randn((tot, k), device, g)
        return ([(x[bounds[i]: bounds[i + 1]], _randn((n, k), device, g, scale=0.02)) for i in range(e)],)

    def fn_bf16(experts):
        return [torch.mm(x, w.t()) for x, w in experts if x.shape[0]]
    return Case(fn=fn_bf16, sets=_sets(make_bf16, nbytes, device, max_sets=8), flops=flops, bytes=nbytes,
                impl="loop:torch.mm")


# ---------------------------------------------------------------- attention (MLA)


def attn_prefill(*, b: int, s: int, h: int, dqk: int = 192, dv: int = 128, device: str, seed: int = 0,
                 backward: bool = False, dtype: str = "bf16") -> Case:
    """Causal self-attention core of MLA prefill/training (V3 §2.1.1): per head, softmax(q k^T / sqrt(dqk)) v.

    FLOPs (causal, half the square): 2 * B*H*S^2/2 * (dqk + dv); backward counts 2.5x forward (dQ, dK, dV
    and the recomputed P: FlashAttention-2 §3.2 convention).
    """
    g = _gen(device, seed)
    fwd_flops = 2.0 * b * h * s * s / 2 * (dqk + dv)
    nbytes = 2 * b * h * s * (2 * dqk + 2 * dv)  # q,k,v read, o written

    def make():
        q = _randn((b, h, s, dqk), device, g).requires_grad_(backward)
        kk = _randn((b, h, s, dqk), device, g).requires_grad_(backward)
        v = _randn((b, h, s, dv), device, g).requires_grad_(backward)
        do = _randn((b, h, s, dv), device, g) if backward else None
        return q, kk, v, do

    def fwd(q, kk, v, do):
        return F.scaled_dot_product_attention(q, kk, v, is_causal=True)

    def fwd_bwd(q, kk, v, do):
        o = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
        return torch.autograd.grad(o, (q, kk, v), do)

    sets = _sets(make, nbytes, device, max_sets=4)
    if backward:
        return Case(fn=fwd_bwd, sets=sets, flops=3.5 * fwd_flops, bytes=3 * nbytes, impl="torch.sdpa fwd+bwd",
                    graph=False)
    return Case(fn=fwd, sets=sets, flops=fwd_flops, bytes=nbytes, impl="torch.sdpa")


PAGE = 64  # tokens per KV-cache page (FlashMLA block size)


def attn_decode(*, b: int, t: int, h: int, dc: int = 512, dr: int = 64, device: str, seed: int = 0,
                dtype: str = "bf16") -> Case:
    """MLA decode with absorbed W_UK / W_UV (V2 report §2.1.2; V3 inference model.py 'absorb' path):
    scores[b,h,t] = q_lat[b,h,:dc] . c_kv[b,t,:] + q_pe[b,h,:dr] . k_pe[b,t,:]; out_lat = softmax(scores) c_kv.
    One query token per sequence; the latent cache (dc + dr per token) is read once.

    The cache is paged in blocks of ``PAGE`` = 64 tokens (FlashMLA's KV block size), so a context of t tokens
    occupies ceil(t / 64) pages and the kernel runs over whole pages (the tail page's unused slots cost, as in a
    paged kernel). FLOPs and bytes count the t real tokens. Without pages, ``bmm`` over a ragged t (t % 8 != 0:
    rows not 16-byte aligned) measured 2-5x slower on the H200 (``profiles/h200/runs/run3_decode_unpaged.csv``),
    an artefact of the unfused reference, not of MLA.
    """
    g = _gen(device, seed)
    flops = 2.0 * b * h * t * (dc + dr) + 2.0 * b * h * t * dc
    nbytes = 2 * b * t * (dc + dr) + 2 * b * h * (dc + dr + dc)
    scale = 1.0 / math.sqrt(128 + dr)
    tp = -(-t // PAGE) * PAGE

    def make():
        return (_randn((b, h, dc), device, g), _randn((b, h, dr), device, g), _randn((b, tp, dc), device, g),
                _randn((b, tp, dr), device, g))

    def fn(q_lat, q_pe, ckv, kpe):
        sc = (torch.bmm(q_lat, ckv.transpose(1, 2)) + torch.bmm(q_pe, kpe.transpose(1, 2))).float() * scale
        p = sc.softmax(dim=-1).to(BF16)
        return torch.bmm(p, ckv)

    return Case(fn=fn, sets=_sets(make, nbytes * tp / t, device), flops=flops, bytes=nbytes,
                impl="torch.bmm absorbed, 64-token pages")


def attn_decode_gqa(*, b: int, t: int, h: int, kvh: int, d: int, device: str, seed: int = 0,
                    dtype: str = "bf16") -> Case:
    """GQA decode (Qwen3-MoE, Mixtral, gpt-oss): one query token per sequence, ``h`` query heads sharing ``kvh``
    key/value heads of width ``d``; the cache K, V [b, kvh, t, d] is read once. torch SDPA with ``enable_gqa``
    (the fused kernel torch dispatches; no K/V repetition in memory).

    FLOPs 2 b h t 2d (q.k and p.v); bytes: K and V read, q read and o written (BF16)."""
    g = _gen(device, seed)
    flops = 2.0 * b * h * t * 2 * d
    nbytes = 2 * b * t * kvh * 2 * d + 2 * b * h * d * 2

    def make():
        return (_randn((b, h, 1, d), device, g), _randn((b, kvh, t, d), device, g), _randn((b, kvh, t, d), device, g))

    def fn(q, kk, v):
        return F.scaled_dot_product_attention(q, kk, v, enable_gqa=True)

    return Case(fn=fn, sets=_sets(make, nbytes, device), flops=flops, bytes=nbytes, impl="torch.sdpa enable_gqa")


# ---------------------------------------------------------------- memory-bound and small ops


def rmsnorm(*, m: int, n: int, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    """y = x / sqrt(mean(x^2) + eps) * w (RMSNorm, Zhang & Sennrich 2019); bf16 in/out."""
    g = _gen(device, seed)
    nbytes = 2 * m * n * 2 + 2 * n
    w = _randn((n,), device, g)
    sets = _sets(lambda: (_randn((m, n), device, g),), nbytes, device)
    return Case(fn=lambda x: F.rms_norm(x, (n,), w, 1e-6), sets=sets, flops=4.0 * m * n, bytes=nbytes,
                impl="F.rms_norm")


def rope(*, m: int, h: int, d: int = 64, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    """Rotary embedding on the decoupled rope part (dr = 64) of M tokens x H heads, complex-pair form."""
    g = _gen(device, seed)
    nbytes = 2 * 2 * m * h * d
    ang = torch.rand((m, 1, d // 2), device=device, generator=g) * 6.28
    freqs = torch.polar(torch.ones_like(ang), ang)

    def fn(x):
        xc = torch.view_as_complex(x.float().view(m, h, d // 2, 2))
        return torch.view_as_real(xc * freqs).flatten(2).to(BF16)
    sets = _sets(lambda: (_randn((m, h, d), device, g),), nbytes, device)
    return Case(fn=fn, sets=sets, flops=6.0 * m * h * d / 2, bytes=nbytes, impl="torch complex mul")


def swiglu(*, m: int, n: int, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    """silu(a) * b on [M, N] halves (expert / dense MLP activation)."""
    g = _gen(device, seed)
    nbytes = 3 * 2 * m * n
    sets = _sets(lambda: (_randn((m, n), device, g), _randn((m, n), device, g)), nbytes, device)
    return Case(fn=lambda a, b: F.silu(a) * b, sets=sets, flops=5.0 * m * n, bytes=nbytes, impl="F.silu*mul")


def quant_fp8(*, m: int, n: int, device: str, seed: int = 0, dtype: str = "fp8") -> Case:
    """1x128 activation quantisation bf16 -> e4m3 + fp32 scales (V3 §3.3.2), the cast before every FP8 GEMM."""
    g = _gen(device, seed)
    nbytes = 2 * m * n + m * n + 4 * m * n / 128
    sets = _sets(lambda: (_randn((m, n), device, g),), nbytes, device)
    return Case(fn=fp8m.quantize_1x128, sets=sets, flops=3.0 * m * n, bytes=nbytes,
                impl="nn.fp8.quantize_1x128 (torch ops, unfused)")


def gate(*, m: int, n: int = 256, k: int = 7168, n_group: int = 8, topk_group: int = 4, top_k: int = 8,
         device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    """V3 router (§2.1.2): s = sigmoid(x W_g^T); node/group-limited top-k on s + bias (groups scored by the sum
    of their top-2), weights = s[topk] normalised."""
    g = _gen(device, seed)
    wg = _randn((n, k), device, g, scale=0.02)
    bias = torch.zeros(n, device=device)
    nbytes = 2 * m * k + 2 * n * k + m * top_k * 8

    def fn(x):
        s = torch.mm(x, wg.t()).float().sigmoid()
        sb = s + bias
        gs = sb.view(m, n_group, -1).topk(2, dim=-1)[0].sum(-1)
        gidx = gs.topk(topk_group, dim=-1)[1]
        mask = torch.ones(m, n_group, dtype=torch.bool, device=x.device).scatter_(1, gidx, False)
        sb = sb.view(m, n_group, -1).masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
        idx = sb.topk(top_k, dim=-1)[1]
        w = s.gather(1, idx)
        return idx, w / w.sum(-1, keepdim=True)
    sets = _sets(lambda: (_randn((m, k), device, g),), nbytes, device)
    return Case(fn=fn, sets=sets, flops=2.0 * m * n * k, bytes=nbytes, impl="torch gate+grouped topk")


def embedding(*, m: int, n: int = 7168, k: int = 129280, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    """Token embedding lookup: M rows of width N gathered from a [K=vocab, N] table."""
    g = _gen(device, seed)
    table = _randn((k, n), device, g)
    nbytes = 2 * 2 * m * n
    sets = _sets(lambda: (torch.randint(0, k, (m,), device=device, generator=g),), nbytes, device)
    return Case(fn=lambda ids: F.embedding(ids, table), sets=sets, flops=0.0, bytes=nbytes, impl="F.embedding")


def adamw(*, n: int, device: str, seed: int = 0, dtype: str = "fp32") -> Case:
    """One AdamW step over N fp32 parameters (param, grad, exp_avg, exp_avg_sq: 16 B read, 12 B written)."""
    g = _gen(device, seed)
    nbytes = 28.0 * n

    def make():
        return tuple([torch.randn(n, device=device, generator=g)] for _ in range(4))
    step = torch.tensor(1.0, device=device)

    if device != "cpu":
        def fn(p, gr, m1, m2):
            torch._fused_adamw_(p, gr, m1, m2, [], [step], lr=1e-4, beta1=0.9, beta2=0.95, weight_decay=0.1,
                                eps=1e-8, amsgrad=False, maximize=False)
        impl = "torch._fused_adamw_"
    else:
        def fn(p, gr, m1, m2):
            torch._foreach_mul_(m1, 0.9)
            torch._foreach_add_(m1, gr, alpha=0.1)
            torch._foreach_mul_(m2, 0.95)
            torch._foreach_addcmul_(m2, gr, gr, value=0.05)
            d = torch._foreach_sqrt(m2)
            torch._foreach_add_(d, 1e-8)
            torch._foreach_mul_(p, 1 - 1e-5)
            torch._foreach_addcdiv_(p, m1, d, value=-1e-4)
        impl = "torch._foreach (unfused)"
    return Case(fn=fn, sets=_sets(make, nbytes, device, max_sets=4), flops=12.0 * n, bytes=nbytes, impl=impl)


def shared_expert(*, m: int, n: int = 2048, k: int = 7168, dtype: str = "bf16", device: str, seed: int = 0) -> Case:
    """Shared expert MLP (V3 §2.1.2): W2 (silu(x W1^T) * (x W3^T)), N = moe_intermediate_size; 3 GEMMs."""
    g = _gen(device, seed)
    eb = 1 if dtype == "fp8" else 2
    nbytes = (m * k + 3 * n * k) * eb + 2 * m * k + 4 * m * n
    if dtype == "fp8":
        def make():
            ws = [fp8m.quantize_128x128(_randn((n, k), device, g, scale=0.02)) for _ in range(2)]
            w2 = fp8m.quantize_128x128(_randn((k, n), device, g, scale=0.02))
            return (_randn((m, k), device, g), ws, w2)

        def fn(x, ws, w2):
            aq, sa = fp8m.quantize_1x128(x, row_align=fp8m.ROW_ALIGN, crop=False)
            a, b = (fp8m.fp8_gemm(aq, sa, wq, sw, b_block=True, out_dtype=BF16) for wq, sw in ws)
            hq, sh = fp8m.quantize_1x128(F.silu(a) * b, row_align=fp8m.ROW_ALIGN, crop=False)
            return fp8m.fp8_gemm(hq, sh, *w2, b_block=True, out_dtype=BF16)
        return Case(fn=fn, sets=_sets(make, nbytes, device), flops=6.0 * m * n * k, bytes=nbytes,
                    impl="fp8 quant + 3x _scaled_mm")

    def make_bf16():
        return (_randn((m, k), device, g), _randn((2 * n, k), device, g, scale=0.02),
                _randn((k, n), device, g, scale=0.02))

    def fn_bf16(x, w13, w2):
        a, b = torch.mm(x, w13.t()).chunk(2, dim=-1)
        return torch.mm(F.silu(a) * b, w2.t())
    return Case(fn=fn_bf16, sets=_sets(make_bf16, nbytes, device), flops=6.0 * m * n * k, bytes=nbytes,
                impl="torch.mm fused w1|w3")


BUILDERS: dict[str, Callable[..., Case]] = {
    "gemm": gemm, "grouped_gemm": grouped_gemm, "attn_prefill": attn_prefill,
    "attn_prefill_fwdbwd": lambda **kw: attn_prefill(backward=True, **kw), "attn_decode": attn_decode,
    "attn_decode_gqa": attn_decode_gqa, "rmsnorm": rmsnorm, "rope": rope, "swiglu": swiglu, "quant_fp8": quant_fp8,
    "gate": gate,
    "embedding": embedding, "adamw": adamw, "shared_expert": shared_expert,
}
