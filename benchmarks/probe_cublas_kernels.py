"""Probe: which cuBLAS kernel runs each GEMM, where the predictor misses (evidence for profile/NOTES.md).

For the series whose time is not monotone in M (BF16 N = K = 2048 around M = 512-1024; FP8 N x K = 32768 x 24576
around M = 192) and the worst held-out shapes, runs each GEMM a few times under torch.profiler and prints the CUDA
kernel name(s) with their median duration. The kernel name carries cuBLAS's tile and cluster choice
(e.g. ``nvjet_..._128x256_64x4_2x1_...``), so a slower shape can be traced to a different kernel.

    python benchmarks/probe_cublas_kernels.py --out probe.json     (GPU only)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from dsv3sim.profile.ops import gemm

SERIES = ([("bf16", m, 2048, 2048) for m in range(512, 1089, 64)]
          + [("bf16", m, 4096, 7168) for m in (128, 160, 192, 224, 256, 320, 384)]
          + [("fp8", m, 32768, 24576) for m in (96, 128, 160, 192, 224, 256, 320, 384)]
          + [("fp8", m, 1536, 16384) for m in (768, 1024, 1280, 1536)]
          + [("bf16", 169, 3840, 8576), ("bf16", 1019, 1152, 10752), ("bf16", 212, 19328, 4352),
             ("bf16", 346, 3456, 11008), ("fp8", 4026, 1152, 384), ("fp8", 139, 14720, 24960)])


def kernels_of(dtype: str, m: int, n: int, k: int, calls: int = 5) -> list[dict]:
    case = gemm(m=m, n=n, k=k, dtype=dtype, device="cuda")
    args = case.sets[0]
    for _ in range(3):
        case.fn(*args)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            case.fn(*args)
        torch.cuda.synchronize()
    by: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            by.setdefault(e.name, []).append(e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time)
    return [{"kernel": name, "n": len(v), "median_us": statistics.median(v)} for name, v in by.items()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = []
    for dtype, m, n, k in SERIES:
        try:
            ks = kernels_of(dtype, m, n, k)
        except Exception as e:  # noqa: BLE001 - record and go on
            ks = [{"kernel": f"error: {type(e).__name__}: {str(e)[:100]}", "n": 0, "median_us": 0.0}]
        row = {"dtype": dtype, "m": m, "n": n, "k": k, "kernels": ks}
        rows.append(row)
        main_k = max(ks, key=lambda x: x["median_us"])
        print(f"{dtype:5s} M={m:5d} N={n:6d} K={k:6d}  {main_k['median_us']:9.1f} us  {main_k['kernel'][:110]}"
              + (f"  (+{len(ks) - 1} more)" if len(ks) > 1 else ""), flush=True)
    a.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
