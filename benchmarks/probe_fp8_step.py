"""Where the FP8 layer's step time goes on the GPU, and what the executable model pays beyond its kernels.

For the one-layer model's Block (MLA + gate + routed + shared experts), BF16 and FP8, at each --tokens:
* device_ms: forward+backward between two CUDA events, eager (median, calls back to back);
* graph_ms: the same step replayed from a CUDA graph (no host launch cost);
* host_issue_ms: host seconds to issue forward+backward (no sync inside; the GPU was idle at the start, so
  when host_issue > device the step is host-bound in eager mode);
* span_wall_ms: forward and backward each timed as validate times a span (sync, host clock, sync);
* launches: kernels per step (torch.profiler), host_us_per_launch = host_issue / launches;
* by_kernel / by_class: device time per kernel (profiler, one step), grouped into classes;
* FP8 only: requant_ms (``nn.fp8.requantize_weights`` after the weights changed: every FP8 copy of the layer,
  once) with its elements and bytes/s at 4 B per element (BF16 read, two FP8 copies written);
  cold_ms / warm_ms: the first step after the weight copies were dropped and the caching allocator emptied
  (validate's quick probes empty it), and the next, each with its cudaMalloc / cudaFree / retry counts.
Usage (GPU machine, repository root):
    python benchmarks/probe_fp8_step.py --tokens 4096,16384 --out profiles/h200/fp8_step_probe.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_layer import batch_shape, moe_config, one_layer, set_fp8, timed  # noqa: E402

from dsv3sim.nn import fp8 as F8  # noqa: E402

CLASSES = [("fp8 gemm (gluon fprop/dgrad)", r"_gemm_kernel|_grouped_gemm_kernel"), ("fp8 wgrad", r"wgrad"),
           ("fp8 weight quant", r"_weight_quant"), ("fp8 act quant", r"_quant_kernel|swiglu"),
           ("bf16 gemm (cublas)", r"nvjet|gemm|cutlass|xmma|sm90_"), ("reduce/softmax", r"reduce|softmax|norm"),
           ("copy/cat/index", r"copy|cat|index|gather|scatter|Memcpy|fill")]


def klass(name: str) -> str:
    for c, pat in CLASSES:
        if re.search(pat, name):
            return c
    return "elementwise/other"


def _host_and_span_times(fwd, blk, h, gy, reps: int) -> dict:
    """Host issue time of forward+backward (GPU idle at the start) and validate's span walls (sync, host clock,
    work, sync) of forward and backward, medians over ``reps``."""
    hs, fw, bw = [], [], []
    for _ in range(reps):
        torch.cuda.synchronize()
        time.sleep(0.02)  # the GPU idle: the host issue time alone
        t0 = time.perf_counter()
        y = fwd()
        y.backward(gy)
        hs.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        blk.zero_grad(set_to_none=True)
        h.grad = None
        t0 = time.perf_counter()  # validate's spans: sync, host clock, work, sync
        y = fwd()
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        y.backward(gy)
        torch.cuda.synchronize()
        fw.append(t1 - t0)
        bw.append(time.perf_counter() - t1)
        blk.zero_grad(set_to_none=True)
        h.grad = None
    return {"host_issue_ms": statistics.median(hs) * 1e3,
            "span_wall_ms": {"forward": statistics.median(fw) * 1e3, "backward": statistics.median(bw) * 1e3}}


def _kernel_profile(step, host_issue_ms: float) -> dict:
    """Kernels of one step (torch.profiler): launches, host time per launch, device time per kernel and class."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kern: dict = defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            k = kern[e.name[:90]]
            k[0] += 1
            k[1] += e.device_time_total / 1e3
    cls: dict = defaultdict(float)
    for k, (_, t) in kern.items():
        cls[klass(k)] += t
    r: dict = {"launches": sum(n for n, _ in kern.values())}
    r["host_us_per_launch"] = host_issue_ms * 1e3 / max(r["launches"], 1)
    r["kernel_ms_sum"] = sum(t for _, t in kern.values())
    r["by_class_ms"] = dict(sorted(cls.items(), key=lambda x: -x[1]))
    r["by_kernel"] = [{"kernel": k, "count": n, "ms": t} for k, (n, t) in
                      sorted(kern.items(), key=lambda x: -x[1][1])[:20]]
    return r


def _graph_time(step, reps: int) -> dict:
    """The step replayed from a CUDA graph, or why the capture failed."""
    try:
        return {"graph_ms": timed(step, reps, warmup=2, graph=True) * 1e3}
    except Exception as e:  # noqa: BLE001 - a capture that fails is a result
        return {"graph_error": f"{type(e).__name__}: {str(e)[:200]}"}


