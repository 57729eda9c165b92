"""Serving: prefill, decode and aggregated (prefill + decode on the same GPUs) instances of DeepSeek-V3-class
models, and what they share: the layout check, the weights per GPU, the routing plan key, the MTP acceptance.

- Prefill (``workload/prefill.py``; DeepSeek-V3 §3.4.1, deepseek-ai/profile-data prefill): DeepEP normal
  all-to-all (event-simulated), ``micro_batches`` chains overlapping each other's communication.
- Decode (``workload/decode.py``; V3 §3.4.2, profile-data decode): kernels priced from first principles
  (``decode_ops.py``), DeepEP low-latency all-to-all (no SMs held), MTP verification.
- Aggregated (``workload/aggregated.py``): SGLang / vLLM's default: chunked prefill inside the decode batch.

Layout: ``dp`` attention replicas of ``attn_tp`` GPUs each (world = dp x attn_tp GPUs; dp follows the GPU count
unless set, config/scenario.py), MoE with EP groups of ``ep`` GPUs (ep divides world: world / ep groups of the
same routing; one group is simulated, exact when groups share no link).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dsv3sim.config.errors import InfeasibleError
from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.config.scenario import Scenario
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token, max_batch_at_context
from dsv3sim.cost.memory import checkpoint_weight_dtype, routed_expert_bytes, weight_bytes
from dsv3sim.results import Infeasible
from dsv3sim.workload import comm as C
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload.kernels import gpu_perf
from dsv3sim.workload.layer_ops import attention_linears

MTP_MEASUREMENT = Path(__file__).parent / "data" / "mtp_acceptance.json"
PUBLISHED_MTP_ACCEPTANCE = (0.85, 0.90)  # DeepSeek-V3 report §5.4.3: second-token acceptance 85-90 %
DEFAULT_MTP_ACCEPTANCE = sum(PUBLISHED_MTP_ACCEPTANCE) / 2
DEFAULT_MTP_SOURCE = "DeepSeek-V3 report §5.4.3: 85-90 % second-token acceptance (midpoint)"


def mtp_acceptance(w) -> tuple[float, str]:
    """(acceptance, source) a decode or aggregated workload uses: the scenario's value with its citation, else
    DeepSeek's published 85-90 % (midpoint). The CPU-measured tiny-model value stays in ``MTP_MEASUREMENT``."""
    if w.mtp_acceptance is None:
        return DEFAULT_MTP_ACCEPTANCE, DEFAULT_MTP_SOURCE
    return float(w.mtp_acceptance), w.mtp_acceptance_source or "scenario"


@lru_cache(maxsize=1)
def measured_mtp_acceptance() -> tuple[float, str]:
    """(acceptance, source) from the committed ``dsv3sim generate --speculative mtp --json`` measurement."""
    d = json.loads(MTP_MEASUREMENT.read_text())
    return float(d["mtp_acceptance_rate"]), str(d.get("source", MTP_MEASUREMENT.name))


def plan_key(cfg: ModelConfig, w, ep: int, gpn: int, tokens: int, seed: int) -> tuple:
    placement = "eplb" if w.redundant_experts else w.placement
    return tuple(sorted({
        "n_experts": cfg.n_routed_experts, "topk": cfg.num_experts_per_tok, "ep": ep, "gpus_per_node": gpn,
        "tokens_per_rank": tokens, "node_limit": w.node_limit, "trace": w.routing_trace, "placement": placement,
        "redundant": w.redundant_experts, "seed": seed, "n_group": cfg.n_group}.items()))


def load_fields(lr: LR.LayerRouting, node_limit: int | None) -> dict:
    """The result's expert-load and nodes-per-token fields from the layer routings (computed once)."""
    ld = lr.loads()
    return {"expert_load_before": ld["expert_load_before"], "expert_load_after": ld["expert_load_after"],
            "expert_load_logical": ld["expert_load_logical"],
            "nodes_per_token": {"hist": ld["nodes_per_token_hist"], "node_limit": node_limit,
                                "routing_layers": len(lr), "n_group": dict(lr.keys[0]).get("n_group")}}


def weights_per_gpu(cfg: ModelConfig, n_phys: int, ep: int, dtype: str, attn_tp: int = 1) -> float:
    """Weights on one GPU: attention, norms, router, shared experts, embedding and head replicated (DP),
    routed experts n_phys / ep per MoE layer. FP8 for the decoder linears (V3 §3.3.2 checkpoint layout); MXFP4
    experts for a model published so (gpt-oss). TP attention keeps 1 / attn_tp of the head-split projections
    (all but MLA's q_a / kv_a down-projections)."""
    total = weight_bytes(cfg, dtype)
    eb = 1.0 + 4.0 / 128**2 if dtype == "fp8" else 2.0  # attention linears: FP8 + 128x128 scales, else BF16
    per_expert = routed_expert_bytes(cfg, dtype)  # FP8 + 128x128 scales / MXFP4 + E8M0 per 32 / BF16
    routed = cfg.n_moe_layers * cfg.n_routed_experts * per_expert
    split = sum(k * n for name, k, n in attention_linears(cfg) if name not in ("q_a_proj", "kv_a_proj"))
    tp_saved = cfg.num_hidden_layers * split * eb * (1.0 - 1.0 / attn_tp)
    return total - routed + cfg.n_moe_layers * (n_phys / ep) * per_expert - tp_saved


