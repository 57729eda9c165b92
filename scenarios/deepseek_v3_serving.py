"""DeepSeek-V3/R1 serving deployments as published: prefill and decode instances on H800.

Sources:
- DeepSeek-V3 report (arXiv 2412.19437) §3.4.1 prefill: minimum unit 4 nodes / 32 GPUs, attention TP4 + SP
  with DP8, MoE EP32, 32 redundant experts (each GPU hosts 8 + 1 experts). §3.4.2 decode: 40 nodes / 320 GPUs,
  MoE EP320 (one expert per GPU; 64 GPUs hold redundant and shared experts), attention TP4 + SP with DP80.
- deepseek-ai/open-infra-index README, Day 6 "DeepSeek-V3/R1 Inference System Overview" (2025-02): prefill
  routed experts EP32 with MLA + shared expert DP32, 4 nodes per unit, 32 redundant experts; decode EP144 with
  MLA + shared expert DP144, 18 nodes per unit, 32 redundant experts; production averages over 24 h:
  73.7k input tokens/s per H800 node in prefill (including 56.3 % on-disk KV-cache hits) and 14.8k output
  tokens/s per H800 node in decode; average output speed 20-22 tokens/s per request; average KV-cache length
  per output token 4,989 tokens.
- deepseek-ai/profile-data README: prefill profile EP32, 4K prompts, 16K tokens per GPU, two micro-batches;
  decode profile EP128, 4K prompts, 128 requests per GPU, two micro-batches, low-latency all-to-all holds no SMs.
- ISCA'25 (arXiv 2505.09343): DeepSeek-V3's own inference deployment; InferSim (alibaba/InferSim README) measured
  profile-data's setups at 7,839 prefill and 2,324 decode tokens/s per GPU.
MTP acceptance: DeepSeek's published 85-90 % (V3 report §5.4.3, midpoint 0.875) unless a scenario sets one with its
source. ``decode_tp4`` models §3.4.2's TP4 + SP attention.
"""

from __future__ import annotations

from dsv3sim.config.scenario import AggregatedWorkload, DecodeWorkload, ParallelDims, PrefillWorkload, Scenario
from dsv3sim.workload.prompt_lengths import mean_prompt_from_kv_length

SOURCES = ("DeepSeek-V3 report §3.4", "deepseek-ai/open-infra-index Day 6 inference system overview",
           "deepseek-ai/profile-data README")
PUBLISHED_PREFILL_TOKENS_PER_S_PER_NODE = 73_700.0  # Day 6, includes cache hits
PUBLISHED_CACHE_HIT_RATE = 0.563  # Day 6: 342B of 608B input tokens hit the on-disk KV cache
PUBLISHED_DECODE_TOKENS_PER_S_PER_NODE = 14_800.0  # Day 6
PUBLISHED_OUTPUT_SPEED = (20.0, 22.0)  # Day 6: tokens/s per request
PUBLISHED_DAY_INPUT_TOKENS = 608e9  # Day 6: input tokens in 24 h (342B of them cache hits)
PUBLISHED_DAY_OUTPUT_TOKENS = 168e9  # Day 6: output tokens in 24 h
PUBLISHED_MEAN_NODES = 226.75  # Day 6: average inference nodes over the 24 h (peak 278)
PUBLISHED_KV_LEN_PER_OUTPUT_TOKEN = 4989.0  # Day 6: average KV-cache length per output token

# profile-data README's prefill figure: "Computation 108 SMs, Communication 24 SMs" (DeepEP's normal kernels)
PREFILL_COMM_SMS = 24


def prefill() -> Scenario:
    """V3 report §3.4.1: 32 H800, attention TP4+SP x DP8, EP32, 32 redundant experts."""
    return Scenario(name="deepseek-v3-prefill", model="deepseek-v3", topology="h800-deepseek",
                    parallel=ParallelDims(dp=8, attn_tp=4, ep=32),
                    workload=PrefillWorkload(prompt_len=4096, tokens_per_gpu=16384, micro_batches=2,
                                             redundant_experts=32, node_limit=4, comm_sms=PREFILL_COMM_SMS),
                    description="DeepSeek-V3 prefill unit (V3 report §3.4.1)", sources=SOURCES)


def prefill_day6() -> Scenario:
    """Day 6: EP32 with MLA and shared expert DP32 (attention without TP)."""
    return prefill().with_(name="deepseek-v3-prefill-day6", parallel={"dp": 32, "attn_tp": 1},
                           description="DeepSeek-V3/R1 prefill unit (open-infra-index Day 6)")


def prefill_day6_cache_hits() -> Scenario:
    """Day 6 with its published 56.3 % KV-cache hits applied: computed tokens attend to the cached prefix, and
    ``prefill_input_tokens_per_s_per_node`` counts every input token as the published 73.7k does."""
    return prefill_day6().with_(name="deepseek-v3-prefill-day6-cache-hits",
                                workload={"cache_hit_rate": PUBLISHED_CACHE_HIT_RATE},
                                description="DeepSeek-V3/R1 prefill unit, Day-6 cache-hit rate applied")


