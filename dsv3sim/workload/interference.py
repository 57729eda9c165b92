"""GEMM-communication interference inside an overlapped F&B pair: SM share and HBM bandwidth.

DeepSeek-V3 §3.2.2 gives the all-to-all ``comm_sms`` (20 of 132) SMs while the computation runs on the rest.
Two resources are shared, and the chunk model prices both:

- **SMs**: compute-bound kernels run on n_sms - comm_sms SMs, so they stretch by n_sms / (n_sms - comm_sms)
  (``kernels.op_time(sm_fraction=...)``, unchanged here).
- **HBM bandwidth** (this module): SMs are partitioned, HBM is not. DeepEP's normal kernels move every payload
  byte through HBM several times (csrc/kernels/legacy/internode.cu): an RDMA byte is written into the send
  buffer by the sender's SMs, read by the NIC, written into the receiver's buffer by its NIC and read again by
  the forwarding SMs (4 touches); an NVLink byte is written into the peer's buffer and read and written once more
  into the output tensor (3 touches); the source tokens are read once. While the all-to-all runs its traffic
  takes u = (HBM bytes / transfer time) / HBM bandwidth, and a memory-bound kernel beside it gets the rest:
  it stretches by 1 / (1 - u). Compute-bound kernels (GEMMs, attention) keep their time: their HBM demand is
  far below the bandwidth at these shapes.

The reverse direction, the transfer slowed by the computation beside it, has no first-principles size in the
literature; ``deepep_overheads.CORUN_SLOWDOWN`` calibrates it on DeepSeek's profile.
"""

from __future__ import annotations

from dsv3sim.config.errors import ConfigError

HBM_TOUCHES_RDMA = 4.0  # send-buffer write, NIC read, remote NIC write, forwarder read
HBM_TOUCHES_NVLINK = 3.0  # peer-buffer write, read, output write
MAX_COMM_HBM_SHARE = 0.5  # the comm SMs cannot take more than this of HBM (guard; the profile's case is ~0.1)


def comm_hbm_bytes(*, rdma_bytes: float, nvlink_bytes: float, source_bytes: float) -> float:
    """HBM bytes one GPU moves for one dispatch or combine (payload bytes per GPU in, see module docstring)."""
    return HBM_TOUCHES_RDMA * rdma_bytes + HBM_TOUCHES_NVLINK * nvlink_bytes + source_bytes


def hbm_share(hbm_bytes: float, transfer_s: float, hbm_bw: float) -> float:
    """Fraction of HBM bandwidth the all-to-all takes while it runs."""
    if transfer_s <= 0 or hbm_bytes <= 0:
        return 0.0
    return min(MAX_COMM_HBM_SHARE, hbm_bytes / transfer_s / hbm_bw)


def memory_bound_stretch(share: float) -> float:
    """Time factor of a memory-bound kernel that runs beside an all-to-all taking ``share`` of HBM."""
    if not 0 <= share < 1:
        raise ConfigError(f"HBM share must be in [0, 1), got {share}")
    return 1.0 / (1.0 - share)


def is_memory_bound(flops: float, bytes_: float, peak_flops: float, hbm_bw: float) -> bool:
    """Roofline test: arithmetic intensity below the GPU's ridge point (peak FLOP/s / HBM bytes/s)."""
    return bytes_ > 0 and flops / bytes_ < peak_flops / hbm_bw
