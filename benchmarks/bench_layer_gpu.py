"""One full-width DeepSeek-V3 layer (model/one-layer.json: MLA + MoE with 256 experts, top-8) forward+backward
on one GPU, BF16 vs FP8, timed with CUDA events after warm-up. Not a test: prints and writes JSON.

Usage (on the H200 machine, repository root):
    python benchmarks/bench_layer_gpu.py --out reports/bench_layer_gpu.json [--tokens 16384] [--reps 10]
CPU smoke run of the script's logic (tiny shapes, no timing meaning):
    python benchmarks/bench_layer_gpu.py --config tiny --device cpu --tokens 256 --reps 1 --out /tmp/b.json

Measured:
* moe_gemm_bf16: routed-expert SwiGLU forward+backward through torch._grouped_mm (dsv3sim.nn.moe.routed_experts),
  rows grouped by expert with the counts a gate gives, each padded to a multiple of 128 (DeepGEMM layout);
  FLOPs = 3 GEMMs x 2 N H I forward (N padded rows), 2x that backward.
* moe_gemm_{fp8,bf16_loop}_{9,6}: the routed experts' GEMMs one call per expert (Fprop, Dgrad, Wgrad of gate,
  up and down: 9 per expert; or gate and up as one [2I, H] operand: 6), FP8 on operands quantised and laid out
  beforehand (raw block-scaled torch._scaled_mm, 1x128 x 128x128, Wgrad 1x128 x 1x128) vs BF16 matmuls of the
  same shapes: ``ms`` eager (host launch cost included, as the eager model pays it), ``graph_ms`` the same
  calls replayed from one CUDA graph (the GPU's own time, as profiles/h200/kernels.csv measures kernels),
  ``host_ms`` the host time to enqueue them. FLOPs as moe_gemm_bf16.
* probe_m512_n4096_k7168: one FP8 GEMM the profiler's way vs the nn path (fp8_gemm; fp8_linear with the
  activation quantised per call) vs BF16 torch.mm: per-call graph / eager / host microseconds.
* layer_bf16 / layer_fp8 / layer_fp8_requant: the whole Block (MLA + gate + experts + shared expert)
  forward+backward; FP8 = the model's FP8 path (eager, unfused quantisation kernels, per-expert FP8 GEMMs with
  gate+up fused: no fused kernels like DeepGEMM). layer_fp8 finds the quantised weights cached (a micro-batch
  after the first of an optimizer step); layer_fp8_requant re-quantises every weight each step (one step per
  optimizer update). ``fp8_gemm_fallbacks``: GEMMs that left the FP8 path (dequantised BF16).
MFU = achieved FLOP/s / dense peak of the dtype (dsv3sim.config.hardware H200: 989 BF16, 1979 FP8 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.nn import fp8 as F8
from dsv3sim.nn.moe import permute, routed_experts
from dsv3sim.profile.timing import time_cuda, time_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_layer import batch_shape, layer_forward_flops, moe_config, one_layer, set_fp8  # noqa: E402


def timer(fn, reps: int, warmup: int, device: str) -> float:
    """Median seconds per eager call (``dsv3sim.profile.timing``: CUDA events, warm-up, median of ``reps``)."""
    for _ in range(max(0, warmup - 1)):  # time_fn warms once itself
        fn()
    return time_fn(lambda: fn(), [()], device, graph=False, reps=reps).time_s


def peaks(device: str) -> dict[str, float]:
    try:
        from dsv3sim.config.hardware import get_gpu

        g = get_gpu("H200")
        return {"bf16": g.peak("bf16"), "fp8": g.peak("fp8")}
    except Exception:  # noqa: BLE001
        return {"bf16": 989e12, "fp8": 1979e12}


def graph_timer(fn, reps: int) -> float:
    """Median seconds per call of fn replayed from a CUDA graph (no host launch cost: the GPU's own time);
    ``dsv3sim.profile.timing.time_cuda``, which raises nothing and falls back to eager if capture fails."""
    t = time_cuda(lambda: fn(), [()], reps=reps, use_graph=True)
    if t.mode != "graph":
        raise RuntimeError("CUDA graph capture failed")
    return t.time_s


def host_timer(fn, n: int) -> float:
    """Host seconds per call to enqueue fn (launch + Python + dispatcher + cuBLASLt set-up), GPU not waited on."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    dt = (time.perf_counter() - t) / n
    torch.cuda.synchronize()
    return dt


def _q_act(t, cuda: bool):
    """1x128 along the last dim; GPU operand keeps zero padding (rows % 4, K % 128)."""
    return F8.quantize_1x128(t, row_align=F8.ROW_ALIGN, crop=False) if cuda else F8.quantize_1x128(t)


def _mm8(aq, sa, bq, sb, b_block, cuda: bool, dt):
    if cuda:  # the raw call, scales already in _scaled_mm's layout (sb row-major or outer-dim-major)
        return torch._scaled_mm(aq, bq.t(), sa, sb.t(), out_dtype=torch.bfloat16)
    return F8.fp8_gemm(aq, sa, bq, sb, b_block=b_block, out_dtype=dt)


def _gemm_operands(dev, dt, E, I, counts, xs, gy, wg, wu, wd) -> tuple[dict, dict]:
    """Per expert, the operands of its Fprop/Dgrad/Wgrad GEMMs, FP8 (quantised and laid out) and BF16, for the
    "9" (gate and up apart) and "6" (gate+up as one [2I, H] operand) variants."""
    sizes = counts.tolist()
    cuda = dev == "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    rnd = lambda *s_: torch.randn(*s_, device=dev, dtype=dt, generator=g)  # noqa: E731
    ops8: dict[str, list] = {"9": [], "6": []}
    ops16: dict[str, list] = {"9": [], "6": []}
    w13 = [torch.cat((wg[e].detach(), wu[e].detach())) for e in range(E)]
    s0 = 0
    with torch.no_grad():
        for e, n in enumerate(sizes):
            if n == 0:
                continue
            x_e, dy_e = xs[s0:s0 + n], gy[s0:s0 + n]
            s0 += n
            h_e, dgu_e = rnd(n, I), rnd(n, 2 * I)
            dg_e, du_e = dgu_e[:, :I], dgu_e[:, I:]
            ent = {k_: F8.weight_operands(ws) for k_, ws in
                   (("g", (wg[e],)), ("u", (wu[e],)), ("d", (wd[e],)), ("gu", (wg[e], wu[e])))}
            B = {k_: (v.q, v.s) for k_, v in ent.items()}
            BT = {k_: v.transposed() for k_, v in ent.items()}
            xq, hq, dyq = _q_act(x_e, cuda), _q_act(h_e, cuda), _q_act(dy_e, cuda)
            dgq, duq, dguq = _q_act(dg_e.contiguous(), cuda), _q_act(du_e.contiguous(), cuda), _q_act(dgu_e, cuda)
            xT, hT, dyT = _q_act(x_e.t(), cuda), _q_act(h_e.t(), cuda), _q_act(dy_e.t(), cuda)
            dgT, duT, dguT = _q_act(dg_e.t(), cuda), _q_act(du_e.t(), cuda), _q_act(dgu_e.t(), cuda)
            ops8["9"] += [(*xq, *B["g"], True), (*xq, *B["u"], True), (*hq, *B["d"], True),
                          (*dgq, *BT["g"], True), (*duq, *BT["u"], True), (*dyq, *BT["d"], True),
                          (*dyT, *hT, False), (*dgT, *xT, False), (*duT, *xT, False)]
            ops8["6"] += [(*xq, *B["gu"], True), (*hq, *B["d"], True), (*dguq, *BT["gu"], True),
                          (*dyq, *BT["d"], True), (*dyT, *hT, False), (*dguT, *xT, False)]
            wge, wue, wde = wg[e].detach(), wu[e].detach(), wd[e].detach()
            # BF16: A @ B^T with B [N, K]; Dgrad B = W^T (a transposed view), Wgrad A = dy^T, B = x^T (views)
            ops16["9"] += [(x_e, wge), (x_e, wue), (h_e, wde), (dg_e, wge.t()), (du_e, wue.t()), (dy_e, wde.t()),
                           (dy_e.t(), h_e.t()), (dg_e.t(), x_e.t()), (du_e.t(), x_e.t())]
            ops16["6"] += [(x_e, w13[e]), (h_e, wde), (dgu_e, w13[e].t()), (dy_e, wde.t()),
                           (dy_e.t(), h_e.t()), (dgu_e.t(), x_e.t())]
    return ops8, ops16


def _time_variant(a, dev, dt, pk, variant: str, ops8: dict, ops16: dict, f_moe: float, out: dict) -> None:
    """One variant's FP8 and BF16 loops timed (eager; on CUDA also graph and host), and FP8's speed-up."""
    cuda = dev == "cuda"

    def run8(v=variant):  # results dropped at once, so the allocator reuses the output memory
        for op in ops8[v]:
            _mm8(*op, cuda, dt)

    def run16(v=variant):
        for a_, b_ in ops16[v]:
            a_ @ b_.t()

    fns = (("fp8", run8), ("bf16_loop", run16))
    for dname, fn in fns:
        name = f"moe_gemm_{dname}_{variant}"
        peak = pk["fp8" if dname == "fp8" else "bf16"]
        try:
            with torch.no_grad():
                t = timer(fn, a.reps, a.warmup, dev)
                r = {"ms": t * 1e3, "tflops": 3 * f_moe / t / 1e12, "mfu": 3 * f_moe / t / peak,
                     "gemm_calls": len(ops8[variant])}
                if cuda:
                    tg = graph_timer(fn, a.reps)
                    r.update(graph_ms=tg * 1e3, graph_tflops=3 * f_moe / tg / 1e12, graph_mfu=3 * f_moe / tg / peak,
                             host_ms=host_timer(fn, 1) * 1e3)
            out[name] = r
        except Exception:  # noqa: BLE001
            out["errors"][name] = traceback.format_exc(limit=3)
    f8, b16 = out.get(f"moe_gemm_fp8_{variant}"), out.get(f"moe_gemm_bf16_loop_{variant}")
    if f8 and b16:
        out[f"fp8_over_bf16_gemm_speedup_{variant}"] = b16["ms"] / f8["ms"]
        if "graph_ms" in f8 and "graph_ms" in b16:
            out[f"fp8_over_bf16_gemm_speedup_{variant}_graph"] = b16["graph_ms"] / f8["graph_ms"]


def expert_gemm_loops(a, dev, dt, pk, E, H, I, counts, xs, gy, wg, wu, wd, f_moe) -> dict:
    """The routed experts' Fprop/Dgrad/Wgrad GEMMs, one call per expert per GEMM, in FP8 (block-scaled
    _scaled_mm on operands quantised and laid out beforehand: GEMMs only) and BF16, with gate and up as two
    GEMMs ("9": 9 GEMMs per expert) or one [2I, H] GEMM ("6"), timed eagerly (launch cost included, as the
    nn model runs) and as one CUDA graph (the GPU's time alone, as profiles/h200/kernels.csv measures)."""
    out: dict = {"errors": {}}
    cuda = dev == "cuda"
    ops8, ops16 = _gemm_operands(dev, dt, E, I, counts, xs, gy, wg, wu, wd)
    for variant in ("9", "6"):
        _time_variant(a, dev, dt, pk, variant, ops8, ops16, f_moe, out)
    # the nn model's own path (quantisation included) is the layer run below; keep the old keys for readers
    if "moe_gemm_fp8_9" in out:
        out["moe_gemm_fp8"], out["moe_gemm_bf16_loop"] = out["moe_gemm_fp8_9"], out.get("moe_gemm_bf16_loop_9")
    if cuda:
        out["fp8_scaled_mm_blockwise"] = F8.gpu_blockwise_ok(torch.device(dev), True)
        out["fp8_scaled_mm_blockwise_ragged_n"] = F8.gpu_blockwise_ok(torch.device(dev), True, ragged=True)
        out["fp8_scaled_mm_wgrad_1x128x1x128"] = F8.gpu_blockwise_ok(torch.device(dev), False)
    return out


def probe_gemm(m: int, n: int, k: int, n_sets: int = 8, calls: int = 96) -> dict:
    """One FP8 GEMM shape three ways (the profiler's call, the nn model's fp8_gemm, its fp8_linear forward with
    the activation quantised each call) vs BF16 torch.mm: per-call GPU time in a CUDA graph, eager time, and
    host enqueue time. ``n_sets`` operand sets rotate so the weights are not L2-resident (as the profiler)."""
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    xs_ = [torch.randn(m, k, device=dev, generator=g, dtype=torch.bfloat16) for _ in range(n_sets)]
    ws_ = [torch.randn(n, k, device=dev, generator=g, dtype=torch.bfloat16) * 0.02 for _ in range(n_sets)]
    prof, nn_ = [], []
    for x, w in zip(xs_, ws_):
        aq, sa = F8.quantize_1x128(x)
        wq, sw = F8.quantize_128x128(w)
        prof.append((aq, wq, *F8.prepare_scales(sa, sw)))
        ent = F8.weight_operands((w,))
        nn_.append((*F8.quantize_1x128(x, row_align=F8.ROW_ALIGN, crop=False), ent.q, ent.s))
    bf = torch.bfloat16
    cases = {
        "profile_scaled_mm": lambda i: torch._scaled_mm(prof[i][0], prof[i][1].t(), prof[i][2], prof[i][3],
                                                        out_dtype=bf),
        "nn_fp8_gemm": lambda i: F8.fp8_gemm(*nn_[i], b_block=True, out_dtype=bf),
        "nn_fp8_linear_fwd": lambda i: F8.fp8_linear(xs_[i], ws_[i]),
        "bf16_mm": lambda i: torch.mm(xs_[i], ws_[i].t()),
    }
    out: dict = {}
    flops = 2 * m * n * k
    with torch.no_grad():
        for name, f in cases.items():
            def loop(f=f):
                for i in range(calls):
                    f(i % n_sets)

            te = timer(loop, 5, 2, dev) / calls
            tg = graph_timer(loop, 5) / calls
            th = host_timer(loop, 1) / calls
            out[name] = {"graph_us": tg * 1e6, "eager_us": te * 1e6, "host_us": th * 1e6,
                         "graph_tflops": flops / tg / 1e12}
    out["fp8_over_bf16_graph"] = out["bf16_mm"]["graph_us"] / out["nn_fp8_gemm"]["graph_us"]
    out["fp8_over_bf16_eager"] = out["bf16_mm"]["eager_us"] / out["nn_fp8_gemm"]["eager_us"]
    return out


def layer_runs(cfg, B: int, S: int, a, pk: dict) -> dict:
    """The whole layer forward+backward in BF16, FP8 and FP8 re-quantising its weights every step; speed-ups."""
    dev = a.device
    lc = one_layer(cfg, B, S, device=dev)
    fwd_total = layer_forward_flops(cfg, B, S)
    out: dict = {"layer_forward_flops": fwd_total, "errors": {}}
    for name, fp8, requant in (("layer_bf16", False, False), ("layer_fp8", True, False),
                               ("layer_fp8_requant", True, True)):
        set_fp8(lc.blk, fp8)

        def step(requant=requant):
            if requant:  # every step re-quantises all weights, as after an optimizer step
                F8.clear_weight_cache()
            lc.blk(lc.h, lc.cos, lc.sin).backward(lc.gy)
            lc.blk.zero_grad(set_to_none=True)
            lc.h.grad = None

        try:
            fb0 = F8.FALLBACKS["dequant_bf16"]
            t = timer(step, max(1, a.reps // 2), max(1, a.warmup), dev)
            out[name] = {"ms": t * 1e3, "tflops": 3 * fwd_total / t / 1e12,
                         "mfu": 3 * fwd_total / t / pk["fp8" if fp8 else "bf16"],
                         "fp8_gemm_fallbacks": F8.FALLBACKS["dequant_bf16"] - fb0}
        except Exception:  # noqa: BLE001
            out["errors"][name] = traceback.format_exc(limit=3)
        F8.clear_weight_cache()
        if dev == "cuda":
            torch.cuda.empty_cache()
    for key, v in (("fp8_over_bf16_layer_speedup", "layer_fp8"),
                   ("fp8_over_bf16_layer_speedup_requant", "layer_fp8_requant")):
        if v in out and "layer_bf16" in out:
            out[key] = out["layer_bf16"]["ms"] / out[v]["ms"]
    return out


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="one-layer")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step (batch x seq)")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def routed_expert_gemms(a, cfg, T: int, dt, pk: dict, res: dict) -> None:
    """The routed experts' GEMMs: BF16 grouped, then per expert FP8 vs BF16 (``expert_gemm_loops``), into res;
    the expert operands are freed on return (before the layer run)."""
    dev = a.device
    torch.manual_seed(0)
    E, H, I, k = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts_per_tok

    # --- routed-expert GEMMs, BF16 grouped --------------------------------------------------------------------
    x = torch.randn(T, H, device=dev, dtype=dt)
    wg = (torch.randn(E, I, H, device=dev, dtype=dt) * 0.02).requires_grad_()
    wu = (torch.randn(E, I, H, device=dev, dtype=dt) * 0.02).requires_grad_()
    wd = (torch.randn(E, H, I, device=dev, dtype=dt) * 0.02).requires_grad_()
    gate_w = torch.randn(E, H, device=dev, dtype=torch.float32) * 0.02
    from dsv3sim.nn.routing import gate_topk

    ids, _ = gate_topk(x, gate_w, torch.zeros(E, device=dev), cfg)
    _, counts, _ = permute(x, ids, E)
    res["tokens_per_expert_max_over_mean"] = float(counts.max() / counts.float().mean())
    # each expert's rows padded to a multiple of 128, as DeepGEMM's contiguous grouped layout requires
    counts = (counts + 127) // 128 * 128
    N = int(counts.sum())
    res["routed_rows"], res["routed_rows_padding"] = N, N / (T * k) - 1
    xs = torch.randn(N, H, device=dev, dtype=dt).requires_grad_()
    gy = torch.randn(N, H, device=dev, dtype=dt)
    f_moe = 3 * 2 * N * H * I  # forward FLOPs of the routed experts (padded rows included)

    def moe_bf16():
        y = routed_experts(xs, counts, wg, wu, wd)
        y.backward(gy)

    try:
        t = timer(moe_bf16, a.reps, a.warmup, dev)
        res["moe_gemm_bf16"] = {"ms": t * 1e3, "tflops": 3 * f_moe / t / 1e12, "mfu": 3 * f_moe / t / pk["bf16"],
                                "grouped_mm": bool(dev == "cuda" and hasattr(torch, "_grouped_mm"))}
    except Exception:  # noqa: BLE001
        res["errors"]["moe_gemm_bf16"] = traceback.format_exc(limit=3)

    # --- the expert GEMMs per expert: FP8 block-scaled vs BF16, eager and CUDA graph ----------------------------
    wg.grad = wu.grad = wd.grad = xs.grad = None
    loops = expert_gemm_loops(a, dev, dt, pk, E, H, I, counts, xs.detach(), gy, wg, wu, wd, f_moe)
    res["errors"].update(loops.pop("errors"))
    res.update(loops)
    if "moe_gemm_bf16" in res:
        for v in ("9", "6"):
            if f"moe_gemm_fp8_{v}" in res:
                res[f"fp8_{v}_over_bf16_grouped_speedup"] = res["moe_gemm_bf16"]["ms"] / res[f"moe_gemm_fp8_{v}"]["ms"]


def write_and_print(res: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1))
    for key in ("moe_gemm_bf16", *[k_ for k_ in res if k_.startswith("moe_gemm_") and k_ != "moe_gemm_bf16"],
                "layer_bf16", "layer_fp8", "layer_fp8_requant"):
        if key in res:
            r = res[key]
            print(f"{key:20s} {r['ms']:9.2f} ms  {r['tflops']:8.1f} TFLOP/s  MFU {100 * r['mfu']:5.1f} %")
    for key in [k_ for k_ in res if "speedup" in k_]:
        print(f"{key}: {res[key]:.2f}x")
    if "probe_m512_n4096_k7168" in res:
        print("probe M=512 N=4096 K=7168:", json.dumps(res["probe_m512_n4096_k7168"]))
    for k_, v in res["errors"].items():
        print(f"ERROR {k_}: {v.strip().splitlines()[-1]}")
    print(f"wrote {out}")


def main() -> int:
    a = _parse_args()
    dev = a.device
    cfg = moe_config(a.config)
    B, S = batch_shape(a.tokens, a.seq_len)
    T = B * S
    dt = torch.bfloat16
    res: dict = {"config": cfg.name, "device": dev, "tokens": T, "batch": B, "seq_len": S, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "errors": {}}
    pk = peaks(dev)
    res["peak_flops"] = pk
    routed_expert_gemms(a, cfg, T, dt, pk, res)  # the expert operands freed before the layer run
    F8.clear_weight_cache()
    if dev == "cuda":
        torch.cuda.empty_cache()
        try:
            res["probe_m512_n4096_k7168"] = probe_gemm(512, 4096, 7168)
        except Exception:  # noqa: BLE001
            res["errors"]["probe"] = traceback.format_exc(limit=3)
        torch.cuda.empty_cache()

    layer = layer_runs(cfg, B, S, a, pk)
    res["errors"].update(layer.pop("errors"))
    res.update(layer)
    write_and_print(res, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