def day6_mean_prompt_len() -> int:
    """Day 6's mean prompt (input tokens incl. cache hits per request) from its published token totals and KV length
    per output token, outputs exponential (``workload/prompt_lengths.py``): 3,909 tokens."""
    return round(mean_prompt_from_kv_length(PUBLISHED_KV_LEN_PER_OUTPUT_TOKEN, PUBLISHED_DAY_INPUT_TOKENS,
                                            PUBLISHED_DAY_OUTPUT_TOKENS, output_cv=1.0))


def prefill_day6_traffic() -> Scenario:
    """Day 6's traffic on the Day-6 prefill unit: the published 56.3 % cache hits and prompts of the mean Day 6's
    figures imply (``day6_mean_prompt_len``), exponentially distributed (cv 1: the maximum-entropy law given only a
    mean; DeepSeek publishes no distribution), so attention is priced over the mix of lengths."""
    return prefill_day6_cache_hits().with_(name="deepseek-v3-prefill-day6-traffic",
                                           workload={"prompt_len": day6_mean_prompt_len(), "prompt_len_cv": 1.0},
                                           description="DeepSeek-V3/R1 prefill unit on Day 6's traffic (cache hits, "
                                                       "prompt-length mix)")


def decode() -> Scenario:
    """V3 report §3.4.2: 320 H800, EP320 (256 routed + 64 redundant/shared slots, one per GPU), 2 micro-batches."""
    return Scenario(name="deepseek-v3-decode", model="deepseek-v3", topology="h800-deepseek",
                    parallel=ParallelDims(dp=320, ep=320),
                    workload=DecodeWorkload(context_len=4096, batch_per_gpu=128, micro_batches=2,
                                            redundant_experts=64, mtp=True, node_limit=4),
                    description="DeepSeek-V3 decode unit (V3 report §3.4.2), attention modelled as DP320",
                    sources=SOURCES)


def decode_day6() -> Scenario:
    """Day 6: EP144, MLA and shared expert DP144, 18 nodes, 32 redundant experts (2 routed per GPU), the
    published average KV length per output token (4,989)."""
    return decode().with_(name="deepseek-v3-decode-day6", parallel={"dp": 144, "ep": 144},
                          workload={"redundant_experts": 32, "context_len": round(PUBLISHED_KV_LEN_PER_OUTPUT_TOKEN)},
                          description="DeepSeek-V3/R1 decode unit (open-infra-index Day 6)")


def decode_tp4() -> Scenario:
    """V3 report §3.4.2 as written: 320 GPUs, attention TP4 + SP x DP80, EP320."""
    return decode().with_(name="deepseek-v3-decode-tp4", parallel={"dp": 80, "attn_tp": 4, "ep": 320},
                          workload={"batch_per_gpu": 32},
                          description="DeepSeek-V3 decode unit with TP4 + SP attention (V3 report §3.4.2)")


def infersim_prefill() -> Scenario:
    """profile-data prefill (InferSim's measured 7,839 tokens/s/GPU): EP32, DP32 attention, 16K tokens/GPU."""
    return Scenario(name="infersim-v3-prefill", model="deepseek-v3", topology="h800-deepseek",
                    parallel=ParallelDims(ep=32),
                    workload=PrefillWorkload(prompt_len=4096, tokens_per_gpu=16384, micro_batches=2, node_limit=4,
                                             comm_sms=PREFILL_COMM_SMS),
                    description="deepseek-ai/profile-data prefill setup (InferSim V3 example)", sources=SOURCES)


def infersim_decode() -> Scenario:
    """profile-data decode (InferSim's measured 2,324 tokens/s/GPU): EP128, 128 requests/GPU, 4K context."""
    return Scenario(name="infersim-v3-decode", model="deepseek-v3", topology="h800-deepseek",
                    parallel=ParallelDims(ep=128),
                    workload=DecodeWorkload(context_len=4096, batch_per_gpu=128, micro_batches=2, mtp=False,
                                            node_limit=4),
                    description="deepseek-ai/profile-data decode setup (InferSim V3 example)", sources=SOURCES)


def aggregated_h200() -> Scenario:
    """Aggregated serving (chunked prefill) on 32 H200, ISL 4000 / OSL 1000, the question AIConfigurator answers."""
    return Scenario(name="deepseek-v3-aggregated-h200", model="deepseek-v3", topology="h200-hgx",
                    parallel=ParallelDims(ep=32),
                    workload=AggregatedWorkload(prompt_len=4000, output_len=1000, batch_per_gpu=64, chunk_tokens=8192),
                    description="DeepSeek-V3 aggregated serving, 32 H200, chunked prefill", sources=SOURCES)


def all_serving() -> dict[str, Scenario]:
    return {s.name: s for s in (prefill(), prefill_day6(), prefill_day6_cache_hits(), prefill_day6_traffic(),
                                decode(), decode_day6(), decode_tp4(), infersim_prefill(), infersim_decode(),
                                aggregated_h200())}


DEFAULT = all_serving
