"""The end of a training step as DeepSeek runs it: ZeRO-1 gradient reduce-scatter, optimizer, FP8 re-quantisation
of the weights, parameter all-gather — and which of the data-parallel communication hides behind the pipeline.

Per PP rank (DualPipe: two model chunks, stage r and stage PP-1-r):

- **reduce-scatter** of the FP32 gradients (V3 §3.3.3 keeps gradients in FP32), NCCL rings
  (``comm.ring_time``): the DP peers of a stage fill whole nodes (EP64 spans 8 nodes of one stage, V3 §3.2), so
  every NIC of those nodes carries one ring and NVLink the rest (NVLink-bound on H800); expert gradients over
  the DP/EP peers, one per node, over the NIC.
- **optimizer** on the rank's ZeRO-1 shard after its reduce-scatters: AdamW, memory-bound, 22 B per
  parameter (FP32 master r/w, FP32 gradient r, two BF16 moments r/w — V3 §3.3.3 keeps the moments in BF16 —
  BF16 weight w); then every local weight is **re-quantised** for the next step's FP8 GEMMs (V3 §3.3.2: 128x128
  blocks): BF16 read, FP8 written twice (the GEMM's layout and the transposed copy the dgrad GEMM needs, since
  DeepGEMM takes K-major operands only) = 4 B per parameter; and the FP32 gradient buffers are **zeroed** for the
  next step's accumulation (4 B per parameter).
- **all-gather** of the updated BF16 parameters.

Order. Default, the plain ZeRO-1 order (Megatron's distributed optimizer and DeepSpeed ZeRO-1 without their
overlap options): all reduce-scatters after the rank's last pipeline action, one at a time on the links, the
optimizer, all all-gathers before the next step. DeepSeek does not publish whether it overlaps them; ISCA'25
Table 4's opt (0.29 s) is what decides between the two unpublished choices: the plain order gives 0.25 s, the
overlapped one 0.12 s (benchmarks/bench_published_v3.out.txt). ``optimizer_overlap=True`` (what-if): chunk
c's reduce-scatter starts once c's last weight gradient is done (``ready[c]``: a chunk whose backward ends
early in the cool-down hides it behind the rest of the pipeline), and c's all-gather only has to arrive before
the next step's first action on c (``first_use[c]``), so only what exceeds that is exposed.

DeepSeek's "opt" (ISCA'25 Table 4) is then the step time after the pipeline: exposed reduce-scatter + optimizer
+ exposed all-gather. Not modelled: gradient-norm clipping's all-reduce (a scalar: latency only).
"""

from __future__ import annotations

from dataclasses import dataclass

ADAMW_BYTES_PER_PARAM = 22.0
REQUANT_BYTES_PER_PARAM = 2.0 + 1.0 + 1.0  # BF16 read, FP8 write, transposed FP8 write
ZERO_GRAD_BYTES_PER_PARAM = 4.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RankEnd:
    """Where one PP rank's step ends after its pipeline work."""

    rs_end_s: float  # last reduce-scatter done (absolute, from the step start)
    optimizer_s: float  # AdamW + re-quantisation + zeroing
    ag_exposed_s: float  # all-gather time the next step waits for
    end_s: float  # max(pipeline makespan, rs_end) + optimizer + exposed all-gather


def optimizer_compute_time(*, shard_params: float, local_params: float, hbm_bw: float, zero1: bool = True
                           ) -> float:
    """Memory-bound optimizer work of one rank (module docstring): AdamW on its shard, re-quantisation and gradient
    zeroing of every local weight."""
    adam = ADAMW_BYTES_PER_PARAM * shard_params
    rest = (REQUANT_BYTES_PER_PARAM + ZERO_GRAD_BYTES_PER_PARAM) * local_params
    return (adam + rest) / hbm_bw


def rank_end(*, makespan: float, ready: dict[int, float], rs: dict[int, float], first_use: dict[int, float],
             ag: dict[int, float], optimizer_s: float) -> RankEnd:
    """Reduce-scatters in the order chunks become ready, one at a time on the NIC; all-gathers in the order of
    the next step's first use, exposed where they end after it."""
    t = 0.0
    for c in sorted(ready, key=lambda c: ready[c]):
        t = max(t, ready[c]) + rs.get(c, 0.0)
    acc = exposed = 0.0
    for c in sorted(first_use, key=lambda c: first_use[c]):
        acc += ag.get(c, 0.0)
        exposed = max(exposed, acc - first_use[c])
    end = max(makespan, t) + optimizer_s + exposed
    return RankEnd(rs_end_s=t, optimizer_s=optimizer_s, ag_exposed_s=exposed, end_s=end)
