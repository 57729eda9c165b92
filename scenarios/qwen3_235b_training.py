"""Qwen3-235B-A22B pre-training on an H800 cluster laid out like DeepSeek-V3's: a GQA-MoE model through the same
step model (PP x DP ZeRO-1 with EP all-to-all inside a stage).

The model is the published one (model/qwen3-235b-a22b.json: 94 layers, hidden 4096, 64 query / 4 KV heads of 128
with q/k RMSNorm, 128 routed experts of width 1536, top-8, no shared expert; Qwen3 tech report §2, Table 2).
Qwen did not publish its training layout; the layout here is a planner's starting point, stated so it can be
varied: 1024 H800 (128 nodes of h800-deepseek), PP8 x DP128, EP32 (4 experts per GPU, 4 nodes per EP group),
sequence length 4096 (Qwen3 report §3.1: stage-1 pre-training at 4,096 tokens), a global batch of 4096 sequences
(16.8M tokens), DualPipe, FP8 GEMMs and dispatch as DeepSeek-V3 §3.3. Qwen3's router has no node limit
(plain top-8 softmax), so routing is unrestricted (node_limit=None).
"""

from __future__ import annotations

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

SOURCES = ("Qwen3 Technical Report (arXiv 2505.09388) §2 Table 2 (architecture), §3.1 (4K-token stage-1 pre-training)",
           "Qwen/Qwen3-235B-A22B config.json (model/qwen3-235b-a22b.json)",
           "DeepSeek-V3 report §3.2-3.3 (PP x DP ZeRO-1 x EP layout, FP8 training) for the layout template")


def pretrain() -> Scenario:
    """Qwen3-235B-A22B: 1024 H800, PP8 x DP128, EP32, DualPipe, FP8, 4K sequences, 4096 per step."""
    return Scenario(
        name="qwen3-235b-pretrain", model="qwen3-235b-a22b", topology="h800-deepseek",
        parallel=ParallelDims(pp=8, dp=128, ep=32),
        workload=TrainingWorkload(global_batch_sequences=4096, seq_len=4096, micro_batch_sequences=1,
                                  schedule="dualpipe", gemm_dtype="fp8", dispatch_dtype="fp8", node_limit=None),
        description="Qwen3-235B-A22B pre-training step (1024 H800, PP8, EP32, ZeRO-1, DualPipe, FP8)",
        sources=SOURCES)


def pretrain_ep64() -> Scenario:
    """The same with EP64 (2 experts per GPU): fewer expert weights per GPU, a wider all-to-all."""
    return pretrain().with_(name="qwen3-235b-pretrain-ep64", parallel={"ep": 64},
                            description="Qwen3-235B-A22B pre-training step, EP64")


def all_training() -> dict[str, Scenario]:
    return {s.name: s for s in (pretrain(), pretrain_ep64())}


DEFAULT = pretrain
