"""Which shapes the profiler measures (no torch): lattices for interpolation + the model's own shapes.

Every point is a ``Point(op, dtype, shape, role, set)``:
* ``set='lattice'``: a regular grid in log-space (powers of two and their 1.5x midpoints in M) that the
  predictor interpolates on (``predict.py``);
* ``set='model'``: the exact shapes of the given model (MLA projections, experts, head ...), ``role`` names
  the weight (``mla.wq_a`` ...); the predictor prefers these series for an exact (N, K) match;
* ``set='heldout'``: random shapes never in the lattice, measured only to check the predictor (tests).

Model shapes from ModelConfig (DeepSeek-V3 config.json): wq_a [q_lora_rank, hidden], wq_b [H*dqk, q_lora],
wkv_a [kv_lora + dr, hidden], wkv_b [H*(d_nope+dv), kv_lora], wo [hidden, H*dv], experts w1|w3 fused
[2*moe_inter, hidden] and w2 [hidden, moe_inter], dense MLP [2*inter, hidden] / [hidden, inter], head [vocab, hidden].
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig

GRIDS = ("full", "small", "heldout", "quick", "nn", "fp8fix", "lattice2", "scatter", "heldout2", "lattice3", "gqa")


@dataclass(frozen=True, kw_only=True, slots=True)
class Point:
    op: str
    dtype: str
    shape: dict[str, Any] = field(default_factory=dict)
    role: str = ""
    set: str = "lattice"


def _m_values(lo: int, hi: int) -> list[int]:
    """Powers of two and 1.5x midpoints in [lo, hi] (interpolation nodes a factor <= 1.5 apart)."""
    out, p = [], 1
    while p <= hi:
        for v in (p, p * 3 // 2):
            if lo <= v <= hi and v not in out:
                out.append(v)
        p *= 2
    return sorted(out)


def model_gemms(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """role -> (N, K) of the model's weight GEMMs (forward)."""
    h, nh = cfg.hidden_size, cfg.num_attention_heads
    dqk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    out = {
        "mla.wq_a": (cfg.q_lora_rank, h) if cfg.q_lora_rank else (nh * dqk, h),
        "mla.wkv_a": (cfg.kv_lora_rank + cfg.qk_rope_head_dim, h),
        "mla.wkv_b": (nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank),
        "mla.wo": (h, nh * cfg.v_head_dim),
        "moe.w13": (2 * cfg.moe_intermediate_size, h),
        "moe.w2": (h, cfg.moe_intermediate_size),
        "moe.gate": (cfg.n_routed_experts, h),
        "mlp.w13": (2 * cfg.intermediate_size, h),
        "mlp.w2": (h, cfg.intermediate_size),
        "head": (cfg.vocab_size, h),
    }
    if cfg.attention == "gqa":  # q/k/v/o projections instead of MLA's
        for role in [r for r in out if r.startswith("mla.")]:
            del out[role]
        hd, nkv = cfg.head_dim, cfg.num_key_value_heads
        out.update({"attn.q_proj": (nh * hd, h), "attn.kv_proj": (nkv * hd, h), "attn.o_proj": (h, nh * hd)})
    if cfg.q_lora_rank:
        out["mla.wq_b"] = (nh * dqk, cfg.q_lora_rank)
        out["mla.wq_a+wkv_a"] = (cfg.q_lora_rank + cfg.kv_lora_rank + cfg.qk_rope_head_dim, h)  # DeepGEMM 2112
    # backward data-gradient GEMMs use W (not W^T): C[M,K] = dY[M,N] W[N,K] -> (N', K') = (K, N)
    for role in ("mla.wq_b", "mla.wkv_b", "mla.wo", "attn.o_proj", "moe.w13", "moe.w2"):
        if role in out:
            n, k = out[role]
            out[role + ".dgrad"] = (k, n)
    return out


def points(cfg: ModelConfig, grid: str = "full", dtypes: tuple[str, ...] = ("bf16", "fp8"),
           seed: int = 0) -> list[Point]:
    """The measurement plan for ``grid`` in GRIDS ('small' for CPUs, 'quick' for smoke tests). For a GQA model
    the MLA attention ops (and shapes sized by MLA widths) give way to the ``gqa`` grid's attention points."""
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; known: {', '.join(GRIDS)}")
    if cfg.attention == "gqa" and grid not in ("gqa", "quick"):
        if grid == "nn":
            raise ConfigError(f"the nn grid times dsv3sim.nn's MLA functions; {cfg.name} uses GQA attention")
        mla = {"attn_decode", "rope"}
        pts = [p for p in _points(cfg, grid, dtypes, seed) if p.op not in mla
               and not any(isinstance(v, int) and v <= 0 for v in p.shape.values())]
        return pts + (gqa_points() if grid in ("full", "small") else [])
    return _points(cfg, grid, dtypes, seed)


