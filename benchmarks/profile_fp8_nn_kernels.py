"""Profile rows of the executable model's own grouped FP8 expert GEMM (nn/fp8_triton.py ``grouped_gemm``: the
Gluon kernel on Hopper, ``impl=nn.gluon``; the Triton kernel, ``impl=nn.triton``) in the kernels.csv schema, so the
simulator can time FP8 expert GEMMs with the kernel the executable model runs (``kernel_time(..., impl=...)``)
beside the cuBLAS block-scaled per-expert loop of ``impl=loop`` (DeepGEMM-class: benchmarks/
bench_fp8_vs_deepgemm.out.txt).

Usage (GPU machine, repository root):
    python benchmarks/profile_fp8_nn_kernels.py --out profiles/h200/kernels-fp8nn.csv

Series over m (rows per expert, every expert the same count) at V3's four expert GEMM shapes (Fprop gate+up
N 4096 K 7168, Fprop down N 7168 K 2048, Dgrad down N 2048 K 7168, Dgrad gate+up N 7168 K 4096), for e = 8
(EP32's local experts) and e = 256 (all experts on one GPU). Random operands quantised by the model's quantisers;
time = median of --reps calls between CUDA events after 3 warm-ups, calls back to back; FLOPs 2 e m N K, bytes
the FP8 operands, scales and the BF16 output.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fp8_layer import timed  # noqa: E402

from dsv3sim.nn import fp8_experts as X  # noqa: E402
from dsv3sim.profile.table import COLUMNS  # noqa: E402

SHAPES = {"moe.w13": (4096, 7168), "moe.w2": (7168, 2048), "moe.w2.dgrad": (2048, 7168),
          "moe.w13.dgrad": (7168, 4096)}
SERIES = {8: (128, 512, 2048, 8192, 16384), 256: (128, 256, 512, 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--backends", default="gluon,triton")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from dsv3sim.nn import fp8_triton as K

    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    rows_out = []
    for role, (n, k) in SHAPES.items():
        for e, ms in SERIES.items():
            w = torch.randn(e, n, k, device=dev, dtype=torch.bfloat16, generator=g) * 0.02
            K.BACKEND = "triton"
            q, s, _, _ = K.weight_quant([w])
            del w
            for m in ms:
                lay = X.layout_from_counts(torch.full((e,), m, device=dev, dtype=torch.int64), e * m)
                x = torch.randn(e * m, k, device=dev, dtype=torch.bfloat16, generator=g)
                xq, xs, _, _ = K.quant(x, src=lay.src, rows_out=lay.rows)
                del x
                flops = 2.0 * e * m * n * k
                nbytes = lay.rows * k + e * n * k + 4 * (lay.rows * k / 128 + e * n * k / 128 ** 2) + 2 * lay.rows * n
                for be in a.backends.split(","):
                    K.BACKEND = be
                    try:
                        t = timed(lambda: K.grouped_gemm(xq, xs, q, s, lay.tile_expert), a.reps)
                        err = ""
                    except Exception as ex:  # noqa: BLE001 - a failed shape is a row with its error
                        t, err = 0.0, f"{type(ex).__name__}: {str(ex).splitlines()[0][:200] if str(ex) else ''}"
                    row = dict.fromkeys(COLUMNS, "")
                    row.update(op="grouped_gemm", dtype="fp8", role=role, set="lattice", m=m, n=n, k=k, e=e,
                               dist="uniform", impl=f"nn.{be}", kernel=f"dsv3sim.nn.fp8_{be}.grouped_gemm",
                               time_s=t, p10_s=t, p90_s=t, n_calls=1, reps=a.reps, mode="eager", flops=flops,
                               bytes=nbytes, tflops=flops / t / 1e12 if t else "", gbps=nbytes / t / 1e9 if t else "",
                               error=err)
                    rows_out.append(row)
                    print(f"{role:14s} e={e:3d} m={m:5d} {be:6s} {t * 1e3:8.3f} ms "
                          f"{flops / t / 1e12 if t else 0:6.0f} TFLOP/s {err}", flush=True)
            torch.cuda.empty_cache()
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            with Path(a.out).open("w", newline="") as f:
                wr = csv.DictWriter(f, fieldnames=COLUMNS)
                wr.writeheader()
                wr.writerows(rows_out)
    K.BACKEND = "auto"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
