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
* moe_gemm_fp8 / moe_gemm_bf16_loop: the same 9 expert GEMMs per expert (Fprop, Dgrad, Wgrad of gate, up,
  down) on pre-quantised operands through torch._scaled_mm with 1x128 / 128x128 block scales (Wgrad 1x128 on
  both), and the BF16 per-expert loop of the same GEMMs: the GEMM speed-up FP8/BF16 without quantisation cost.
* layer_bf16 / layer_fp8: the whole Block (MLA + gate + experts + shared expert) forward+backward; FP8 = the
  model's FP8 path (eager quantisation kernels + per-expert FP8 GEMMs: no fused kernels like DeepGEMM).
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

from dsv3sim.config.model import load_model_config
from dsv3sim.nn import fp8 as F8
from dsv3sim.nn.moe import permute, routed_experts
from dsv3sim.nn.transformer import Block


def timer(fn, reps: int, warmup: int, device: str) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def peaks(device: str) -> dict[str, float]:
    try:
        from dsv3sim.config.hardware import get_gpu

        g = get_gpu("H200")
        return {"bf16": g.peak("bf16"), "fp8": g.peak("fp8")}
    except Exception:  # noqa: BLE001
        return {"bf16": 989e12, "fp8": 1979e12}


def layer_gemm_flops(cfg, T: int) -> dict[str, float]:
    """Forward GEMM FLOPs of one MLA+MoE layer for T tokens at sequence length S (attention core separately)."""
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    dqk, dv = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    proj = (H * cfg.q_lora_rank + cfg.q_lora_rank * nh * dqk if cfg.q_lora_rank else H * nh * dqk)
    proj += H * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) + cfg.kv_lora_rank * nh * (cfg.qk_nope_head_dim + dv)
    proj += nh * dv * H
    moe = 3 * H * cfg.moe_intermediate_size * cfg.num_experts_per_tok
    shared = 3 * H * cfg.moe_intermediate_size * cfg.n_shared_experts
    gate = H * cfg.n_routed_experts
    return {"attn_proj": 2 * T * proj, "moe": 2 * T * moe, "shared": 2 * T * shared, "gate": 2 * T * gate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="one-layer")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step (batch x seq)")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dev = a.device
    cfg = load_model_config(a.config)
    if not cfg.is_moe_layer(0):
        cfg = cfg.with_(first_k_dense_replace=0)
    S = min(a.seq_len, a.tokens)
    B = max(1, a.tokens // S)
    T = B * S
    dt = torch.bfloat16
    res: dict = {"config": cfg.name, "device": dev, "tokens": T, "batch": B, "seq_len": S, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "errors": {}}
    pk = peaks(dev)
    res["peak_flops"] = pk
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

    # --- the 9 expert GEMMs per expert: FP8 block-scaled vs BF16 loop ----------------------------------------
    sizes = counts.tolist()
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    with torch.no_grad():
        xq, xsc = F8.quantize_1x128(xs.detach())  # Fprop A (1x128)
        hq, hsc = F8.quantize_1x128(torch.randn(N, I, device=dev, dtype=dt))  # down-proj input
        gyq, gysc = F8.quantize_1x128(gy)  # Dgrad A for down (N = H)
        ghq, ghsc = F8.quantize_1x128(torch.randn(N, I, device=dev, dtype=dt))  # Dgrad A for gate/up
        wq = [[F8.quantize_128x128(w[e].detach()) for w in (wg, wu, wd)] for e in range(E)]
        wtq = [[F8.quantize_128x128(w[e].detach().t().contiguous()) for w in (wg, wu, wd)] for e in range(E)]
        # Wgrad operands: dy^T and x^T quantised 1x128 along the token dim, per expert
        wgrad_ops = []
        for e in range(E):
            s0, s1 = starts[e], starts[e + 1]
            if s1 - s0 < 128:
                wgrad_ops.append(None)
                continue
            n = (s1 - s0) // 128 * 128
            wgrad_ops.append((F8.quantize_1x128(gy[s0:s0 + n].t().contiguous()),
                              F8.quantize_1x128(hq[s0:s0 + n].float().to(dt).t().contiguous()),
                              F8.quantize_1x128(ghq[s0:s0 + n].float().to(dt).t().contiguous()),
                              F8.quantize_1x128(xs[s0:s0 + n].detach().t().contiguous())))

    def fp8_gemms():
        for e in range(E):
            s0, s1 = starts[e], starts[e + 1]
            if s1 == s0:
                continue
            for j, (aq, asc) in enumerate(((xq, xsc), (xq, xsc), (hq, hsc))):  # Fprop gate, up, down
                F8.fp8_gemm(aq[s0:s1], asc[s0:s1], *wq[e][j], b_block=True, out_dtype=dt)
            for j, (aq, asc) in enumerate(((ghq, ghsc), (ghq, ghsc), (gyq, gysc))):  # Dgrad
                F8.fp8_gemm(aq[s0:s1], asc[s0:s1], *wtq[e][j], b_block=True, out_dtype=dt)
            op = wgrad_ops[e]
            if op is not None:  # Wgrad: dW_down = dy^T h, dW_gate/up = dh^T x
                (gq_, gs_), (hq_, hs_), (dq_, ds_), (xq_, xs_) = op
                F8.fp8_gemm(gq_, gs_, hq_, hs_, b_block=False, out_dtype=torch.float32)
                F8.fp8_gemm(dq_, ds_, xq_, xs_, b_block=False, out_dtype=torch.float32)
                F8.fp8_gemm(dq_, ds_, xq_, xs_, b_block=False, out_dtype=torch.float32)

    xb, hb, gyb, ghb = xs.detach(), torch.randn(N, I, device=dev, dtype=dt), gy, torch.randn(N, I, device=dev, dtype=dt)

    def bf16_gemms():
        for e in range(E):
            s0, s1 = starts[e], starts[e + 1]
            if s1 == s0:
                continue
            xe, he, ge, gh = xb[s0:s1], hb[s0:s1], gyb[s0:s1], ghb[s0:s1]
            xe @ wg[e].detach().t(), xe @ wu[e].detach().t(), he @ wd[e].detach().t()
            gh @ wg[e].detach(), gh @ wu[e].detach(), ge @ wd[e].detach()
            if wgrad_ops[e] is not None:
                ge.t() @ he, gh.t() @ xe, gh.t() @ xe

    for name, fn, dtype_peak in (("moe_gemm_fp8", fp8_gemms, "fp8"), ("moe_gemm_bf16_loop", bf16_gemms, "bf16")):
        try:
            with torch.no_grad():
                t = timer(fn, a.reps, a.warmup, dev)
            res[name] = {"ms": t * 1e3, "tflops": 3 * f_moe / t / 1e12, "mfu": 3 * f_moe / t / pk[dtype_peak]}
        except Exception:  # noqa: BLE001
            res["errors"][name] = traceback.format_exc(limit=3)
    if dev == "cuda":
        res["fp8_scaled_mm_blockwise"] = F8.gpu_blockwise_ok(torch.device(dev), True)
        res["fp8_scaled_mm_wgrad_1x128x1x128"] = F8.gpu_blockwise_ok(torch.device(dev), False)
    if "moe_gemm_fp8" in res and "moe_gemm_bf16_loop" in res:
        res["fp8_over_bf16_gemm_speedup_loop"] = res["moe_gemm_bf16_loop"]["ms"] / res["moe_gemm_fp8"]["ms"]
    if "moe_gemm_fp8" in res and "moe_gemm_bf16" in res:
        res["fp8_over_bf16_gemm_speedup_vs_grouped"] = res["moe_gemm_bf16"]["ms"] / res["moe_gemm_fp8"]["ms"]
    wq = wtq = wgrad_ops = wg = wu = wd = None  # free the expert operands before the layer run
    if dev == "cuda":
        torch.cuda.empty_cache()

    # --- whole layer fwd+bwd ----------------------------------------------------------------------------------
    torch.set_default_dtype(dt)  # build the 13B-parameter layer directly in BF16
    with torch.device(dev):
        blk = Block(cfg, 0)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for n_, p in blk.named_parameters():
            if n_.endswith("e_score_correction_bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    blk = blk.to(dt)
    from dsv3sim.nn.layers import rope_cos_sin, yarn_inv_freq

    inv, msc = yarn_inv_freq(cfg)
    cos, sin = rope_cos_sin(inv.to(dev), torch.arange(S, device=dev), msc)
    h = torch.randn(B, S, H, device=dev, dtype=dt, requires_grad=True)
    gh_out = torch.randn(B, S, H, device=dev, dtype=dt)
    fl = layer_gemm_flops(cfg, T)
    attn_core = 2 * B * S * S / 2 * cfg.num_attention_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
    fwd_total = sum(fl.values()) + attn_core
    res["layer_forward_flops"] = fwd_total
    for fp8 in (False, True):
        name = "layer_fp8" if fp8 else "layer_bf16"
        for m in blk.modules():
            if hasattr(m, "fp8"):
                m.fp8 = fp8

        def step():
            blk(h, cos, sin).backward(gh_out)
            blk.zero_grad(set_to_none=True)
            h.grad = None

        try:
            t = timer(step, max(1, a.reps // 2), max(1, a.warmup), dev)
            res[name] = {"ms": t * 1e3, "tflops": 3 * fwd_total / t / 1e12,
                         "mfu": 3 * fwd_total / t / pk["fp8" if fp8 else "bf16"]}
        except Exception:  # noqa: BLE001
            res["errors"][name] = traceback.format_exc(limit=3)
    if "layer_fp8" in res and "layer_bf16" in res:
        res["fp8_over_bf16_layer_speedup"] = res["layer_bf16"]["ms"] / res["layer_fp8"]["ms"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    for key in ("moe_gemm_bf16", "moe_gemm_bf16_loop", "moe_gemm_fp8", "layer_bf16", "layer_fp8"):
        if key in res:
            r = res[key]
            print(f"{key:20s} {r['ms']:9.2f} ms  {r['tflops']:8.1f} TFLOP/s  MFU {100 * r['mfu']:5.1f} %")
    for key in ("fp8_over_bf16_gemm_speedup_loop", "fp8_over_bf16_gemm_speedup_vs_grouped", "fp8_over_bf16_layer_speedup"):
        if key in res:
            print(f"{key}: {res[key]:.2f}x")
    for k_, v in res["errors"].items():
        print(f"ERROR {k_}: {v.strip().splitlines()[-1]}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
