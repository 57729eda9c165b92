"""What one DeepEP normal-mode dispatch/combine costs beyond its data transfer, and what the transfer costs when it
runs beside the GEMMs instead of alone.

DeepEP's normal kernels (deepseek-ai/DeepEP docs/legacy.md; csrc/kernels/legacy/layout.cu, internode.cu), as
DeepSeek's training profile shows them on the communication stream (deepseek-ai/profile-data train.json):

    dispatch(F): get_dispatch_layout -> notify_dispatch -> dispatch        combine(F): cached_notify -> combine
    combine(B) : per-token FP8 cast -> cached_notify -> dispatch          dispatch(B): cached_notify -> combine

The simulated all-to-all (``comm.ep_comm`` / ``comm.ep_link_bound``) is the transfer alone, standalone, as
DeepEP's own benchmark measures it. Three terms are added here:

1. **layout** (dispatch only): ``get_dispatch_layout`` counts tokens per rank and expert from ``topk_idx``; each
   of its 256-thread blocks walks all T x k entries with one dependent global load per iteration, so it is
   latency-bound: ceil(T k / 256) x the loaded global-memory latency. The latency under load is calibrated
   (``LOADED_LOAD_LATENCY_S``; profile: 74-142 us for T=4096, k=8).
2. **notify**: counts are exchanged and the EP group meets at a barrier (NVLink + RDMA) before every transfer.
   Its first-principles part is the barrier's round trips (``barrier_latency``); what dominates in the profile
   is the wait for the slowest of the n EP ranks. Rank progress jitters: with a per-rank relative spread ``cv``
   of the compute done since the previous barrier ``t_ref``, the expected wait of a rank for the slowest of n
   is cv x t_ref x E[max of n standard normals] (order statistics, Blom's approximation). ``cv`` is calibrated
   on the profile (no first-principles value exists: it is the cluster's kernel-time jitter); the formula
   carries it to other EP sizes and chunk lengths.
3. **co-run slowdown** of the transfer when its ``comm_sms`` SMs run beside GEMMs and casts (L2/HBM and SM
   issue contention; DeepSeek-V3 §3.5 / ISCA'25 §4 describe the contention, no published model of its size):
   calibrated as the profile's mean transfer-kernel time over DeepEP's standalone time for the same bytes,
   referred to the time a GEMM actually ran beside the transfer (96 % of it in the profile).
   Alone, the SM share does not limit it: V3 §3.2.2 states that "only 20 SMs are sufficient to fully utilize the
   bandwidths of IB and NVLink"; not HBM: the transfer's own traffic (``interference``) is a few % of HBM
   bandwidth and the FP8 GEMMs beside it are compute-bound. No first-principles value of the contention exists.
   How it scales with the SMs the transfer holds (``corun_slowdown``): each SM of a DeepEP kernel keeps a fixed
   number of copies in flight, so by Little's law its throughput is requests in flight / latency. Alone, 20 SMs
   keep the links full; beside the GEMMs the memory latency grows and the throughput falls below the links' to
   N x (requests per SM) / latency, proportional to the N SMs the kernel holds. The profile measured it at
   N = ``TRACE_COMM_SMS`` (the grid of its transfer kernels): s(N) = max(1, s_trace x TRACE_COMM_SMS / N).
   DeepSeek's prefill profile runs its DeepEP kernels on 24 SMs (profile-data README figure: "Computation 108
   SMs, Communication 24 SMs"), so prefill's transfers slow by x1.25 beside the GEMMs where training's (20) slow
   by x1.50.

Calibration constants (all from profile-data train.json, extracted by benchmarks/extract_profile_data.py into
``data/profile_data_train.json``) are named ``TRACE_*`` below; everything else is computed.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# ----------------------------------------------------------------- calibration targets (profile-data train.json)
TRACE_EP = 64
TRACE_TOKENS = 4096
TRACE_NOTIFY_MEAN_S = 32.578e-3 / 16  # 16 notify kernels (4 per layer, 4 layers) on the DeepEP stream
TRACE_COMPUTE_STREAM_S = 118.2e-3  # compute-stream kernel time of the pair (4 layers, F+B+W)
TRACE_COMM_OPS = 16  # dispatch/combine per pair: 4 per layer
# transfer kernels alone (notify/layout/cast excluded), mean of 4 layers, seconds
TRACE_TRANSFER_S = {"dispatch(F)": 4.346e-3, "combine(B)": 3.405e-3, "dispatch(B)": 6.368e-3, "combine(F)": 5.994e-3}
TRACE_LAYOUT_S = 0.1025e-3
# DeepEP standalone (docs/legacy.md, H800 + CX7, EP64, 4096 tokens, FP8 dispatch / BF16 combine): logical RDMA
# bandwidth 51 GB/s dispatch, 50 GB/s combine, logical bytes = tokens x target nodes x token bytes; the profile's
# balanced routing sends each token to M = 4 nodes (2 experts each).
README_DISPATCH_BPS, README_COMBINE_BPS = 51e9, 50e9
TRACE_NODES_PER_TOKEN = 4
FP8_TOKEN_BYTES = 7168 + 7168 // 128 * 4  # hidden + one FP32 scale per 128 (DeepEP test_internode.py)
BF16_TOKEN_BYTES = 2 * 7168


def _standalone(name: str) -> float:
    fp8 = name in ("dispatch(F)", "combine(B)")
    b = FP8_TOKEN_BYTES if fp8 else BF16_TOKEN_BYTES
    return TRACE_TOKENS * TRACE_NODES_PER_TOKEN * b / (README_DISPATCH_BPS if fp8 else README_COMBINE_BPS)


# mean over the four transfers of (overlapped kernel time / standalone time): 1.83, 1.43, 1.36, 1.28 -> ~1.47
TRACE_CORUN_OBSERVED = sum(TRACE_TRANSFER_S[n] / _standalone(n) for n in TRACE_TRANSFER_S) / len(TRACE_TRANSFER_S)
# share of that transfer-kernel time with a compute kernel beside it (extract_profile_data.py:
# transfer_beside_compute_fraction). The slowdown applies only then (overlap.run_chunks: rate 1 / s beside a GEMM,
# 1 alone), so an observed ratio R = T_obs / T_alone with a share f beside gives 1 / R = f / s + (1 - f):
TRACE_TRANSFER_BESIDE_COMPUTE = 0.9634
CORUN_SLOWDOWN = TRACE_TRANSFER_BESIDE_COMPUTE / (1.0 / TRACE_CORUN_OBSERVED - 1.0 + TRACE_TRANSFER_BESIDE_COMPUTE)
# SMs of the profile's DeepEP transfer kernels (train.json: dispatch/combine grid = 20 blocks, one per SM)
TRACE_COMM_SMS = 20
THREADS_PER_BLOCK = 256  # get_dispatch_layout<256, 32, 8> (kNumThreads)
LOADED_LOAD_LATENCY_S = TRACE_LAYOUT_S / math.ceil(TRACE_TOKENS * 8 / THREADS_PER_BLOCK)  # ~0.8 us per iteration


def expected_max_normal(n: int) -> float:
    """E[max of n iid N(0,1)] (Blom 1958: Phi^-1((n - 0.375) / (n + 0.25))); 0 for n <= 1."""
    if n <= 1:
        return 0.0
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25))


# per-rank relative jitter of compute between two barriers, solved from the profile's mean notify time
NOTIFY_JITTER_CV = TRACE_NOTIFY_MEAN_S / ((TRACE_COMPUTE_STREAM_S / TRACE_COMM_OPS) * expected_max_normal(TRACE_EP))


def layout_time(tokens: int, topk: int) -> float:
    """``get_dispatch_layout``: latency-bound walk of topk_idx (item 1 of the module docstring)."""
    return math.ceil(tokens * topk / THREADS_PER_BLOCK) * LOADED_LOAD_LATENCY_S


def barrier_latency(rdma_latency_s: float, nvlink_latency_s: float, cross_node: bool) -> float:
    """Count exchange + barrier: one round trip over RDMA (between nodes) and one over NVLink (inside a node)."""
    return 2.0 * nvlink_latency_s + (2.0 * rdma_latency_s if cross_node else 0.0)


def notify_time(ep: int, t_ref: float, *, rdma_latency_s: float, nvlink_latency_s: float, cross_node: bool) -> float:
    """``notify_dispatch`` / ``cached_notify``: barrier round trips + expected wait for the slowest of ``ep`` ranks
    after ``t_ref`` seconds of compute since the previous barrier (item 2)."""
    if ep <= 1:
        return 0.0
    return barrier_latency(rdma_latency_s, nvlink_latency_s, cross_node) + \
        NOTIFY_JITTER_CV * t_ref * expected_max_normal(ep)


def corun_slowdown(comm_sms: int = TRACE_COMM_SMS) -> float:
    """The transfer's slowdown beside GEMMs when DeepEP holds ``comm_sms`` SMs (item 3: throughput in flight per
    SM / latency, so x TRACE_COMM_SMS / comm_sms; never faster than alone). 0 SMs (no partition): the profile's."""
    n = comm_sms if comm_sms > 0 else TRACE_COMM_SMS
    return max(1.0, CORUN_SLOWDOWN * TRACE_COMM_SMS / n)


