"""Hardware table: one frozen ``GpuSpec`` per accelerator, every figure with its source.

What it models: the datasheet ceilings the predictor scales measured H200 efficiency curves by
(``dsv3sim/profile/NOTES.md``), and the link bandwidths topologies may default to.

Conventions (SI inside, per GPU):
* ``peak_flops[dtype]``: dense tensor-core FLOP/s (no 2:4 sparsity), FLOP = 2 x multiply-accumulate.
  NVIDIA datasheets quote sparse figures for the tensor cores; dense = sparse / 2 ("* With sparsity").
* ``hbm_bandwidth``: B/s; ``hbm_bytes``: bytes of HBM usable by the program (decimal GB as sold).
* ``nvlink_bandwidth``: B/s per GPU per direction (NVIDIA quotes bidirectional totals: /2).
* ``nic_bandwidth``: B/s per GPU per direction of the scale-out NIC of the reference system.
* ``sm_clock``: Hz; the boost clock the datasheet's tensor peak implies (peak / (n_sms x FLOP/clk/SM)).

Sources (short keys used in ``sources`` below):
* ``H100-ds``: NVIDIA H100 Tensor Core GPU datasheet (SXM column), nvidia.com/en-us/data-center/h100/
* ``H200-ds``: NVIDIA H200 Tensor Core GPU datasheet (SXM column), nvidia.com/en-us/data-center/h200/
* ``Hopper-wp``: NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022): 132 SMs on H100 SXM5,
  4th-gen tensor cores do 2048 dense FP16/BF16 FMA/clk/SM (4096 FLOP/clk/SM; x2 for FP8).
* ``DGX-H100``: NVIDIA DGX H100 datasheet: 8x ConnectX-7 400 Gb/s (50 GB/s) per GPU for compute fabric.
* ``V3-3.1``: DeepSeek-V3 technical report (arXiv 2412.19437) §3.1: H800 cluster, NVLink 160 GB/s,
  IB 50 GB/s (400 Gb/s) per GPU; §3.2.2: "20 out of the 132 SMs" (so 132 SMs on the H800).
* ``B200-ds``: NVIDIA DGX B200 / HGX B200 datasheet: 72 PFLOPS FP8 training (sparse) per 8 GPUs,
  HBM3e 1,440 GB total (180 GB per GPU), 64 TB/s (8 TB/s per GPU), NVLink 5 1.8 TB/s per GPU,
  8x ConnectX-7 400 Gb/s.
* ``GB200-ds``: NVIDIA GB200 NVL72 datasheet (per Blackwell GPU column of GB200): FP8 10 PFLOPS sparse,
  BF16 5 PFLOPS sparse, up to 186 GB HBM3e at 8 TB/s, NVLink 1.8 TB/s per GPU.
* ``Blackwell-sms``: 148 SMs per B200 (2 dies x 74 enabled SMs), as reported by CUDA device queries
  (e.g. chipsandcheese "Nvidia's B200: Keeping the CUDA Juggernaut Rolling", 2025). Not in a datasheet.
* ``measured-here``: measured on the machine itself, see the entry's ``sources`` text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dsv3sim.config.errors import ConfigError

GB = 1e9
TB = 1e12
TFLOPS = 1e12


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuSpec:
    """One accelerator's ceilings (SI units: FLOP/s, bytes, B/s, Hz)."""

    name: str
    peak_flops: Mapping[str, float]  # dtype -> dense FLOP/s: "bf16", "fp8", "tf32", "fp32"
    hbm_bytes: float
    hbm_bandwidth: float
    n_sms: int
    nvlink_bandwidth: float  # per GPU per direction
    nic_bandwidth: float  # per GPU per direction
    sm_clock: float
    arch: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.peak_flops.items() if not 0 < v < math.inf}
        if bad or not self.peak_flops:
            raise ConfigError(f"{self.name}: peak_flops must be finite and > 0 for every dtype, got "
                             f"{dict(self.peak_flops)}")
        for attr in ("hbm_bytes", "hbm_bandwidth", "sm_clock", "nvlink_bandwidth", "nic_bandwidth"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf \
                    or (v == 0 and attr in ("hbm_bytes", "hbm_bandwidth", "sm_clock")):
                raise ConfigError(f"{self.name}: {attr} must be a finite number > 0, got {v!r}")
        if isinstance(self.n_sms, bool) or not isinstance(self.n_sms, int) or self.n_sms < 1:
            raise ConfigError(f"{self.name}: n_sms must be an integer >= 1, got {self.n_sms!r}")
        missing = [k for k in ("peak_flops", "hbm_bytes", "hbm_bandwidth", "n_sms", "nvlink_bandwidth",
                               "nic_bandwidth", "sm_clock") if k not in self.sources]
        if missing:
            raise ConfigError(f"{self.name}: every figure needs a source; missing {missing}")
        object.__setattr__(self, "peak_flops", MappingProxyType(dict(self.peak_flops)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype`` (ValueError lists the dtypes known for this GPU)."""
        try:
            return self.peak_flops[dtype]
        except KeyError:
            raise ConfigError(f"{self.name}: no peak for dtype {dtype!r}; known {sorted(self.peak_flops)}") from None

    @property
    def ridge_point(self) -> float:
        """FLOP per byte above which dense bf16 work is compute-bound (roofline ridge)."""
        return self.peak("bf16") / self.hbm_bandwidth


# Hopper SXM tensor cores: 989.4 TFLOP/s dense BF16 = 132 SMs x 4096 FLOP/clk/SM x 1.83 GHz (H100-ds, Hopper-wp).
_HOPPER_FLOPS = {"bf16": 989.4 * TFLOPS, "fp16": 989.4 * TFLOPS, "fp8": 1978.9 * TFLOPS,
                 "tf32": 494.7 * TFLOPS, "fp32": 66.9 * TFLOPS}
_HOPPER_FLOPS_SRC = ("H100-ds / H200-ds SXM: BF16 1,979 and FP8 3,958 TFLOPS *with sparsity* -> dense /2; "
                     "TF32 989 sparse -> 494.7 dense; FP32 (non-tensor) 67 TFLOPS")
_HOPPER_CLOCK_SRC = "derived: 989.4e12 / (132 SMs x 4096 dense BF16 FLOP/clk/SM, Hopper-wp) = 1.83 GHz"

GPUS: dict[str, GpuSpec] = {}


def register(spec: GpuSpec) -> GpuSpec:
    """Add ``spec`` under its upper-cased name (a plain dict registry, STYLE.md rule 9)."""
    key = spec.name.upper()
    if key in GPUS:
        raise ValueError(f"GPU {spec.name!r} already registered")
    GPUS[key] = spec
    return spec


register(GpuSpec(
    name="H800", arch="sm90", peak_flops=_HOPPER_FLOPS, hbm_bytes=80 * GB, hbm_bandwidth=3.35 * TB, n_sms=132,
    nvlink_bandwidth=160 * GB, nic_bandwidth=50 * GB, sm_clock=1.83e9,
    sources={
        "peak_flops": "H800 SXM = H100 SXM compute (same GH100 die, 132 SMs: V3-3.1 §3.2.2); " + _HOPPER_FLOPS_SRC,
        "hbm_bytes": "H800 SXM 80 GB HBM3 (NVIDIA H800 product brief; same memory system as H100 SXM, H100-ds)",
        "hbm_bandwidth": "3.35 TB/s, as H100 SXM (H100-ds); the H800 differs in NVLink only",
        "n_sms": "V3-3.1 §3.2.2: 'only 20 out of the 132 SMs' are given to communication",
        "nvlink_bandwidth": "V3-3.1 §3.2.2: 'NVLink offers a bandwidth of 160 GB/s, roughly 3.2 times that of IB "
                            "(50 GB/s)' (achievable per direction; nominal H800 NVLink is 400 GB/s bidirectional)",
        "nic_bandwidth": "V3-3.1 §3.1/§3.2.2: InfiniBand 400 Gb/s = 50 GB/s per GPU",
        "sm_clock": _HOPPER_CLOCK_SRC,
    }))

register(GpuSpec(
    name="H100", arch="sm90", peak_flops=_HOPPER_FLOPS, hbm_bytes=80 * GB, hbm_bandwidth=3.35 * TB, n_sms=132,
    nvlink_bandwidth=450 * GB, nic_bandwidth=50 * GB, sm_clock=1.83e9,
    sources={
        "peak_flops": _HOPPER_FLOPS_SRC,
        "hbm_bytes": "H100-ds SXM: 80 GB HBM3",
        "hbm_bandwidth": "H100-ds SXM: 3.35 TB/s",
        "n_sms": "Hopper-wp: H100 SXM5 has 132 SMs",
        "nvlink_bandwidth": "H100-ds SXM: NVLink 900 GB/s (bidirectional) -> 450 GB/s per direction",
        "nic_bandwidth": "DGX-H100: 8x ConnectX-7 400 Gb/s, one per GPU -> 50 GB/s",
        "sm_clock": _HOPPER_CLOCK_SRC,
    }))

register(GpuSpec(
    name="H200", arch="sm90", peak_flops=_HOPPER_FLOPS, hbm_bytes=141 * GB, hbm_bandwidth=4.8 * TB, n_sms=132,
    nvlink_bandwidth=450 * GB, nic_bandwidth=50 * GB, sm_clock=1.83e9,
    sources={
        "peak_flops": _HOPPER_FLOPS_SRC + " (H200-ds lists the same tensor figures as H100 SXM)",
        "hbm_bytes": "H200-ds SXM: 141 GB HBM3e",
        "hbm_bandwidth": "H200-ds SXM: 4.8 TB/s",
        "n_sms": "Hopper-wp (same GH100 die); torch.cuda.get_device_properties on the lent H200: 132 multiprocessors",
        "nvlink_bandwidth": "H200-ds SXM: NVLink 900 GB/s (bidirectional) -> 450 GB/s per direction",
        "nic_bandwidth": "HGX H200 reference: one ConnectX-7 400 Gb/s per GPU (as DGX-H100) -> 50 GB/s",
        "sm_clock": _HOPPER_CLOCK_SRC,
    }))

register(GpuSpec(
    name="B200", arch="sm100",
    peak_flops={"bf16": 2250 * TFLOPS, "fp16": 2250 * TFLOPS, "fp8": 4500 * TFLOPS, "tf32": 1125 * TFLOPS,
                "fp32": 75 * TFLOPS},
    hbm_bytes=180 * GB, hbm_bandwidth=8 * TB, n_sms=148, nvlink_bandwidth=900 * GB, nic_bandwidth=50 * GB,
    sm_clock=1.965e9,
    sources={
        "peak_flops": "B200-ds: 72 PFLOPS FP8 training / 8 GPUs = 9 PF sparse -> 4.5 PF dense; BF16 4.5 PF sparse "
                      "-> 2.25 dense; TF32 2.25 sparse -> 1.125 dense; FP32 75 TFLOPS (non-tensor, HGX B200 page)",
        "hbm_bytes": "B200-ds: 1,440 GB HBM3e per 8 GPUs = 180 GB per GPU",
        "hbm_bandwidth": "B200-ds: 64 TB/s per 8 GPUs = 8 TB/s per GPU",
        "n_sms": "Blackwell-sms: 148 SMs (2 dies x 74)",
        "nvlink_bandwidth": "B200-ds: 5th-gen NVLink 1.8 TB/s per GPU (bidirectional) -> 900 GB/s per direction",
        "nic_bandwidth": "B200-ds (DGX B200): 8x single-port ConnectX-7 400 Gb/s -> 50 GB/s per GPU",
        "sm_clock": "derived: 2.25e15 / (148 SMs x 8192 dense BF16 FLOP/clk/SM) = 1.86 GHz tensor clock; "
                    "1.965 GHz boost as reported with Blackwell-sms (not a datasheet figure)",
    }))

register(GpuSpec(
    name="GB200", arch="sm100",
    peak_flops={"bf16": 2500 * TFLOPS, "fp16": 2500 * TFLOPS, "fp8": 5000 * TFLOPS, "tf32": 1250 * TFLOPS,
                "fp32": 80 * TFLOPS},
    hbm_bytes=186 * GB, hbm_bandwidth=8 * TB, n_sms=148, nvlink_bandwidth=900 * GB, nic_bandwidth=50 * GB,
    sm_clock=2.06e9,
    sources={
        "peak_flops": "GB200-ds per GPU: FP8 10 PF sparse -> 5 dense; FP16/BF16 5 PF sparse -> 2.5 dense; "
                      "TF32 2.5 sparse -> 1.25 dense; FP32 80 TFLOPS (GB200 NVL72: 5,760 TF per 72 GPUs)",
        "hbm_bytes": "GB200-ds: up to 186 GB HBM3e per GPU (13.4 TB per 72 GPUs)",
        "hbm_bandwidth": "GB200-ds: 8 TB/s per GPU (576 TB/s per 72 GPUs)",
        "n_sms": "Blackwell-sms: same B200 die pair, 148 SMs",
        "nvlink_bandwidth": "GB200-ds: NVLink 1.8 TB/s per GPU (130 TB/s per 72) -> 900 GB/s per direction",
        "nic_bandwidth": "DGX GB200 reference: one ConnectX-7 400 Gb/s per GPU -> 50 GB/s",
        "sm_clock": "derived: 2.5e15 / (148 SMs x 8192 dense BF16 FLOP/clk/SM) = 2.06 GHz",
    }))

# The 2-core development box (topologies/local-cpu.yaml names it "cpu"). Values MEASURED here with torch 2.13:
# fp32 1024^3 matmul, 2 threads, 10 reps after 3 warm-ups: 24.9 GFLOP/s; bf16/fp8: the best GEMM rate in
# profiles/cpu/kernels.csv (1 thread; bf16 9.8 GFLOP/s, fp8 emulated through bf16 4.3); memory: the best
# memory-bound op there, 40 GB/s (cache-resident sizes; a 256 MiB copy gave 13.7 GB/s). A shared box:
# other processes perturb these by tens of percent.
register(GpuSpec(
    name="cpu", arch="x86-64", peak_flops={"fp32": 24.9e9, "bf16": 9.8e9, "tf32": 24.9e9, "fp8": 4.3e9},
    hbm_bytes=23 * GB, hbm_bandwidth=40 * GB, n_sms=2, nvlink_bandwidth=2 * GB, nic_bandwidth=1 * GB,
    sm_clock=2.0e9,
    sources={
        "peak_flops": "measured-here: fp32 torch 1024^3 matmul (2 threads); bf16 / fp8 (emulated) the best GEMM "
                      "rate in profiles/cpu/kernels.csv",
        "hbm_bytes": "measured-here: `free -g` total 23 GiB",
        "hbm_bandwidth": "measured-here: best memory-bound op in profiles/cpu/kernels.csv (bytes / time)",
        "n_sms": "measured-here: nproc = 2 cores",
        "nvlink_bandwidth": "placeholder: shared-memory gloo transport, see topologies/local-cpu.yaml (not measured)",
        "nic_bandwidth": "placeholder: no NIC (not measured)",
        "sm_clock": "placeholder: 2 GHz nominal (lscpu gives no MHz on this VM)",
    }))


def get_gpu(name: str) -> GpuSpec:
    """The spec for ``name`` (case-insensitive; 'H200', 'h200-sxm' and 'NVIDIA H200' all work)."""
    key = name.strip().upper().removeprefix("NVIDIA ").removesuffix("-SXM").removesuffix(" SXM").strip()
    if key in GPUS:
        return GPUS[key]
    raise ConfigError(f"unknown GPU {name!r}; known: {', '.join(s.name for s in GPUS.values())}")


def known_gpus() -> tuple[str, ...]:
    return tuple(s.name for s in GPUS.values())