def _points(cfg: ModelConfig, grid: str, dtypes: tuple[str, ...], seed: int) -> list[Point]:
    if grid not in ("full", "small", "quick"):
        return _named_grid(cfg, grid, dtypes, seed)
    small = grid in ("small", "quick")
    pts = _gemm_points(cfg, grid, dtypes)
    if grid == "quick":
        pts.append(Point(op="attn_decode", dtype="bf16", shape={"b": 2, "t": 64, "h": 4}))
        pts.append(Point(op="rmsnorm", dtype="bf16", shape={"m": 16, "n": 256}))
        return pts
    return pts + _grouped_points(cfg, small, dtypes) + _attention_points(cfg, small) + \
        _vector_points(cfg, small, dtypes)


_NK_MIDS = {384, 768, 1536, 3072, 6144, 12288, 24576}  # 1.5x midpoints (TP-split widths)


def _lattice2(cfg: ModelConfig, dtypes: tuple[str, ...]) -> list[Point]:
    """1.5x midpoints in N and K (TP-split widths such as 3072, 6144, 12288)."""
    nk = sorted(_NK_MIDS | {256 * 2**i for i in range(8)})
    return [Point(op="gemm", dtype=dt, shape={"m": m, "n": n, "k": k}) for dt in dtypes for n in nk for k in nk
            for m in _m_values(1, 16384) if (n in _NK_MIDS or k in _NK_MIDS) and 2.0 * m * n * k <= 4e12]


def _lattice3(cfg: ModelConfig, dtypes: tuple[str, ...]) -> list[Point]:
    """Denser M where cuBLAS switches tiles and wave counts (1-3 waves of 132 SMs)."""
    nk = sorted({256 * 2**i for i in range(8)} | _NK_MIDS)
    ms = [m for m in range(96, 513, 32) if m not in _m_values(1, 16384)] + [576, 640, 704, 832, 896, 960]
    return [Point(op="gemm", dtype=dt, shape={"m": m, "n": n, "k": k}) for dt in dtypes for n in nk for k in nk
            for m in ms if 2.0 * m * n * k <= 4e12]


def _fp8fix(cfg: ModelConfig, dtypes: tuple[str, ...]) -> list[Point]:
    """The FP8 shapes whose M % 4 != 0 failed in the first H200 run (now padded)."""
    return [p for p in points(cfg, "full", ("fp8",)) if p.op in ("gemm", "grouped_gemm", "shared_expert")
            and (p.shape.get("m", 4) % 4 or p.shape.get("dist") == "zipf")]


def _named_grid(cfg: ModelConfig, grid: str, dtypes: tuple[str, ...], seed: int) -> list[Point]:
    """The grids measured after the full lattice: held-out and scatter shapes, the model's own operators,
    denser N, K and M lattices, the FP8 re-measurement."""
    if grid == "heldout":
        return heldout(cfg, dtypes, seed)
    if grid in ("scatter", "heldout2"):  # same distribution, different seeds: training data vs a fresh check
        return scattered(cfg, dtypes, seed=101 if grid == "scatter" else 202, n=3500 if grid == "scatter" else 300,
                         set_name=grid)
    by_name = {"nn": lambda c, d: nn_points(c), "gqa": lambda c, d: gqa_points(), "lattice2": _lattice2,
               "lattice3": _lattice3, "fp8fix": _fp8fix}
    assert grid in by_name, grid
    return by_name[grid](cfg, dtypes)