def serving_weight_dtype(cfg: ModelConfig, gemm_dtype: str) -> str:
    """Weights as deployed: MXFP4 experts when the model is published so (gpt-oss), else the GEMM dtype."""
    if checkpoint_weight_dtype(cfg) == "mxfp4":
        return "mxfp4"
    return "fp8" if gemm_dtype == "fp8" else "bf16"


def common(scn: Scenario):
    """(model config, parallel dims, GPUs, topology, GPU name); InfeasibleError when the layout does not fit."""
    cfg = load_model_config(scn.model)
    p = scn.parallel
    world = p.dp * p.attn_tp
    topo = C.build_topology(scn.topology, scn.gpu, scn.perturb, world)
    if world % p.ep:
        raise InfeasibleError(f"EP degree {p.ep} does not divide the {world} GPUs (dp*attn_tp = {p.dp}*{p.attn_tp})")
    return cfg, p, world, topo, topo.cfg.gpu


@dataclass(frozen=True, slots=True)
class Instance:
    """A serving scenario's workload and layout, resolved once by ``open_instance``."""

    w: object
    cfg: ModelConfig
    p: object
    world: int
    topo: object
    gpu: str
    perf: object


def open_instance(scn: Scenario, kind: str, workload_type: type) -> Instance | Infeasible:
    """The opening every serving instance shares: the workload, the layout (``common``) and the GPU's figures;
    Infeasible of ``kind`` when the layout does not fit."""
    w = scn.workload
    assert isinstance(w, workload_type)
    try:
        cfg, p, world, topo, gpu = common(scn)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind=kind, reason=e.reason)
    return Instance(w, cfg, p, world, topo, gpu, gpu_perf(gpu))


def mtp_plan(cfg: ModelConfig, w) -> tuple[float, str, int]:
    """(acceptance, source, query tokens per request): q = 2 with MTP (the main model verifies the pending token
    and the MTP draft), else 1."""
    if w.mtp and cfg.num_nextn_predict_layers:
        acc, acc_src = mtp_acceptance(w)
        return acc, acc_src, 2
    return 0.0, "no MTP", 1


def parallel_fields(p, w, ep: int) -> dict:
    return {"dp": p.dp, "attn_tp": p.attn_tp, "ep": ep, "ep_groups": p.dp * p.attn_tp // ep,
            "redundant_experts": w.redundant_experts, "micro_batches": w.micro_batches}


def events_of(run) -> list[dict]:
    """Timeline events of a serving run; ``microbatch`` is the chain's index."""
    return [{"rank": 0, "stream": s.stream, "name": s.name, "start_s": s.start, "end_s": s.end, "layer": s.layer,
             "microbatch": int(s.chunk) if s.chunk.isdigit() else (0 if s.chunk == "F" else 1)} for s in run.slices]



def kv_capacity(cfg_name: str, gpu: str, context: int, *, n_gpus: int = 8, reserve: float = 0.1) -> dict:
    """Requests of ``context`` tokens whose KV cache fits one node of ``n_gpus`` GPUs — the MLA-vs-GQA study.

    Weights in the model's native dtype (FP8 for DeepSeek-V3's checkpoint, V3 §3.3.2; BF16 otherwise) spread
    over the node; one copy of each token's cache in the node (MLA with data-parallel attention keeps each
    request's latent on one GPU; GQA with TP shards its KV heads). BF16 cache. Pure arithmetic."""
    cfg = load_model_config(cfg_name)
    perf = gpu_perf(gpu)
    wdt = checkpoint_weight_dtype(cfg)
    w = weight_bytes(cfg, wdt)
    kv = kv_cache_bytes_per_token(cfg, 2, context=context)
    budget = n_gpus * perf.hbm_bytes * (1 - reserve) - w
    return {"model": cfg_name, "attention": cfg.attention, "gpu": gpu, "n_gpus": n_gpus, "context": context,
            "kv_bytes_per_token": kv, "weights_bytes": w, "weights_dtype": wdt, "kv_budget_bytes": budget,
            "max_requests_per_node": max_batch_at_context(cfg, budget, context),
            "max_tokens_per_node": int(budget // kv) if budget > 0 else 0}
