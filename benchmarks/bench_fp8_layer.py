"""FP8 vs BF16 routed experts and the whole DeepSeek-V3 layer on one GPU (H200), forward+backward.

Usage (GPU machine, repository root):
    python benchmarks/bench_fp8_layer.py --out profiles/h200/fp8_layer_bench.json [--parts sweep,experts,layer]

Measured, each eager and replayed from a CUDA graph (CUDA events, warm-up, median; the timed calls run back to
back as a step runs them, so the card is at its sustained, power-capped clock):
* sweep: tile configurations of the grouped FP8 GEMM / Wgrad kernels on the one-layer forward shape.
* experts_<case>: the routed experts' 3 GEMMs forward + 6 backward.
  - bf16_grouped: nn.moe.routed_experts in BF16 (torch._grouped_mm, autograd), rows unpadded;
  - fp8_gemms: the 7 grouped FP8 kernel launches alone (2 Fprop, 2 Dgrad, 3 Wgrad; gate+up as one GEMM) on
    operands quantised beforehand: the "expert GEMM" comparison;
  - fp8_experts: nn.fp8_experts forward+backward (quantisation kernels, SwiGLU, dx combine included).
  Cases: one_layer (256 experts on the GPU, the one-layer model's routing of --tokens tokens) and ep32 (8 local
  experts receiving --tokens x top-8 rows, as a rank of EP32 holds at --tokens tokens per GPU).
  FLOPs = 3 GEMMs x 2 rows H I forward, x3 forward+backward, on the routed (unpadded) rows.
* layer: the one-layer model's Block (MLA + gate + routed + shared experts) forward+backward, BF16 vs FP8
  (weights' FP8 copies cached, as a micro-batch after the first of a step; ``_requant``: re-quantised each step).
MFU = FLOP/s over the dense peak of the dtype (config/hardware H200: 989 BF16, 1979 FP8 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_layer import timed

from dsv3sim.config.model import load_model_config
from dsv3sim.nn import fp8 as F8
from dsv3sim.nn import fp8_experts as X

PEAK = {"bf16": 989.4e12, "fp8": 1978.9e12}


def both(fn, reps: int, flops: float, peak: float) -> dict:
    out = {}
    for mode in ("eager", "graph"):
        try:
            t = timed(fn, reps, graph=mode == "graph")
            out[f"{mode}_ms"] = t * 1e3
            out[f"{mode}_tflops"] = flops / t / 1e12
            out[f"{mode}_mfu"] = flops / t / peak
        except Exception as e:  # noqa: BLE001 - a capture that fails is a result
            out[f"{mode}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return out


def routing_counts(case: str, T: int, E: int, k: int, H: int, dev: str) -> torch.Tensor:
    """Tokens per local expert: one_layer from the DeepSeek gate on random hidden states; ep32 8 experts
    sharing T*k rows (a multinomial draw: balanced in expectation)."""
    g = torch.Generator(device=dev).manual_seed(0)
    if case == "ep32":
        pick = torch.randint(0, 8, (T * k,), device=dev, generator=g)
        return torch.bincount(pick, minlength=8)
    from dsv3sim.nn.moe import expert_counts
    from dsv3sim.nn.routing import gate_topk

    cfg = load_model_config("one-layer")
    x = torch.randn(T, H, device=dev, dtype=torch.bfloat16, generator=g)
    w = torch.randn(E, H, device=dev, generator=g) * 0.02
    ids, _ = gate_topk(x, w, torch.zeros(E, device=dev), cfg)
    return expert_counts(ids, E)


def _expert_inputs(case: str, a, cfg) -> tuple:
    """Routing counts of the case, the header of its result, and the experts' BF16 input, weights and output
    gradient (seeded)."""
    dev, bf = "cuda", torch.bfloat16
    H, I, k = cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts_per_tok
    E = 8 if case == "ep32" else cfg.n_routed_experts
    counts = routing_counts(case, a.tokens, E, k, H, dev)
    rows = int(counts.sum())
    flops = 3 * 3 * 2 * rows * H * I
    r: dict = {"experts": E, "rows": rows, "max_over_mean": float(counts.max() / counts.float().mean()),
               "flops": flops}
    torch.manual_seed(0)
    x = torch.randn(rows, H, device=dev, dtype=bf).requires_grad_()
    ws = [(torch.randn(E, I, H, device=dev, dtype=bf) * 0.02).requires_grad_(),
          (torch.randn(E, I, H, device=dev, dtype=bf) * 0.02).requires_grad_(),
          (torch.randn(E, H, I, device=dev, dtype=bf) * 0.02).requires_grad_()]
    dy = torch.randn(rows, H, device=dev, dtype=bf)
    return counts, rows, flops, r, x, ws, dy


def _fp8_kernels(x, ws, dy, counts, rows: int, H: int, I: int, reps: int, flops: float) -> dict:
    """The FP8 GEMMs alone on operands quantised beforehand (``fp8_gemms``), and each kernel alone
    (``kernels_ms``, with TFLOP/s for the GEMMs)."""
    from dsv3sim.nn import fp8_triton as K

    r: dict = {}
    lay = X.layout_from_counts(counts, rows)
    ops = X.expert_operands(*ws)
    with torch.no_grad():
        xq, xs, xqt, xst = K.quant(x, src=lay.src, rows_out=lay.rows, colwise=True)
        gu = K.grouped_gemm(xq, xs, ops.w13[0], ops.w13[1], lay.tile_expert)
        hq, hs, hqt, hst = K.swiglu_quant(gu)
        dyq, dys, dyqt, dyst = K.quant(dy, src=lay.src, rows_out=lay.rows, colwise=True)
        dh = K.grouped_gemm(dyq, dys, ops.wd[2], ops.wd[3], lay.tile_expert)
        gq, gs, gqt, gst = K.swiglu_bwd_quant(gu, dh)

    def gemms():
        K.grouped_gemm(xq, xs, ops.w13[0], ops.w13[1], lay.tile_expert)
        K.grouped_gemm(hq, hs, ops.wd[0], ops.wd[1], lay.tile_expert)
        K.grouped_wgrad(dyqt, dyst, hqt, hst, lay.tile_start, lay.n_tiles, H)
        K.grouped_gemm(dyq, dys, ops.wd[2], ops.wd[3], lay.tile_expert)
        K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, 0)
        K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, I)
        K.grouped_gemm(gq, gs, ops.w13[2], ops.w13[3], lay.tile_expert)

    with torch.no_grad():
        r["fp8_gemms"] = both(gemms, reps, flops, PEAK["fp8"])
        parts = {"fprop_gate_up": lambda: K.grouped_gemm(xq, xs, ops.w13[0], ops.w13[1], lay.tile_expert),
                 "fprop_down": lambda: K.grouped_gemm(hq, hs, ops.wd[0], ops.wd[1], lay.tile_expert),
                 "dgrad_down": lambda: K.grouped_gemm(dyq, dys, ops.wd[2], ops.wd[3], lay.tile_expert),
                 "dgrad_gate_up": lambda: K.grouped_gemm(gq, gs, ops.w13[2], ops.w13[3], lay.tile_expert),
                 "wgrad_down": lambda: K.grouped_wgrad(dyqt, dyst, hqt, hst, lay.tile_start, lay.n_tiles, H),
                 "wgrad_gate": lambda: K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, 0),
                 "quant_x_dual": lambda: K.quant(x, src=lay.src, rows_out=lay.rows, colwise=True),
                 "swiglu_quant": lambda: K.swiglu_quant(gu),
                 "swiglu_bwd_quant": lambda: K.swiglu_bwd_quant(gu, dh),
                 "weight_quant_w13": lambda: K.weight_quant([ws[0].detach(), ws[1].detach()])}
        r["kernels_ms"] = _kernel_times(parts, 2 * rows * H * I, reps)
    return r


def _kernel_times(parts: dict, f1: float, reps: int) -> dict:
    """ms of each kernel alone, and TFLOP/s of the GEMMs (f1 = one [rows, H] x [H, I] GEMM's FLOPs)."""
    fl = {"fprop_gate_up": 2 * f1, "fprop_down": f1, "dgrad_down": f1, "dgrad_gate_up": 2 * f1,
          "wgrad_down": f1, "wgrad_gate": f1}
    out = {}
    for name, fn in parts.items():
        t = timed(fn, reps)
        out[name] = t * 1e3
        if name in fl:
            out[name + "_tflops"] = fl[name] / t / 1e12
    return out


def _speedups(r: dict) -> None:
    """BF16 time over the FP8 GEMMs' and over the FP8 experts' time, eager and graph, where both ran."""
    for m in ("eager", "graph"):
        b = r["bf16_grouped"].get(f"{m}_ms")
        if b:
            if f"{m}_ms" in r["fp8_gemms"]:
                r[f"fp8_gemms_over_bf16_{m}"] = b / r["fp8_gemms"][f"{m}_ms"]
            if f"{m}_ms" in r["fp8_experts"]:
                r[f"fp8_experts_over_bf16_{m}"] = b / r["fp8_experts"][f"{m}_ms"]


def bench_experts(case: str, a, cfg, res: dict) -> None:
    from dsv3sim.nn.moe import routed_experts

    H, I = cfg.hidden_size, cfg.moe_intermediate_size
    counts, rows, flops, r, x, ws, dy = _expert_inputs(case, a, cfg)

    def step(fp8):
        def f():
            y = routed_experts(x, counts, *ws, fp8=fp8)
            y.backward(dy)
            x.grad = None
            for w in ws:
                w.grad = None
        return f

    r["bf16_grouped"] = both(step(False), a.reps, flops, PEAK["bf16"])
    r.update(_fp8_kernels(x, ws, dy, counts, rows, H, I, a.reps, flops))
    r["fp8_experts"] = both(step(True), a.reps, flops, PEAK["fp8"])
    _speedups(r)
    F8.clear_weight_cache()
    res[f"experts_{case}"] = r


def _sweep_gemm(K, xq, xs, q, s, lay, f1: float, reps: int) -> dict:
    """TFLOP/s, error against the default tile configuration and registers/spills/shared memory of each grouped
    GEMM tile configuration (a configuration that fails records its error)."""
    out = {}
    gemm_cfgs = {"BM64_BN128_w4_s3": {}, "BM64_BN128_w4_s3_r128": {"maxnreg": 128},
                 "BM64_BN128_w4_s2": {"num_stages": 2}, "BM64_BN64_w4_s3": {"BN": 64},
                 "BM64_BN64_w4_s4": {"BN": 64, "num_stages": 4}, "BM64_BN128_w4_s3_g4": {"GROUP_M": 4},
                 "BM64_BN128_w4_s3_g16": {"GROUP_M": 16}, "BM128_BN128_w8_s3": {"BM": 128, "num_warps": 8},
                 "unscaled_BM64_BN128_w4_s3": {"scaled": False}}
    ref_out = K.grouped_gemm(xq, xs, q, s, lay.tile_expert).float()
    for name, c in gemm_cfgs.items():
        try:
            t = timed(lambda c=c: K.grouped_gemm(xq, xs, q, s, lay.tile_expert, cfg=c), reps)
            out[f"gemm_{name}"] = f1 / t / 1e12
            o = K.grouped_gemm(xq, xs, q, s, lay.tile_expert, cfg=c).float()
            out[f"gemm_{name}_rel_diff"] = float((o - ref_out).norm() / ref_out.norm())
            kern = K.LAST["gemm"]
            out[f"gemm_{name}_regs_spills_smem"] = [kern.n_regs, kern.n_spills, kern.metadata.shared]
        except Exception as e:  # noqa: BLE001
            out[f"gemm_{name}"] = f"{type(e).__name__}: {str(e)[:160]}"
    return out


def _sweep_refs(cfg, xq, q, lay, f1: float, reps: int) -> dict:
    """References: BF16 grouped (torch._grouped_mm) and row-wise-scaled FP8 grouped (torch._scaled_grouped_mm)."""
    dev = "cuda"
    H, I = cfg.hidden_size, cfg.moe_intermediate_size
    out = {}
    offs = (lay.n_tiles.cumsum(0) * 128).to(torch.int32)
    xb = torch.randn(lay.rows, H, device=dev, dtype=torch.bfloat16)
    wb = torch.randn(cfg.n_routed_experts, 2 * I, H, device=dev, dtype=torch.bfloat16) * 0.02
    t = timed(lambda: torch._grouped_mm(xb, wb.transpose(-2, -1), offs=offs), reps)
    out["ref_bf16_grouped_mm"] = f1 / t / 1e12
    try:
        sa_r = torch.ones(lay.rows, device=dev)
        sb_r = torch.ones(cfg.n_routed_experts, 2 * I, device=dev)
        t = timed(lambda: torch._scaled_grouped_mm(xq, q.transpose(-2, -1), sa_r, sb_r, offs=offs,
                                                   out_dtype=torch.bfloat16), reps)
        out["ref_fp8_scaled_grouped_mm_rowwise"] = f1 / t / 1e12
    except Exception as e:  # noqa: BLE001
        out["ref_fp8_scaled_grouped_mm_rowwise"] = f"{type(e).__name__}: {str(e)[:160]}"
    return out


def _sweep_wgrad(K, gqt, gst, xqt, xst, lay, I: int, f2: float, reps: int) -> dict:
    """TFLOP/s and registers/spills/shared memory of each grouped Wgrad tile configuration."""
    out = {}
    wg_cfgs = {"BM64_BN128_w4_s3": {}, "BM64_BN128_w4_s3_r128": {"maxnreg": 128},
               "BM64_BN128_w4_s4": {"num_stages": 4}, "BM64_BN64_w4_s3": {"BN": 64},
               "BM128_BN128_w8_s3": {"BM": 128, "num_warps": 8}}
    for name, c in wg_cfgs.items():
        try:
            t = timed(lambda c=c: K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, 0, cfg=c),
                      reps)
            out[f"wgrad_{name}"] = f2 / t / 1e12
            kern = K.LAST["wgrad"]
            out[f"wgrad_{name}_regs_spills_smem"] = [kern.n_regs, kern.n_spills, kern.metadata.shared]
        except Exception as e:  # noqa: BLE001
            out[f"wgrad_{name}"] = f"{type(e).__name__}: {str(e)[:160]}"
    return out