def _gemm_points(cfg: ModelConfig, grid: str, dtypes: tuple[str, ...]) -> list[Point]:
    """The M x N x K lattice (FLOPs capped per call), then the model's own GEMM shapes at the lattice's M."""
    small = grid in ("small", "quick")
    cap = 1.2e10 if small else 4e12  # max FLOPs of one GEMM call
    nk = [256, 1024, 4096] if small else [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    ms = _m_values(1, 512) if small else _m_values(1, 16384)
    if grid == "quick":
        nk, ms = [256, 512], [1, 16, 64]
    gm = model_gemms(cfg)
    pts: list[Point] = []
    for dt in dtypes:
        pts += [Point(op="gemm", dtype=dt, shape={"m": m, "n": n, "k": k})
                for n in nk for k in nk for m in ms if 2.0 * m * n * k <= cap]
        if grid != "quick":
            pts += [Point(op="gemm", dtype=dt, shape={"m": m, "n": n, "k": k}, role=role, set="model")
                    for role, (n, k) in gm.items() for m in (ms if not small else [1, 8, 64])
                    if 2.0 * m * n * k <= cap]
    return pts


def _grouped_points(cfg: ModelConfig, small: bool, dtypes: tuple[str, ...]) -> list[Point]:
    """Routed experts: E local experts x m tokens each, up (w13) and down (w2) GEMMs; uniform and Zipf loads."""
    inter, hid = cfg.moe_intermediate_size, cfg.hidden_size
    cap = 1.2e10 if small else 8e12
    es = [1, 4, 16] if small else [1, 2, 4, 8, 16, 32, 64, 256]
    mexp = [1, 8, 64] if small else [1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    pts: list[Point] = []
    for dt in dtypes:
        impl = "grouped" if dt == "bf16" else "loop"
        for (n, k), role in (((2 * inter, hid), "moe.w13"), ((hid, inter), "moe.w2")):
            for e in es:
                for m in mexp:
                    if 2.0 * e * m * n * k > cap or (impl == "loop" and e > 64):
                        continue
                    pts.append(Point(op="grouped_gemm", dtype=dt, role=role,
                                     shape={"e": e, "m": m, "n": n, "k": k, "dist": "uniform", "impl": impl}))
                    if dt == "bf16" and e <= 32 and not small:  # launch-per-expert reference
                        pts.append(Point(op="grouped_gemm", dtype=dt, role=role, set="model",
                                         shape={"e": e, "m": m, "n": n, "k": k, "dist": "uniform", "impl": "loop"}))
            if not small:
                pts += [Point(op="grouped_gemm", dtype=dt, role=role, set="model",
                              shape={"e": e, "m": m, "n": n, "k": k, "dist": "zipf", "impl": impl})
                        for e, m in ((8, 512), (32, 256), (32, 1024), (256, 64), (256, 256))
                        if not (impl == "loop" and e > 64)]
    return pts


def _attention_points(cfg: ModelConfig, small: bool) -> list[Point]:
    """MLA prefill (forward, forward+backward) over heads x sequence; absorbed decode over batch x context."""
    dqk, dv = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    pts = [Point(op=op, dtype="bf16", shape={"b": 1, "s": s, "h": h, "dqk": dqk, "dv": dv})
           for h in ([4] if small else [16, 32, 64, 128])
           for s in ([128, 256, 512] if small else [512, 1024, 2048, 4096, 8192, 16384])
           for op in ("attn_prefill", "attn_prefill_fwdbwd")]
    pts += [Point(op="attn_decode", dtype="bf16",
                  shape={"b": b, "t": t, "h": h, "dc": cfg.kv_lora_rank, "dr": cfg.qk_rope_head_dim})
            for h in ([4] if small else [16, 128])
            for b in ([1, 8] if small else [1, 2, 4, 8, 16, 32, 64, 128, 256])
            for t in ([128, 1024] if small else [256, 1024, 2048, 4096, 8192, 16384, 32768]) if b * t <= 2**21]
    return pts


def _vector_points(cfg: ModelConfig, small: bool, dtypes: tuple[str, ...]) -> list[Point]:
    """Per-token ops over the token counts (norms, SwiGLU, FP8 casts, RoPE, gate, embedding, shared expert)
    and AdamW over parameter counts."""
    inter, hid = cfg.moe_intermediate_size, cfg.hidden_size
    pts: list[Point] = []
    for m in ([1, 16, 256, 4096] if small else [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536]):
        pts += [Point(op="rmsnorm", dtype="bf16", shape={"m": m, "n": n})
                for n in sorted({hid, cfg.q_lora_rank or hid, cfg.kv_lora_rank})]
        pts += [Point(op="swiglu", dtype="bf16", shape={"m": m, "n": n})
                for n in sorted({inter, cfg.intermediate_size})]
        pts += [Point(op="quant_fp8", dtype="fp8", shape={"m": m, "n": n})
                for n in sorted({hid, inter, cfg.num_attention_heads * cfg.v_head_dim})]
        pts += [Point(op="rope", dtype="bf16", shape={"m": m, "h": h, "d": cfg.qk_rope_head_dim})
                for h in sorted({1, cfg.num_attention_heads})]
        pts.append(Point(op="gate", dtype="bf16", shape={"m": m, "n": cfg.n_routed_experts, "k": hid,
                                                          "n_group": cfg.n_group, "topk_group": cfg.topk_group,
                                                          "top_k": cfg.num_experts_per_tok}))
        pts.append(Point(op="embedding", dtype="bf16", shape={"m": m, "n": hid, "k": cfg.vocab_size}))
        if m <= (256 if small else 16384):
            pts += [Point(op="shared_expert", dtype=dt, shape={"m": m, "n": inter, "k": hid}) for dt in dtypes]
    pts += [Point(op="adamw", dtype="fp32", shape={"n": n})
            for n in ([2**16, 2**20] if small else [2**16, 2**18, 2**20, 2**22, 2**24, 2**26, 2**28])]
    return pts


def heldout(cfg: ModelConfig, dtypes: tuple[str, ...] = ("bf16", "fp8"), seed: int = 0, n: int = 60) -> list[Point]:
    """Random shapes off the lattice (log-uniform M in [3, 12000], N, K multiples of 128 in [384, 24000])."""
    rng = random.Random(seed)
    pts: list[Point] = []
    lattice = {256 * 2**i for i in range(8)}
    for dt in dtypes:
        for _ in range(n):
            while True:
                m = round(2 ** rng.uniform(1.6, 13.5))
                nn_, kk = (128 * round(2 ** rng.uniform(1.6, 7.5)) for _ in range(2))
                if nn_ not in lattice and kk not in lattice and 2.0 * m * nn_ * kk <= 4e12:
                    break
            pts.append(Point(op="gemm", dtype=dt, shape={"m": m, "n": nn_, "k": kk}, set="heldout"))
        for e, m in ((12, 96), (48, 24), (6, 700), (128, 40)):
            impl = "grouped" if dt == "bf16" else "loop"
            if impl == "loop" and e > 64:
                continue
            pts.append(Point(op="grouped_gemm", dtype=dt, set="heldout", role="moe.w13",
                             shape={"e": e, "m": m, "n": 2 * cfg.moe_intermediate_size, "k": cfg.hidden_size,
                                    "dist": "uniform", "impl": impl}))
    for b, t in ((3, 3000), (24, 6000), (96, 1500), (48, 12000)):
        pts.append(Point(op="attn_decode", dtype="bf16", set="heldout",
                         shape={"b": b, "t": t, "h": 128, "dc": cfg.kv_lora_rank, "dr": cfg.qk_rope_head_dim}))
    for s, h in ((3000, 128), (6000, 32), (1500, 64)):
        pts.append(Point(op="attn_prefill", dtype="bf16", set="heldout",
                         shape={"b": 1, "s": s, "h": h, "dqk": cfg.qk_nope_head_dim + cfg.qk_rope_head_dim,
                                "dv": cfg.v_head_dim}))
    for m in (100, 3000, 40000):
        pts.append(Point(op="rmsnorm", dtype="bf16", set="heldout", shape={"m": m, "n": cfg.hidden_size}))
    return pts


def scattered(cfg: ModelConfig, dtypes: tuple[str, ...], *, seed: int, n: int, set_name: str) -> list[Point]:
    """Random shapes of the sizes users ask about, off the lattice, for the predictor's residual correction
    (``set='scatter'``) or as a fresh validation set (``set='heldout2'``, never read by the predictor).

    GEMM: M log-uniform integer in [1, 16384] (token counts are arbitrary), N and K multiples of 128 log-uniform
    in [256, 32768]; grouped GEMM at the model's expert shapes with random E and tokens per expert; MLA decode
    with random batch, context and heads. FLOPs of one call capped at 4e12 (GEMM) / 8e12 (grouped).
    """
    rng = random.Random(seed)
    pts: list[Point] = []
    for dt in dtypes:
        for _ in range(n):
            while True:
                m = max(1, round(2 ** rng.uniform(0, 14)))
                nn_, kk = (128 * round(2 ** rng.uniform(1, 8)) for _ in range(2))
                if 2.0 * m * nn_ * kk <= 4e12:
                    break
            pts.append(Point(op="gemm", dtype=dt, shape={"m": m, "n": nn_, "k": kk}, set=set_name))
        for _ in range(max(8, n // 20)):
            impl = "grouped" if dt == "bf16" else "loop"
            while True:
                e = round(2 ** rng.uniform(0, 8 if impl == "grouped" else 6))
                m = max(1, round(2 ** rng.uniform(0, 12)))
                role = rng.choice(("moe.w13", "moe.w2"))
                nn_, kk = ((2 * cfg.moe_intermediate_size, cfg.hidden_size) if role == "moe.w13"
                           else (cfg.hidden_size, cfg.moe_intermediate_size))
                if 2.0 * e * m * nn_ * kk <= 8e12:
                    break
            pts.append(Point(op="grouped_gemm", dtype=dt, role=role, set=set_name,
                             shape={"e": e, "m": m, "n": nn_, "k": kk, "dist": "uniform", "impl": impl}))
    for _ in range(max(8, n // 20)):
        while True:
            b, t = round(2 ** rng.uniform(0, 8)), round(2 ** rng.uniform(7, 15))
            if b * t <= 2**21:
                break
        pts.append(Point(op="attn_decode", dtype="bf16", set=set_name,
                         shape={"b": b, "t": t, "h": rng.choice((16, 32, 64, 128)), "dc": cfg.kv_lora_rank,
                                "dr": cfg.qk_rope_head_dim}))
    return pts


def nn_points(cfg: ModelConfig) -> list[Point]:
    """The model's own operators (``nn_ops.py``) and a denser M grid (factor 2) for the memory-bound ops."""
    hid, inter, nh = cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_attention_heads
    pts: list[Point] = []
    ms = [2**i for i in range(17)]
    for m in ms:
        for n in sorted({hid, cfg.q_lora_rank or hid, cfg.kv_lora_rank}):
            pts.append(Point(op="nn_rmsnorm", dtype="bf16", shape={"m": m, "n": n}))
            pts.append(Point(op="rmsnorm", dtype="bf16", shape={"m": m, "n": n}))
        for h in sorted({1, nh}):
            pts.append(Point(op="nn_rope", dtype="bf16", shape={"m": m, "h": h, "d": cfg.qk_rope_head_dim}))
            pts.append(Point(op="rope", dtype="bf16", shape={"m": m, "h": h, "d": cfg.qk_rope_head_dim}))
        pts.append(Point(op="nn_gate", dtype="bf16", shape={"m": m, "n": cfg.n_routed_experts, "k": hid}))
        pts.append(Point(op="embedding", dtype="bf16", shape={"m": m, "n": hid, "k": cfg.vocab_size}))
        for n in sorted({inter, cfg.intermediate_size}):
            pts.append(Point(op="swiglu", dtype="bf16", shape={"m": m, "n": n}))
        for n in sorted({hid, inter, nh * cfg.v_head_dim}):
            pts.append(Point(op="quant_fp8", dtype="fp8", shape={"m": m, "n": n}))
        if m <= 16384:
            pts.append(Point(op="nn_shared_expert", dtype="bf16", shape={"m": m, "n": inter, "k": hid}))
    for i in range(16, 29):
        pts.append(Point(op="adamw", dtype="fp32", shape={"n": 2**i}))
    for dt in ("bf16", "fp8"):
        for e in (8, 32):
            for m in (16, 64, 256, 1024):
                pts.append(Point(op="nn_routed_experts", dtype=dt, shape={"e": e, "m": m, "n": inter, "k": hid}))
    for h in (16, nh):
        for b in (1, 8, 64):
            for t in (1024, 4096, 16384):
                pts.append(Point(op="nn_attn_decode", dtype="bf16", shape={"b": b, "t": t, "h": h}))
        for s in (512, 1024, 2048, 4096):
            pts.append(Point(op="nn_attn_prefill", dtype="bf16", shape={"b": 1, "s": s, "h": h}))
    return pts


# GQA attention of the committed GQA-MoE models: (query heads, KV heads, head_dim) of Qwen3-235B-A22B (64, 4, 128),
# Qwen3-30B-A3B and Mixtral-8x7B (32, 4|8, 128), gpt-oss-120b (64, 8, 64), Qwen1.5-MoE (16, 16, 128)
GQA_HEADS = ((4, 128), (8, 128), (8, 64), (16, 128))


def gqa_points() -> list[Point]:
    """Causal prefill (forward and forward+backward) at head widths 128 and 64 (K and V per query head: the
    FLOPs of a GQA kernel), and GQA decode over (KV heads, head_dim) x query heads x batch x context."""
    pts: list[Point] = []
    for kvh, d in GQA_HEADS:
        for h in (16, 32, 64, 128):
            if h % kvh:
                continue
            for b in (1, 4, 16, 64, 256):
                for t in (512, 2048, 8192, 32768, 131072):
                    if b * t <= 2**21:
                        pts.append(Point(op="attn_decode_gqa", dtype="bf16", set="lattice",
                                         shape={"b": b, "t": t, "h": h, "kvh": kvh, "d": d}))
    for d in (128, 64):
        for h in (16, 32, 64, 128):
            for s in (512, 1024, 2048, 4096, 8192, 16384):
                for op in ("attn_prefill", "attn_prefill_fwdbwd"):
                    pts.append(Point(op=op, dtype="bf16", shape={"b": 1, "s": s, "h": h, "dqk": d, "dv": d}))
    return pts
