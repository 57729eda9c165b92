"""`dsv3sim kernel-time --gpu NAME --op OP [shape flags] --dtype {bf16,fp8} [--json]`: predicted kernel time.

Measured where the H200 table has the shape, interpolated between measured shapes, scaled to other GPUs
through the hardware table (dsv3sim/profile/NOTES.md). Shape flags per op:
  gemm: --m --n --k (C[M,N] = A[M,K] x B[K,N]);  grouped_gemm: --e (experts) --m (tokens per expert) --n --k
  attn_prefill / attn_prefill_fwdbwd: --s --h [--b];  attn_decode: --b --t --h
  rmsnorm / swiglu / quant_fp8: --m --n;  rope: --m --h;  gate / embedding / shared_expert: --m;  adamw: --n
  nn_* ops: the model's own functions, same flags as their counterparts.
--sms: SMs computing (e.g. 112 of 132 when 20 serve communication, DeepSeek-V3 §3.2.2).
"""

from __future__ import annotations

import argparse
import json

NAME = "kernel-time"
HELP = "predicted time of one kernel (gemm, grouped_gemm, attention ...) on a GPU: measured/interpolated/scaled"
DESCRIPTION = __doc__

_SHAPE_FLAGS = ("m", "n", "k", "e", "b", "s", "t", "h")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", required=True, help="GPU name from the hardware table (H800, H100, H200, B200, GB200, cpu)")
    p.add_argument("--op", required=True, help="operator (gemm, grouped_gemm, attn_prefill, attn_decode, ...)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp8", "fp32"))
    for f in _SHAPE_FLAGS:
        p.add_argument(f"--{f}", type=int, default=None)
    p.add_argument("--tokens", default=None,
                   help="grouped_gemm: comma-separated tokens per expert (skewed loads; replaces --e/--m)")
    p.add_argument("--sms", type=int, default=None, help="SMs computing (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from dsv3sim.profile.predict import kernel_time
    shape: dict = {f: getattr(args, f) for f in _SHAPE_FLAGS if getattr(args, f) is not None}
    if args.tokens:
        try:
            shape["tokens"] = [int(x) for x in args.tokens.split(",")]
        except ValueError:
            raise ValueError(f"--tokens must be comma-separated integers, got {args.tokens!r}") from None
    p = kernel_time(args.gpu, args.op, args.dtype, sms=args.sms, **shape)
    d = {"gpu": p.gpu, "op": args.op, "dtype": args.dtype, **shape, "sms": args.sms, "time_s": p.time_s,
         "time_us": p.time_s * 1e6, "tflops": p.tflops, "source": p.source, "base_gpu": p.base_gpu,
         "flops": p.flops, "bytes": p.bytes, "efficiency": p.efficiency, "error90": p.error90}
    if args.json:
        print(json.dumps(d))
    else:
        dims = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shape.items())
        print(f"{p.gpu} {args.op} {args.dtype} {dims}" + (f" sms={args.sms}" if args.sms else ""))
        band = f", 90% band +-{p.error90:.0%}" if p.error90 is not None else ""
        print(f"time_s  {p.time_s:.6g}  ({p.time_s * 1e6:.1f} us{band})")
        print(f"tflops  {p.tflops:.1f}")
        print(f"source  {p.source}  (from {p.base_gpu} measurements, efficiency {p.efficiency:.3f})")
    return 0
