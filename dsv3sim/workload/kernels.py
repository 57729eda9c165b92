"""Kernel times for the workload models: the profile tables first, a published-throughput roofline otherwise.

``op_time(gpu, op, dtype, flops=, bytes_=, **shape)`` asks ``dsv3sim.profile.predict.kernel_time`` (measured
H200 tables scaled to the target GPU). Where nothing is measured for the op (``NotMeasured``) it falls back to
a roofline whose efficiencies are DeepSeek's *published* kernel throughputs on H800,
applied as fractions of the datasheet peak of the target GPU (never tuned to a result). Decode attention always
uses FlashMLA's published throughput (``DEPLOYED_PUBLISHED``: the profiled op is an unfused reference):

- FP8 GEMM / grouped GEMM: DeepGEMM "up to 1350+ FP8 TFLOPS on Hopper" (deepseek-ai/open-infra-index, Day 3)
  over the H800 dense FP8 peak 1979 TFLOPS -> 0.682.
- BF16 compute-bound kernels (BF16 GEMMs, attention): FlashMLA "BF16 580 TFLOPS compute-bound on H800"
  (open-infra-index, Day 1) over 989.5 TFLOPS -> 0.586.
- Memory-bound kernels: FlashMLA "3000 GB/s memory-bound" on H800 (Day 1) over 3.35 TB/s -> 0.896; DeepSeek's
  FP8 cast(-and-transpose) kernels at their own throughput measured in profile-data's train.json -> 0.698.

The roofline is an upper bound on speed for small shapes (it ignores wave quantisation and launch cost beyond
``KERNEL_LAUNCH_S``); every returned time carries its ``source`` so results say which path was used.

Fewer SMs (a communication kernel holding ``comm_sms`` SMs, DeepSeek-V3 §3.2.2): compute-bound time scales by
n_sms / (n_sms - comm_sms), memory-bound time does not (HBM bandwidth is shared, not partitioned by SM).
A profiled GEMM is never faster than the GPU sustains at its power limit (``sustained.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.hardware import get_gpu
from dsv3sim.profile.predict import OPS as PROFILED_OPS
from dsv3sim.profile.predict import NotMeasured, kernel_time
from dsv3sim.workload.sustained import SOURCE, ceiling_time

FP8_GEMM_EFF = 1350.0 / 1979.0  # open-infra-index Day 3 (DeepGEMM) / H800 FP8 dense peak
BF16_EFF = 580.0 / 989.5  # open-infra-index Day 1 (FlashMLA compute-bound) / H800 BF16 dense peak
MEM_EFF = 3000.0 / 3350.0  # open-infra-index Day 1 (FlashMLA memory-bound) / H800 HBM3 3.35 TB/s
# DeepSeek's FP8 cast kernels (BF16 -> FP8 with 1x128 scales, fused with the transpose where a weight gradient needs
# it): 2,339 GB/s measured over its 68 cast-and-transpose kernels of known shape in profile-data's train.json (H800,
# benchmarks/extract_profile_data.py: fp8_cast_transpose_GBps) over 3.35 TB/s -> 0.698
CAST_EFF = 2339.4 / 3350.0
# DeepSeek's norm kernel (layer_norm::ln_fwd_kernel): 997 GB/s over the attention's four norms of known width per
# layer in profile-data's train.json (extract_profile_data.py: layernorm_GBps) over 3.35 TB/s -> 0.298; the
# production step prices its norms (forward, backward, MLA's latent norms) with it
NORM_EFF = 997.0 / 3350.0
# memory-bound ops with a measured throughput of their own (E5M6: DeepSeek's special-format cast of the attention
# output it caches for the backward, V3 §3.3.3, one of its cast kernels)
MEM_EFF_OF = {"fp8_cast_fused": CAST_EFF, "e5m6_cache_cast": CAST_EFF, "e5m6_cast_back": CAST_EFF,
              "rmsnorm_deployed": NORM_EFF, "latent_rmsnorm": NORM_EFF, "latent_rmsnorm_bwd": NORM_EFF}
KERNEL_LAUNCH_S = 0.0  # launch overhead hidden by CUDA graphs / back-to-back launches (not modelled)
# Ops whose profiled implementation is not the kernel DeepSeek deploys, and whose deployed kernel's throughput
# DeepSeek published: use the published figure. attn_decode: the profile measures three unfused torch.bmm
# kernels (profile/NOTES.md: 1.2-1.6 TB/s), DeepSeek decodes with FlashMLA (3000 GB/s, 580 TFLOPS on H800).
DEPLOYED_PUBLISHED = {"attn_decode": "FlashMLA (open-infra-index Day 1: 3000 GB/s memory-bound, 580 TFLOPS BF16)"}


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuPerf:
    name: str
    bf16_flops: float  # dense FLOP/s
    fp8_flops: float
    hbm_bytes: float
    hbm_bw: float  # B/s
    n_sms: int
    source: str


@lru_cache(maxsize=64)
def gpu_perf(name: str) -> GpuPerf:
    """Peaks of ``name`` from the hardware table (``dsv3sim.config.hardware``, SI units, with sources)."""
    g = get_gpu(name)
    src = "; ".join(f"{k}: {v}" for k, v in g.sources.items() if k in ("peak_flops", "hbm_bandwidth"))
    return GpuPerf(name=g.name, bf16_flops=g.peak("bf16"), fp8_flops=g.peak("fp8"), hbm_bytes=g.hbm_bytes,
                   hbm_bw=g.hbm_bandwidth, n_sms=g.n_sms, source=src or "dsv3sim.config.hardware")


@dataclass(frozen=True, kw_only=True, slots=True)
class OpTime:
    time_s: float
    source: str


def _profile_time(gpu: str, op: str, dtype: str, shape: dict, sms: int | None) -> OpTime | None:
    """The profile tables' time, or None where nothing is measured for this op (then the roofline answers);
    any other error of the predictor is a bug and propagates."""
    if op not in PROFILED_OPS and op != "attn_prefill_bwd":
        return None
    try:
        if op == "attn_prefill_bwd":  # backward alone = measured forward+backward - forward
            fb = kernel_time(gpu, "attn_prefill_fwdbwd", dtype, sms=sms, **shape)
            f = kernel_time(gpu, "attn_prefill", dtype, sms=sms, **shape)
            return OpTime(time_s=max(fb.time_s - f.time_s, 0.0), source=f"profile:{fb.source}")
        p = kernel_time(gpu, op, dtype, sms=sms, **shape)
    except NotMeasured:
        return None
    return OpTime(time_s=float(p.time_s), source=f"profile:{p.source}")


def _roofline(gpu: str, dtype: str, flops: float, bytes_: float, mem_eff: float = MEM_EFF) -> OpTime:
    g = gpu_perf(gpu)
    peak = g.fp8_flops * FP8_GEMM_EFF if dtype == "fp8" else g.bf16_flops * BF16_EFF
    t = max(flops / peak if flops else 0.0, bytes_ / (g.hbm_bw * mem_eff) if bytes_ else 0.0)
    return OpTime(time_s=t + KERNEL_LAUNCH_S, source="roofline:published-kernel-throughput")


@lru_cache(maxsize=200_000)
def _op_time_cached(gpu: str, op: str, dtype: str, flops: float, bytes_: float, shape: tuple,
                    sms: int | None) -> OpTime:
    got = _profile_time(gpu, op, dtype, dict(shape), sms) if shape and op not in DEPLOYED_PUBLISHED else None
    if got is not None:
        g = gpu_perf(gpu)
        floor = ceiling_time(op, dtype, flops, g.fp8_flops if dtype == "fp8" else g.bf16_flops,
                             (sms or g.n_sms) / g.n_sms)
        if floor > got.time_s:  # the table row was timed at a boost clock a step cannot hold (sustained.py)
            return OpTime(time_s=floor, source=f"{got.source}; {SOURCE}")
        return got
    mem_eff = MEM_EFF_OF.get(op, MEM_EFF)
    base = _roofline(gpu, dtype, flops, bytes_, mem_eff)
    if op in DEPLOYED_PUBLISHED:
        base = OpTime(time_s=base.time_s, source=f"published:{DEPLOYED_PUBLISHED[op]}")
    if sms is None:
        return base
    g = gpu_perf(gpu)
    t_mem = bytes_ / (g.hbm_bw * mem_eff) if bytes_ else 0.0
    frac = sms / g.n_sms
    # compute-bound part stretches with fewer SMs; the memory-bound floor does not
    return OpTime(time_s=max(base.time_s / frac if base.time_s > t_mem else base.time_s, t_mem), source=base.source)


def op_time(gpu: str, op: str, dtype: str, *, flops: float, bytes_: float, sm_fraction: float = 1.0,
            **shape: int) -> OpTime:
    """Time of one kernel; ``sm_fraction`` < 1 when communication holds the rest of the SMs.

    ``shape`` uses the profile predictor's keys (gemm m,n,k; grouped_gemm e,m,n,k; attn_prefill s,h,b,dqk,dv;
    attn_decode b,t,h,dc,dr; rmsnorm/swiglu m,n); ``flops``/``bytes_`` feed the fallback roofline."""
    if not 0 < sm_fraction <= 1:
        raise ConfigError(f"sm_fraction must be in (0, 1], got {sm_fraction}")
    sms = None if sm_fraction == 1 else max(1, round(gpu_perf(gpu).n_sms * sm_fraction))
    return _op_time_cached(gpu, op, dtype, float(flops), float(bytes_), tuple(sorted(shape.items())), sms)
