"""Kimi K2 serving on H200: prefill and decode instances with expert parallelism, as for DeepSeek-V3/R1.

Kimi K2 is the DeepSeek-V3 architecture with 384 routed experts (+1 shared, top-8), 64 attention heads, one dense
layer and no MTP module (model/kimi-k2.json, moonshotai/Kimi-K2-Instruct config.json; Kimi K2 tech report §2.3).
Moonshot's deployment guidance (Kimi-K2 repository, docs/deploy_guidance.md) names the smallest unit for the FP8
weights on H200 as 16 GPUs with TP or DP+EP, and recommends DeepSeek-style prefill/decode disaggregation with
large EP for throughput. The units here follow DeepSeek-V3/R1's published design (open-infra-index Day 6: EP32
prefill, large-EP decode with data-parallel MLA attention, 32 redundant experts), scaled to K2's 384 experts:
- prefill: 32 H200 (4 nodes of h200-hgx), DP32 attention, EP32, 32 redundant experts (13 per GPU), 4K prompts,
  16K tokens per GPU, two micro-batches;
- decode: 128 H200 (16 nodes), EP128, 128 redundant experts (4 per GPU), 4K context, 64 requests per GPU,
  two micro-batches; BF16 latent cache, no MTP (K2 ships none);
- decode_min: the 16-GPU minimum unit of the deployment guidance as DP16 + EP16 (24 experts per GPU), batch as
  large as the KV cache allows.
Kimi K2's gate has one expert group (n_group 1), so routing is not node-limited (node_limit=None).
"""

from __future__ import annotations

from dsv3sim.config.scenario import DecodeWorkload, ParallelDims, PrefillWorkload, Scenario

SOURCES = ("moonshotai/Kimi-K2-Instruct config.json (model/kimi-k2.json)",
           "MoonshotAI/Kimi-K2 docs/deploy_guidance.md (16-GPU minimum unit on H200/H20, TP or DP+EP)",
           "deepseek-ai/open-infra-index Day 6 inference system overview (prefill/decode EP design)")


def prefill() -> Scenario:
    """32 H200: DP32 MLA attention, EP32 MoE with 32 redundant experts (416 physical, 13 per GPU)."""
    return Scenario(name="kimi-k2-prefill", model="kimi-k2", topology="h200-hgx",
                    parallel=ParallelDims(dp=32, attn_tp=1, ep=32),
                    workload=PrefillWorkload(prompt_len=4096, tokens_per_gpu=16384, micro_batches=2,
                                             redundant_experts=32, node_limit=None),
                    description="Kimi K2 prefill unit (32 H200, EP32)", sources=SOURCES)


def decode() -> Scenario:
    """128 H200: EP128, 128 redundant experts (512 physical, 4 per GPU), 64 requests per GPU."""
    return Scenario(name="kimi-k2-decode", model="kimi-k2", topology="h200-hgx",
                    parallel=ParallelDims(dp=128, ep=128),
                    workload=DecodeWorkload(context_len=4096, batch_per_gpu=64, micro_batches=2,
                                            redundant_experts=128, mtp=False, node_limit=None),
                    description="Kimi K2 decode unit (128 H200, EP128, DP attention)", sources=SOURCES)


def decode_min() -> Scenario:
    """16 H200 (the deployment guidance's minimum): DP16 + EP16, 24 experts per GPU, batch set by the KV cache."""
    return decode().with_(name="kimi-k2-decode-16gpu", parallel={"dp": 16, "ep": 16},
                          workload={"redundant_experts": 0, "batch_per_gpu": None},
                          description="Kimi K2 minimum decode unit (16 H200, DP16 + EP16)")


def all_serving() -> dict[str, Scenario]:
    return {s.name: s for s in (prefill(), decode(), decode_min())}


DEFAULT = all_serving