def sweep(a, cfg, res: dict) -> None:
    """Tile configurations of the grouped kernels on the one-layer shapes (Fprop gate+up, Wgrad gate)."""
    from dsv3sim.nn import fp8_triton as K

    dev = "cuda"
    H, I = cfg.hidden_size, cfg.moe_intermediate_size
    counts = routing_counts("one_layer", a.tokens, cfg.n_routed_experts, cfg.num_experts_per_tok, H, dev)
    rows = int(counts.sum())
    lay = X.layout_from_counts(counts, rows)
    x = torch.randn(rows, H, device=dev, dtype=torch.bfloat16)
    w = torch.randn(cfg.n_routed_experts, 2 * I, H, device=dev, dtype=torch.bfloat16) * 0.02
    xq, xs, xqt, xst = K.quant(x, src=lay.src, rows_out=lay.rows, colwise=True)
    q, s, _, _ = K.weight_quant([w])
    del w
    g = torch.randn(rows, 2 * I, device=dev, dtype=torch.bfloat16)
    _, _, gqt, gst = K.quant(g, src=lay.src, rows_out=lay.rows, rowwise=False, colwise=True)
    f1 = 2 * rows * H * 2 * I
    out = _sweep_gemm(K, xq, xs, q, s, lay, f1, a.reps)
    out.update(_sweep_refs(cfg, xq, q, lay, f1, a.reps))
    out.update(_sweep_wgrad(K, gqt, gst, xqt, xst, lay, I, 2 * rows * I * H, a.reps))
    res["sweep_tflops"] = out


