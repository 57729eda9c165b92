"""`dsv3sim kernel-time --gpu NAME --op OP [shape flags] --dtype {bf16,fp8} [--json]`: predicted kernel time.

Measured where the H200 table has the shape, interpolated between measured shapes, scaled to other GPUs
through the hardware table (dsv3sim/profile/NOTES.md). Shape flags per op:
  gemm: --m --n --k (C[M,N] = A[M,K] x B[K,N]);  grouped_gemm: --e (experts) --m (tokens per expert) --n --k
  attn_prefill / attn_prefill_fwdbwd: --s --h [--b];  attn_decode: --b --t --h [--q]
  attn_decode is the fused FlashMLA-class estimate the serving model uses (workload/decode_ops.py: the latent
  cache read once per request for its --q query tokens, FlashMLA's published throughputs, the CUDA-graph
  launch cost); attn_decode_unfused is the measured three-kernel torch reference (profile tables).
  rmsnorm / swiglu / quant_fp8: --m --n;  rope: --m --h;  gate / embedding / shared_expert: --m;  adamw: --n
  nn_* ops: the model's own functions, same flags as their counterparts.
--sms: SMs computing (e.g. 112 of 132 when 20 serve communication, DeepSeek-V3 §3.2.2).
--impl (grouped_gemm): whose kernel's table: grouped (torch._grouped_mm, the BF16 default), loop (one block-scaled
  cuBLAS _scaled_mm per expert, the FP8 default: DeepGEMM-class, the reference for DeepSeek's production), nn.gluon
  (the executable model's own grouped FP8 kernel, dsv3sim/nn/fp8_gluon.py; profiles/h200/kernels-fp8nn.csv).
"""

from __future__ import annotations

import argparse
import json

from dsv3sim.commands import _args as A
from dsv3sim.config.errors import ConfigError

NAME = "kernel-time"
HELP = "predicted time of one kernel (gemm, grouped_gemm, attention ...) on a GPU: measured/interpolated/scaled"
DESCRIPTION = __doc__

_SHAPE_FLAGS = ("m", "n", "k", "e", "b", "s", "t", "h")
FUSED_DECODE = "attn_decode"  # priced as serving prices it
UNFUSED_DECODE = "attn_decode_unfused"  # the profile table's attn_decode rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", required=True, help="GPU name from the hardware table (H800, H100, H200, B200, GB200, cpu)")
    p.add_argument("--op", required=True, help="operator (gemm, grouped_gemm, attn_prefill, attn_decode, ...)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp8", "fp32"))
    for f in _SHAPE_FLAGS:
        p.add_argument(f"--{f}", type=A.pos_int, default=None)
    p.add_argument("--tokens", default=None,
                   help="grouped_gemm: comma-separated tokens per expert (skewed loads; replaces --e/--m)")
    p.add_argument("--sms", type=A.pos_int, default=None, help="SMs computing (default: all)")
    p.add_argument("--q", type=A.pos_int, default=1, help="attn_decode: query tokens per request (2 = MTP verification)")
    p.add_argument("--impl", default=None,
                   help="grouped_gemm: grouped | loop | nn.gluon (whose kernel's measurements; default grouped for "
                        "bf16, loop for fp8)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _fused_decode(args: argparse.Namespace) -> dict:
    from dsv3sim.workload.decode_ops import flashmla_decode

    missing = [f"--{f}" for f in ("b", "t", "h") if getattr(args, f) is None]
    if missing:
        raise ConfigError(f"--op attn_decode needs {', '.join(missing)} (batch, context, heads)")
    for f in ("b", "t", "h", "q"):
        if getattr(args, f) < 1:
            raise ConfigError(f"--{f} must be >= 1, got {getattr(args, f)}")
    if args.sms is not None:
        raise ConfigError("--sms is not supported for the fused attn_decode (decode holds every SM)")
    kv_bytes = 1.0 if args.dtype == "fp8" else 2.0
    k = flashmla_decode(args.gpu, requests=args.b, q_per_request=args.q, context=args.t, heads=args.h, dc=512, dr=64,
                        kv_dtype_bytes=kv_bytes)
    return {"gpu": args.gpu, "op": args.op, "dtype": args.dtype, "b": args.b, "t": args.t, "h": args.h, "q": args.q,
            "sms": None, "time_s": k.time_s, "time_us": k.time_s * 1e6, "tflops": k.flops / k.time_s / 1e12,
            "source": "fused FlashMLA-class estimate (workload/decode_ops.flashmla_decode; serving uses it)",
            "base_gpu": args.gpu, "flops": k.flops, "bytes": k.bytes, "bound": k.bound, "efficiency": None,
            "error90": None}


def run(args: argparse.Namespace) -> int:
    if args.op == FUSED_DECODE:
        d = _fused_decode(args)
        if args.json:
            print(json.dumps(d))
        else:
            print(f"{d['gpu']} attn_decode (fused) b={args.b} t={args.t} h={args.h} q={args.q}")
            print(f"time_s  {d['time_s']:.6g}  ({d['time_us']:.1f} us, {d['bound']}-bound)")
            print(f"tflops  {d['tflops']:.1f}")
            print(f"source  {d['source']}")
        return 0
    from dsv3sim.profile.predict import NotMeasured, kernel_time
    op = FUSED_DECODE if args.op == UNFUSED_DECODE else args.op
    shape: dict = {f: getattr(args, f) for f in _SHAPE_FLAGS if getattr(args, f) is not None}
    if args.impl is not None:
        if args.op != "grouped_gemm":
            raise ConfigError(f"--impl applies to --op grouped_gemm only, got --op {args.op}")
        shape["impl"] = args.impl
    if args.tokens:
        try:
            shape["tokens"] = [int(x) for x in args.tokens.split(",")]
        except ValueError:
            raise ConfigError(f"--tokens must be comma-separated integers, got {args.tokens!r}") from None
    try:
        p = kernel_time(args.gpu, op, args.dtype, sms=args.sms, **shape)
    except NotMeasured as e:
        if args.impl is None:
            raise
        raise ConfigError(f"--impl {args.impl}: {e} (the H200 tables have grouped and loop, and nn.gluon for fp8)") from None
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
