"""DeepSeek-V3 pre-training as published, and the what-if studies a capacity planner runs around it.

Published setup (DeepSeek-V3 Technical Report, arXiv 2412.19437):
- §3.1: 2048 NVIDIA H800 GPUs, 8 per node, NVLink/NVSwitch inside a node, 400 Gb/s InfiniBand between nodes.
- §3.2: 16-way pipeline parallelism (DualPipe), 64-way expert parallelism spanning 8 nodes, ZeRO-1 data
  parallelism; no tensor parallelism (§3.2.3).
- §3.3: FP8 mixed precision for the linear-layer GEMMs; dispatch in FP8, combine in BF16 (§3.3.3).
- §4.2: sequence length 4K, batch size 15360 sequences (after the ramp), node-limited routing M=4 (§2.1.2).
- Table 1 / §1: 2.664M H800 GPU hours for 14.8T tokens pre-training = 180K GPU hours per trillion tokens.
"""

from __future__ import annotations

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

SOURCES = ("DeepSeek-V3 Technical Report (arXiv 2412.19437) §3.1, §3.2, §3.3, §4.2, Table 1",)
PUBLISHED_GPU_HOURS_PER_TRILLION = 180_000.0  # V3 report §1 / Table 1: 180K H800 GPU hours per trillion tokens


def pretrain() -> Scenario:
    """DeepSeek-V3 pre-training step on 2048 H800: PP16 x DP128, EP64 over 8 nodes, DualPipe, FP8, M=4."""
    return Scenario(
        name="deepseek-v3-pretrain", model="deepseek-v3", topology="h800-deepseek",
        parallel=ParallelDims(pp=16, dp=128, ep=64),
        workload=TrainingWorkload(global_batch_sequences=15360, seq_len=4096, micro_batch_sequences=1,
                                  schedule="dualpipe", gemm_dtype="fp8", dispatch_dtype="fp8", node_limit=4),
        description="DeepSeek-V3 pre-training as published (2048 H800, PP16, EP64, ZeRO-1, DualPipe, FP8)",
        sources=SOURCES)


DEFAULT = pretrain
