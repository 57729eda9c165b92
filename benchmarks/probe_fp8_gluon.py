"""Grouped block-scaled FP8 GEMMs on the H200: the Triton kernels (nn/fp8_triton.py) against the Gluon kernels
(nn/fp8_gluon.py, promotion overlapped with the next block's MMA) and their variants, per kernel of the routed
experts' forward+backward, at DeepSeek-V3's shapes (H 7168, I 2048): EP32's 8 local experts and the one-layer
model's 256 experts, --tokens x top-8 rows.

Usage (GPU machine, repository root):
    python benchmarks/probe_fp8_gluon.py --out profiles/h200/fp8_gluon_probe.json

Each time: CUDA events around each call, 3 warm-ups, median of --reps, calls back to back. rel_diff: ||out - ref||
/ ||ref|| against the Triton kernel's output on the same operands (both FP32 promotion per 128-K block; they
differ in BF16 rounding and the order of the in-block tensor-core sums). "ov0" (each block's MMA awaited before its
promotion, the Triton schedule) is an ablation of the overlap; "bm64_w4" 64-row tiles on one warpgroup.
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

from bench_fp8_layer import routing_counts, timed  # noqa: E402

from dsv3sim.config.model import load_model_config  # noqa: E402
from dsv3sim.nn import fp8_experts as X  # noqa: E402

GEMM_VARIANTS = {"gluon_s4": {}, "gluon_bm64_w4_s4": {"BM": 64, "num_warps": 4},
                 "gluon_ov0": {"overlap": False}}
WGRAD_VARIANTS = {"gluon_s4": {}, "gluon_ov0": {"overlap": False}}


def operands(case: str, a, cfg):
    from dsv3sim.nn import fp8_triton as K

    dev, bf = "cuda", torch.bfloat16
    H, I, k = cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts_per_tok
    E = 8 if case == "ep32" else cfg.n_routed_experts
    counts = routing_counts(case, a.tokens, E, k, H, dev)
    rows = int(counts.sum())
    lay = X.layout_from_counts(counts, rows)
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(rows, H, device=dev, dtype=bf, generator=g)
    w13 = torch.randn(E, 2 * I, H, device=dev, dtype=bf, generator=g) * 0.02
    wd = torch.randn(E, H, I, device=dev, dtype=bf, generator=g) * 0.02
    dy = torch.randn(rows, H, device=dev, dtype=bf, generator=g)
    K.BACKEND = "triton"
    o13 = K.weight_quant([w13])
    od = K.weight_quant([wd])
    del w13, wd
    xq, xs, xqt, xst = K.quant(x, src=lay.src, rows_out=lay.rows, colwise=True)
    gu = K.grouped_gemm(xq, xs, o13[0], o13[1], lay.tile_expert)
    hq, hs, hqt, hst = K.swiglu_quant(gu)
    dyq, dys, dyqt, dyst = K.quant(dy, src=lay.src, rows_out=lay.rows, colwise=True)
    dh = K.grouped_gemm(dyq, dys, od[2], od[3], lay.tile_expert)
    gq, gs, gqt, gst = K.swiglu_bwd_quant(gu, dh)
    f1 = 2 * rows * H * I
    te, ts, nt = lay.tile_expert, lay.tile_start, lay.n_tiles
    gemms = {"fprop_gate_up": ((xq, xs, o13[0], o13[1], te), 2 * f1),
             "fprop_down": ((hq, hs, od[0], od[1], te), f1),
             "dgrad_down": ((dyq, dys, od[2], od[3], te), f1),
             "dgrad_gate_up": ((gq, gs, o13[2], o13[3], te), 2 * f1)}
    wgrads = {"wgrad_down": ((dyqt, dyst, hqt, hst, ts, nt, H), f1),
              "wgrad_gate": ((gqt, gst, xqt, xst, ts, nt, I, 0), f1),
              "wgrad_up": ((gqt, gst, xqt, xst, ts, nt, I, I), f1)}
    return ({"experts": E, "rows": rows, "padded_rows": lay.rows, "counts": counts}, gemms, wgrads,
            (xq, lay, H, I, E, dev))


def rel(o: torch.Tensor, ref: torch.Tensor) -> float:
    o, ref = o.float(), ref.float()
    if not torch.isfinite(o).all():
        return float("nan")
    return float((o - ref).norm() / ref.norm())


def _kernel_variants(K, G, name: str, args: tuple, fl: float, reps: int, tot: dict) -> dict:
    """One kernel: the Triton kernel (the reference output) and each Gluon variant's time, TFLOP/s, difference
    from the reference and registers/spills/shared memory (a variant that fails records its error); adds the
    Triton and the default Gluon time to ``tot`` (K: nn/fp8_triton.py, G: nn/fp8_gluon.py)."""
    is_w = name.startswith("wgrad")
    tk = K.grouped_wgrad if is_w else K.grouped_gemm
    gk = G.grouped_wgrad if is_w else G.grouped_gemm
    K.BACKEND = "triton"
    ref = tk(*args)
    t = timed(lambda: tk(*args), reps)
    r = {"triton_ms": t * 1e3, "triton_tflops": fl / t / 1e12}
    tot["triton"] += t * 1e3
    for vname, vcfg in (WGRAD_VARIANTS if is_w else GEMM_VARIANTS).items():
        try:
            o = gk(*args, cfg=vcfg)
            d = rel(o, ref)
            del o
            t = timed(lambda vcfg=vcfg: gk(*args, cfg=vcfg), reps)
            kern = G.LAST["wgrad" if is_w else "gemm"]
            r[vname] = {"ms": t * 1e3, "tflops": fl / t / 1e12, "rel_diff": d,
                        "regs_spills_smem": [kern.n_regs, kern.n_spills, kern.metadata.shared]}
            if vname == "gluon_s4":
                tot["gluon"] += t * 1e3
        except Exception as e:  # noqa: BLE001 - a variant that fails is a result
            r[vname] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            traceback.print_exc(limit=3)
    return r


def _bf16_experts(counts, H: int, I: int, E: int, dev, reps: int, tot: dict) -> dict:
    """The reference of the target: the BF16 routed experts forward+backward (torch._grouped_mm under autograd,
    rows unpadded), as benchmarks/bench_fp8_layer.py's bf16_grouped; and the FP8 kernels' speed-up over it."""
    out: dict = {}
    try:
        from dsv3sim.nn.moe import routed_experts

        rows = int(counts.sum())
        xr = torch.randn(rows, H, device=dev, dtype=torch.bfloat16).requires_grad_()
        wr = [(torch.randn(E, I, H, device=dev, dtype=torch.bfloat16) * 0.02).requires_grad_(),
              (torch.randn(E, I, H, device=dev, dtype=torch.bfloat16) * 0.02).requires_grad_(),
              (torch.randn(E, H, I, device=dev, dtype=torch.bfloat16) * 0.02).requires_grad_()]
        dyr = torch.randn(rows, H, device=dev, dtype=torch.bfloat16)

        def bf16_step():
            routed_experts(xr, counts, *wr, fp8=False).backward(dyr)
            xr.grad = None
            for w in wr:
                w.grad = None

        out["bf16_grouped_fwd_bwd_ms"] = timed(bf16_step, reps) * 1e3
        out["fp8_gemms_over_bf16"] = {k: out["bf16_grouped_fwd_bwd_ms"] / v for k, v in tot.items()}
    except Exception as e:  # noqa: BLE001
        out["bf16_grouped_fwd_bwd_ms"] = f"{type(e).__name__}: {e}"
    return out


def _bf16_gate_up_ceiling(lay, H: int, I: int, E: int, dev, reps: int, fl: float) -> float | str:
    """Ceiling on the Fprop gate+up shape: BF16 torch._grouped_mm over the same padded layout (TFLOP/s)."""
    try:
        offs = (lay.n_tiles.cumsum(0) * 128).to(torch.int32)
        xb = torch.randn(lay.rows, H, device=dev, dtype=torch.bfloat16)
        wb = torch.randn(E, 2 * I, H, device=dev, dtype=torch.bfloat16) * 0.02
        t = timed(lambda: torch._grouped_mm(xb, wb.transpose(-2, -1), offs=offs), reps)
        return fl / t / 1e12
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def probe_case(case: str, a, cfg, res: dict) -> None:
    from dsv3sim.nn import fp8_gluon as G
    from dsv3sim.nn import fp8_triton as K

    meta, gemms, wgrads, (xq, lay, H, I, E, dev) = operands(case, a, cfg)
    out: dict = {k: v for k, v in meta.items() if k != "counts"}
    tot = {"triton": 0.0, "gluon": 0.0}
    for name, (args, fl) in {**gemms, **wgrads}.items():
        r = _kernel_variants(K, G, name, args, fl, a.reps, tot)
        out[name] = r
        print(case, name, json.dumps(r)[:400], flush=True)
    out["total_ms"] = tot
    out.update(_bf16_experts(meta["counts"], H, I, E, dev, a.reps, tot))
    out["ref_bf16_grouped_mm_fprop_gate_up_tflops"] = _bf16_gate_up_ceiling(lay, H, I, E, dev, a.reps,
                                                                            gemms["fprop_gate_up"][1])
    res[case] = out
    torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cases", default="ep32,one_layer")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = load_model_config("one-layer")
    import triton

    res: dict = {"command": " ".join(sys.argv), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "triton": triton.__version__, "tokens": a.tokens}
    for case in a.cases.split(","):
        try:
            probe_case(case, a, cfg, res)
        except Exception:  # noqa: BLE001
            res[f"error_{case}"] = traceback.format_exc(limit=6)
            print(res[f"error_{case}"], flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
    for case in a.cases.split(","):
        r = res.get(case, {})
        for name, v in r.items():
            if isinstance(v, dict) and "triton_tflops" in v:
                cells = [f"triton {v['triton_tflops']:.0f}"]
                for vn, vv in v.items():
                    if isinstance(vv, dict):
                        cells.append(f"{vn} {vv['tflops']:.0f} ({vv['rel_diff']:.1e})")
                    elif vn.startswith("gluon"):
                        cells.append(f"{vn} FAIL")
                print(f"{case:9s} {name:14s} " + " | ".join(cells))
        if "total_ms" in r:
            print(case, "7 GEMMs ms", r["total_ms"], "BF16 experts fwd+bwd ms", r.get("bf16_grouped_fwd_bwd_ms"),
                  "ratio", r.get("fp8_gemms_over_bf16"), "bf16 fprop_gate_up TFLOP/s",
                  r.get("ref_bf16_grouped_mm_fprop_gate_up_tflops"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