def bench_layer(a, cfg, res: dict) -> None:
    from gpu_layer import batch_shape, layer_forward_flops, one_layer, set_fp8

    cfg = cfg if cfg.is_moe_layer(0) else cfg.with_(first_k_dense_replace=0)
    B, S = batch_shape(a.tokens, a.seq_len)
    lc = one_layer(cfg, B, S)
    blk, cos, sin, h, gy = lc.blk, lc.cos, lc.sin, lc.h, lc.gy
    flops = 3 * layer_forward_flops(cfg, B, S)
    lay: dict = {"tokens": B * S, "batch": B, "seq_len": S, "flops": flops}
    for name, fp8, requant in (("bf16", False, False), ("fp8", True, False), ("fp8_requant", True, True)):
        set_fp8(blk, fp8)

        def step(requant=requant):
            if requant:  # the one FP8 weight cache (experts and linears alike)
                F8.clear_weight_cache()
            blk(h, cos, sin).backward(gy)
            if not torch.cuda.is_current_stream_capturing():
                blk.zero_grad(set_to_none=True)
                h.grad = None

        lay[name] = both(step, max(3, a.reps // 2), flops, PEAK["fp8" if fp8 else "bf16"])
        blk.zero_grad(set_to_none=True)
        h.grad = None
        F8.clear_weight_cache()
        torch.cuda.empty_cache()
    for m in ("eager", "graph"):
        b = lay["bf16"].get(f"{m}_ms")
        for v in ("fp8", "fp8_requant"):
            if b and f"{m}_ms" in lay[v]:
                lay[f"{v}_over_bf16_{m}"] = b / lay[v][f"{m}_ms"]
    res["layer_one_layer"] = lay


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="one-layer")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--parts", default="sweep,experts,layer")
    ap.add_argument("--cases", default="one_layer,ep32")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = load_model_config(a.config)
    res: dict = {"command": " ".join(sys.argv), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "config": cfg.name, "tokens": a.tokens, "peak_flops": PEAK, "errors": {}}
    try:
        import triton

        res["triton"] = triton.__version__
    except ImportError:
        pass
    parts = a.parts.split(",")
    jobs = []
    if "sweep" in parts:
        jobs.append(("sweep", lambda: sweep(a, cfg, res)))
    if "experts" in parts:
        jobs += [(f"experts_{c}", lambda c=c: bench_experts(c, a, cfg, res)) for c in a.cases.split(",")]
    if "layer" in parts:
        jobs.append(("layer", lambda: bench_layer(a, cfg, res)))
    for name, job in jobs:
        try:
            job()
        except Exception:  # noqa: BLE001
            res["errors"][name] = traceback.format_exc(limit=5)
        torch.cuda.empty_cache()
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"[{name}] done", flush=True)
    print(json.dumps({k: v for k, v in res.items() if k != "errors"}, indent=1))
    for k_, v in res["errors"].items():
        print(f"ERROR {k_}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