def corun_extra(transfer: dict[str, float], comm_sms: int = TRACE_COMM_SMS) -> dict[str, float]:
    """Seconds a paired slice spends beyond its transfer alone because GEMMs run beside it (item 3)."""
    s = corun_slowdown(comm_sms)
    return {n: t * (s - 1.0) for n, t in transfer.items() if t > 0}


def paired_comm(transfer: dict[str, float], compute: dict[str, float], beside: dict[str, float] | None = None,
                **ep_args) -> dict[str, tuple[float, float]]:
    """Each comm slice of an overlapped pair as (alone, beside): beside = ``comm_slices(..., paired=True)`` (the
    paired notify and layout, the transfer slowed by the GEMMs beside it; pass it when already computed on this
    ``compute``), alone = the same without the co-run slowdown (``corun_extra``). ``ep_args``:
    ``ep_overhead_args``."""
    if beside is None:
        beside = comm_slices(transfer, compute, paired=True, **ep_args)
    extra = corun_extra(transfer, ep_args["comm_sms"])
    return {n: (t - extra.get(n, 0.0), t) for n, t in beside.items()}


FWD_COMPUTE = ("attn(F)", "mlp(F)")
BWD_COMPUTE = ("attn(B)", "mlp(B)")
PAIR_COMPUTE = FWD_COMPUTE + BWD_COMPUTE + ("attn(W)", "mlp(W)")


