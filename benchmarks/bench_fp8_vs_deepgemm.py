"""FP8 block-scaled GEMM measured on our H200 at DeepSeek-V3 shapes, next to DeepGEMM's published H800 figures.

Ours: ``torch._scaled_mm`` with 1x128 activation / 128x128 weight scales (cuBLASLt, torch 2.11 + CUDA 13) and
BF16 ``torch.mm`` at the same shapes, from ``profiles/h200/kernels.csv`` (CUDA-graph replay, rotated inputs,
median). Grouped rows: ours are per-expert ``_scaled_mm`` launches in one CUDA graph (FP8) and
``torch._grouped_mm`` (BF16); DeepGEMM's are one grouped kernel.

DeepGEMM figures: deepseek-ai/DeepGEMM README.md, "Performance" section, first release (commit a6d97a1,
2025-02-25): "We test all shapes potentially used in DeepSeek-V3/R1 inference ... on H800 with NVCC 12.8".
H800 and H200 share the Hopper tensor peak (989 dense BF16 / 1979 dense FP8 TFLOP/s); the H200's HBM is
4.8 TB/s against the H800's 3.35 TB/s, which favours ours at small M (memory-bound).

    .venv/bin/python benchmarks/bench_fp8_vs_deepgemm.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.profile.table import profile_dir, read_rows

# (M, N, K) -> DeepGEMM H800 TFLOPS (README table "Normal GEMMs for dense models")
DEEPGEMM_DENSE = {
    (64, 2112, 7168): 206, (64, 24576, 1536): 289, (64, 32768, 512): 219, (64, 7168, 16384): 336,
    (64, 4096, 7168): 287, (64, 7168, 2048): 295, (128, 2112, 7168): 352, (128, 24576, 1536): 535,
    (128, 32768, 512): 358, (128, 7168, 16384): 645, (128, 4096, 7168): 533, (128, 7168, 2048): 510,
    (4096, 2112, 7168): 1058, (4096, 24576, 1536): 990, (4096, 32768, 512): 590, (4096, 7168, 16384): 1358,
    (4096, 4096, 7168): 1304, (4096, 7168, 2048): 1025,
}
# (groups, M per group, N, K) -> TFLOPS ("Grouped GEMMs for MoE models", contiguous and masked layouts)
DEEPGEMM_GROUPED = {
    (4, 8192, 4096, 7168): (1297, "contiguous"), (4, 8192, 7168, 2048): (1099, "contiguous"),
    (8, 4096, 4096, 7168): (1288, "contiguous"), (8, 4096, 7168, 2048): (1093, "contiguous"),
    (1, 1024, 4096, 7168): (1233, "masked"), (1, 1024, 7168, 2048): (925, "masked"),
    (2, 512, 4096, 7168): (1040, "masked"), (2, 512, 7168, 2048): (916, "masked"),
    (4, 256, 4096, 7168): (932, "masked"), (4, 256, 7168, 2048): (815, "masked"),
}


def _lookup(rows, op, dtype, **shape):
    ts = [r for r in rows if r.op == op and r.dtype == dtype and all(r.get(k) == v for k, v in shape.items())]
    if not ts:
        return None
    t = statistics.median(r.time_s for r in ts)
    return ts[0].flops / t / 1e12


def table(gpu: str = "H200") -> list[dict]:
    rows = read_rows(str(profile_dir(gpu) / "kernels.csv"))
    out = []
    for (m, n, k), dg in DEEPGEMM_DENSE.items():
        f8, b16 = _lookup(rows, "gemm", "fp8", m=m, n=n, k=k), _lookup(rows, "gemm", "bf16", m=m, n=n, k=k)
        out.append({"kind": "dense", "shape": f"M={m} N={n} K={k}", "fp8": f8, "bf16": b16, "deepgemm": dg})
    for (e, m, n, k), (dg, layout) in DEEPGEMM_GROUPED.items():
        f8 = _lookup(rows, "grouped_gemm", "fp8", e=e, m=m, n=n, k=k, dist="uniform")
        b16 = _lookup(rows, "grouped_gemm", "bf16", e=e, m=m, n=n, k=k, dist="uniform", impl="grouped")
        out.append({"kind": f"grouped ({layout})", "shape": f"{e} x M={m} N={n} K={k}", "fp8": f8, "bf16": b16,
                    "deepgemm": dg})
    return out


def main() -> int:
    t = table()
    f = lambda x: f"{x:7.0f}" if x else "      -"
    print("FP8 block-scaled GEMM TFLOP/s: ours on H200 (cuBLAS via torch._scaled_mm) vs DeepGEMM on H800 (README)")
    print(f"{'kind':22s} {'shape':28s} {'H200 fp8':>8s} {'H200 bf16':>9s} {'fp8/bf16':>8s} {'DeepGEMM':>8s} "
          f"{'ours/DG':>7s}")
    sp, rel = [], []
    for r in t:
        s = r["fp8"] / r["bf16"] if r["fp8"] and r["bf16"] else None
        g = r["fp8"] / r["deepgemm"] if r["fp8"] else None
        sp += [s] if s else []
        rel += [g] if g else []
        print(f"{r['kind']:22s} {r['shape']:28s} {f(r['fp8'])} {f(r['bf16'])}  {s or 0:7.2f}x {r['deepgemm']:8.0f} "
              f"{g or 0:6.2f}x")
    print(f"median FP8/BF16 speed-up {statistics.median(sp):.2f}x; median ours/DeepGEMM {statistics.median(rel):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