def _requant(cfg, blk, reps: int) -> dict:
    """``requantize_weights`` after every weight got a new version (as after the optimizer step), median of reps."""
    ws = [p for p in blk.parameters() if p.dim() >= 2]
    ts = []
    for _ in range(reps):
        with torch.no_grad():
            for p in ws:
                p.add_(0.0)  # a new version: every copy stale, as after the optimizer step
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        n = F8.requantize_weights()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    from dsv3sim.validate.gpu_tables import fp8_weight_elements

    el = fp8_weight_elements(cfg, [(0, cfg.n_routed_experts)])
    return {"requant_ms": statistics.median(ts) * 1e3, "requant_operands": n, "requant_elements": el,
            "requant_GBps_at_4B": 4 * el / statistics.median(ts) / 1e9}


def _cold_warm(step) -> dict:
    """The first step after the weight copies were dropped and the allocator emptied, and the next, each with its
    cudaMalloc / cudaFree / retry counts."""
    F8.clear_weight_cache()
    torch.cuda.empty_cache()
    r: dict = {}
    for k in ("cold", "warm"):  # cold includes the lazy weight quantisation
        a0 = torch.cuda.memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        r[f"{k}_ms"] = (time.perf_counter() - t0) * 1e3
        a1 = torch.cuda.memory_stats()
        r[f"{k}_allocator"] = {s: a1.get(s, 0) - a0.get(s, 0) for s in
                               ("num_device_alloc", "num_device_free", "num_alloc_retries")}
    return r


def _probe_precision(cfg, blk, fwd, step, h, gy, fp8: bool, reps: int, graphs: bool) -> dict:
    """Every number of one precision (BF16 or FP8) on the layer."""
    set_fp8(blk, fp8)
    r: dict = {}
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    r["device_ms"] = timed(step, reps, warmup=0) * 1e3
    r.update(_host_and_span_times(fwd, blk, h, gy, reps))
    r.update(_kernel_profile(step, r["host_issue_ms"]))
    if graphs:
        r.update(_graph_time(step, reps))
    if fp8:
        r.update(_requant(cfg, blk, reps))
        r.update(_cold_warm(step))
    return r


def probe(cfg, tokens: int, seq_len: int, reps: int, graphs: bool) -> dict:
    B, S = batch_shape(tokens, seq_len)
    lc = one_layer(cfg, B, S)
    blk, cos, sin, h, gy = lc.blk, lc.cos, lc.sin, lc.h, lc.gy
    out: dict = {"tokens": B * S, "batch": B, "seq_len": S}

    def fwd():
        return blk(h, cos, sin)

    def step():
        fwd().backward(gy)
        if not torch.cuda.is_current_stream_capturing():
            blk.zero_grad(set_to_none=True)
            h.grad = None

    for name, fp8 in (("bf16", False), ("fp8", True)):
        out[name] = _probe_precision(cfg, blk, fwd, step, h, gy, fp8, reps, graphs)
        F8.clear_weight_cache()
        torch.cuda.empty_cache()
    out["fp8_over_bf16_device"] = out["bf16"]["device_ms"] / out["fp8"]["device_ms"]
    if "graph_ms" in out["bf16"] and "graph_ms" in out["fp8"]:
        out["fp8_over_bf16_graph"] = out["bf16"]["graph_ms"] / out["fp8"]["graph_ms"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--graph-max-tokens", type=int, default=16384)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = moe_config("one-layer")
    res: dict = {"command": " ".join(sys.argv), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "cases": []}
    for t in (int(x) for x in a.tokens.split(",")):
        res["cases"].append(probe(cfg, t, a.seq_len, a.reps, t <= a.graph_max_tokens))
        torch.cuda.empty_cache()
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
    for c in res["cases"]:
        for k in ("bf16", "fp8"):
            r = c[k]
            print(f"T={c['tokens']} {k}: device {r['device_ms']:.1f} ms, graph {r.get('graph_ms', float('nan')):.1f}, "
                  f"host issue {r['host_issue_ms']:.1f} ms ({r['launches']} launches, "
                  f"{r['host_us_per_launch']:.1f} us each), spans F {r['span_wall_ms']['forward']:.1f} "
                  f"B {r['span_wall_ms']['backward']:.1f}; requant {r.get('requant_ms', 0):.2f} ms "
                  f"({r.get('requant_GBps_at_4B', 0):.0f} GB/s); cold {r.get('cold_ms', 0):.1f} "
                  f"warm {r.get('warm_ms', 0):.1f}")
            print("   ", {k2: round(v, 2) for k2, v in r["by_class_ms"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