def comm_slices(transfer: dict[str, float], compute: dict[str, float], *, paired: bool, ep: int, tokens: int,
                topk: int, rdma_latency_s: float, nvlink_latency_s: float, cross_node: bool,
                comm_sms: int = TRACE_COMM_SMS) -> dict[str, float]:
    """One MoE layer's dispatch/combine slices as DeepEP runs them: layout (dispatch(F)) + notify + transfer.

    ``transfer``: standalone all-to-all times by slice name; ``compute``: the layer's compute slices (the
    partition's times when ``paired``). Alone (a lone F or B chunk) nothing runs beside the transfer and the
    previous barrier was one compute slice ago; in an overlapped pair the transfer is slowed by the GEMMs beside
    it (``corun_slowdown(comm_sms)``) and the comm stream meets a barrier once per slice of the two chunks' compute."""
    if paired:
        t_ref = {n: sum(compute.get(c, 0.0) for c in PAIR_COMPUTE) / 4.0 for n in transfer}
    else:
        f = sum(compute.get(c, 0.0) for c in FWD_COMPUTE) / 2.0
        b = sum(compute.get(c, 0.0) for c in BWD_COMPUTE) / 2.0
        t_ref = {n: f if n.endswith("(F)") else b for n in transfer}
    out = {}
    for n, t in transfer.items():
        if t <= 0:
            out[n] = t
            continue
        x = t * (corun_slowdown(comm_sms) if paired else 1.0)
        x += notify_time(ep, t_ref[n], rdma_latency_s=rdma_latency_s, nvlink_latency_s=nvlink_latency_s,
                         cross_node=cross_node)
        if n == "dispatch(F)":
            x += layout_time(tokens, topk)
        out[n] = x
    return out


def ep_overhead_args(topo, ep: int, tokens: int, topk: int, comm_sms: int | None = None) -> dict:
    """Arguments of ``comm_slices`` from the topology: EP size, barrier path latencies, the SMs
    DeepEP's kernels hold (``comm_sms``; None: the topology's)."""
    c = topo.cfg
    g = c.gpus_per_node
    cross = ep > g and c.n_nodes > 1
    rdma = topo.path_latency(topo.path(0, g)) if cross else 0.0
    nvl = topo.path_latency(topo.path(0, 1)) if g > 1 else 0.0
    return {"ep": ep, "tokens": tokens, "topk": topk, "rdma_latency_s": rdma, "nvlink_latency_s": nvl,
            "cross_node": cross, "comm_sms": c.comm_sms if comm_sms is None else comm_sms}
