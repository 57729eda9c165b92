"""Serving: one prefill instance and one decode instance of DeepSeek-V3, as DeepSeek deploys them.

Prefill (DeepSeek-V3 §3.4.1; deepseek-ai/profile-data prefill: EP32, 4K prompts, 16K tokens per GPU): attention
with ``attn_tp``-way TP + sequence parallelism inside ``dp`` replicas, MoE with EP over all GPUs (redundant
experts placed by EPLB), two micro-batches whose computation hides each other's all-to-all (DeepEP normal
kernels on ``comm_sms`` SMs). The forward of all layers for the two micro-batches is one event simulation
(``overlap.run_chunks`` with two forward chains); dispatch/combine times come from the network simulation.
TP all-gather/reduce-scatter of SP (per layer, NVLink ring, alpha-beta) are added to attention.

Decode (V3 §3.4.2; profile-data decode: EP128, 128 requests per GPU, 4K context): DP attention (each GPU
holds all attention weights and its requests' latent KV cache), EP over all GPUs, two micro-batches overlapped,
DeepEP low-latency all-to-all that holds no SMs (profile-data README) so computation keeps every SM; the
all-to-all time is the busiest link's bytes / capacity + path latency (``comm.ep_link_bound``: the event
simulation of a few hundred GPUs' per-expert messages is too slow to run per configuration). Batch per GPU is
bounded by the KV cache: (HBM x (1 - reserve) - weights) / (context x latent bytes per token).
MTP speculative decoding (V3 §5.4.3): each step runs the main model on 2 tokens per request plus the MTP
module, and yields 1 + acceptance tokens per request.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.config.scenario import DecodeWorkload, PrefillWorkload, Scenario
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token
from dsv3sim.cost.memory import checkpoint_weight_dtype, routed_expert_bytes, weight_bytes
from dsv3sim.results import Infeasible, ServingResult
from dsv3sim.workload import comm as C
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload.kernels import gpu_perf
from dsv3sim.workload.layer_ops import decode_layer, head_slices, prefill_layer
from dsv3sim.workload.overlap import run_chunks

MTP_MEASUREMENT = Path(__file__).parent / "data" / "mtp_acceptance.json"
GQA_REFERENCES = ("qwen2.5-72b", "llama3-70b")  # dense GQA models for the KV-capacity comparison
PUBLISHED_MTP_ACCEPTANCE = (0.85, 0.90)  # DeepSeek-V3 report §5.4.3: second-token acceptance 85-90 %


@lru_cache(maxsize=1)
def measured_mtp_acceptance() -> tuple[float, str]:
    """(acceptance, source) from the committed ``dsv3sim generate --speculative mtp --json`` measurement."""
    d = json.loads(MTP_MEASUREMENT.read_text())
    return float(d["mtp_acceptance_rate"]), str(d.get("source", MTP_MEASUREMENT.name))


def _plan_key(cfg: ModelConfig, w, ep: int, gpn: int, tokens: int, seed: int) -> tuple:
    placement = "eplb" if w.redundant_experts else w.placement
    return tuple(sorted({
        "n_experts": cfg.n_routed_experts, "topk": cfg.num_experts_per_tok, "ep": ep, "gpus_per_node": gpn,
        "tokens_per_rank": tokens, "node_limit": w.node_limit, "trace": w.routing_trace, "placement": placement,
        "redundant": w.redundant_experts, "seed": seed, "n_group": cfg.n_group}.items()))


def _load_fields(lr: LR.LayerRouting, node_limit: int | None) -> dict:
    """The result's expert-load and nodes-per-token fields from the layer routings (computed once)."""
    ld = lr.loads()
    return {"expert_load_before": ld["expert_load_before"], "expert_load_after": ld["expert_load_after"],
            "expert_load_logical": ld["expert_load_logical"],
            "nodes_per_token": {"hist": ld["nodes_per_token_hist"], "node_limit": node_limit,
                                "routing_layers": len(lr), "n_group": dict(lr.keys[0]).get("n_group")}}


def _weights_per_gpu(cfg: ModelConfig, n_phys: int, ep: int, dtype: str) -> float:
    """Weights on one GPU: attention, norms, router, shared experts, embedding and head replicated (DP),
    routed experts n_phys / ep per MoE layer. FP8 for the decoder linears (V3 §3.3.2 checkpoint layout); MXFP4
    experts for a model published so (gpt-oss)."""
    total = weight_bytes(cfg, dtype)
    per_expert = routed_expert_bytes(cfg, dtype)  # FP8 + 128x128 scales / MXFP4 + E8M0 per 32 / BF16
    routed = cfg.n_moe_layers * cfg.n_routed_experts * per_expert
    return total - routed + cfg.n_moe_layers * (n_phys / ep) * per_expert


def _serving_weight_dtype(cfg: ModelConfig, gemm_dtype: str) -> str:
    """Weights as deployed: MXFP4 experts when the model is published so (gpt-oss), else the GEMM dtype."""
    if checkpoint_weight_dtype(cfg) == "mxfp4":
        return "mxfp4"
    return "fp8" if gemm_dtype == "fp8" else "bf16"


def simulate_serving(scn: Scenario) -> ServingResult | Infeasible:
    w = scn.workload
    if isinstance(w, PrefillWorkload):
        return _prefill(scn)
    if isinstance(w, DecodeWorkload):
        return _decode(scn)
    raise ValueError(f"simulate_serving needs a prefill or decode workload, got {type(w).__name__}")


def _common(scn: Scenario):
    cfg = load_model_config(scn.model)
    p = scn.parallel
    world = p.dp * p.attn_tp
    topo = C.build_topology(scn.topology, scn.gpu, scn.perturb, world)
    if p.ep != world:
        raise ValueError(f"EP degree {p.ep} != GPUs {world} (dp*attn_tp)")
    return cfg, p, world, topo, topo.cfg.gpu


def _prefill(scn: Scenario) -> ServingResult | Infeasible:
    t0 = time.perf_counter()
    w = scn.workload
    assert isinstance(w, PrefillWorkload)
    try:
        cfg, p, world, topo, gpu = _common(scn)
    except ValueError as e:
        return Infeasible(scenario=scn.name, kind="prefill", reason=str(e))
    perf = gpu_perf(gpu)
    ep = p.ep
    mb_tokens = w.tokens_per_gpu // w.micro_batches
    try:
        lr = LR.layer_routing(_plan_key(cfg, w, ep, topo.cfg.gpus_per_node, mb_tokens, scn.seed),
                              LR.moe_positions(cfg, cfg.num_hidden_layers), w.routing_layers)
        key, plan = lr.keys[0], lr.plans[0]
    except ValueError as e:
        return Infeasible(scenario=scn.name, kind="prefill", reason=str(e))
    comm, comm_info = {}, {}
    for name, kind, dt in (("dispatch(F)", "dispatch", w.dispatch_dtype), ("combine(F)", "combine", "bf16")):
        if scn.comm_model == "bound":
            t_b, by = C.ep_link_bound(topo, key, kind=kind, mode="normal", dtype=dt, hidden=cfg.hidden_size)
            comm[name] = t_b
            comm_info[name] = {"time_s": t_b, "bytes_by_class": by, "method": "busiest-link bound"}
        else:
            r = C.ep_comm(topo, key, kind=kind, mode="normal", dtype=dt, hidden=cfg.hidden_size, fast=scn.fast)
            comm[name] = r.time_s
            comm_info[name] = dict(r.to_dict(), method="event simulation")
    comm_by_r = LR.layer_comm(topo, lr, comm, {"dispatch(F)": ("dispatch", "normal", w.dispatch_dtype),
                                               "combine(F)": ("combine", "normal", "bf16")}, cfg.hidden_size)
    frac = (perf.n_sms - topo.cfg.comm_sms) / perf.n_sms
    # TP + SP attention: all-gather the sequence shard before attention, reduce-scatter after (BF16, NVLink)
    tp_bytes = mb_tokens * p.attn_tp * cfg.hidden_size * 2.0
    tp_t = 2 * C.ring_time(topo, p.attn_tp, tp_bytes, cross_node=False)
    layers = []
    for i in range(cfg.num_hidden_layers):
        r = lr.routing_of(i)
        s = prefill_layer(cfg, i, gpu=gpu, tokens=mb_tokens, seq_len=w.prompt_len, expert_rows=lr.plans[r].rows_max,
                          local_experts=plan.n_physical // ep, gemm_dtype=w.gemm_dtype, sm_fraction=frac)
        d = dict(s.times_partial)
        d["attn(F)"] = d.get("attn(F)", 0.0) + tp_t
        if cfg.is_moe_layer(i):
            d.update(comm_by_r[r])
        layers.append(d)
    head = head_slices(cfg, gpu=gpu, tokens=mb_tokens, sm_fraction=frac)
    layers.append({"attn(F)": head.times_partial["attn(F)"]})
    run = run_chunks([("F", layers), ("F", layers)])
    t_fwd = run.time_s
    tok_per_gpu_s = w.tokens_per_gpu / t_fwd
    n_nodes = world / topo.cfg.gpus_per_node
    per_node = tok_per_gpu_s * topo.cfg.gpus_per_node
    wbytes = _weights_per_gpu(cfg, plan.n_physical, ep, _serving_weight_dtype(cfg, w.gemm_dtype))
    metrics = {"prefill_tokens_per_s_per_node": per_node, "prefill_tokens_per_s_per_gpu": tok_per_gpu_s,
               "ttft_s": t_fwd, "forward_time_s": t_fwd, "exposed_communication_s": run.exposed_comm_s,
               "tokens_per_gpu": w.tokens_per_gpu, "prompt_len": w.prompt_len}
    events = [{"rank": 0, "stream": s.stream, "name": s.name, "start_s": s.start, "end_s": s.end, "layer": s.layer,
               "microbatch": 0 if s.chunk == "F" else 1} for s in run.slices]
    return ServingResult(
        scenario=scn.name, kind="prefill", model=scn.model, topology=topo.cfg.name, gpu=gpu, n_gpus=world,
        n_nodes=n_nodes, parallel={"dp": p.dp, "attn_tp": p.attn_tp, "ep": ep, "redundant_experts": w.redundant_experts,
                                   "micro_batches": w.micro_batches},
        metrics=metrics, layer_time_s={k: v for k, v in layers[-2].items()},
        kv={"kv_bytes_per_token": kv_cache_bytes_per_token(cfg, context=w.prompt_len)},
        memory_per_gpu=[{"rank": 0, "weights_bytes": wbytes, "hbm_bytes": perf.hbm_bytes}],
        **_load_fields(lr, w.node_limit),
        comm=comm_info, timeline={"events": events},
        sources=(f"GPU {gpu}: {perf.source}",) + tuple(sorted(set(head.sources))),
        sim_wall_s=time.perf_counter() - t0)


def _decode(scn: Scenario) -> ServingResult | Infeasible:
    t0 = time.perf_counter()
    w = scn.workload
    assert isinstance(w, DecodeWorkload)
    try:
        cfg, p, world, topo, gpu = _common(scn)
    except ValueError as e:
        return Infeasible(scenario=scn.name, kind="decode", reason=str(e))
    perf = gpu_perf(gpu)
    ep = p.ep
    n_phys = cfg.n_routed_experts + w.redundant_experts
    if n_phys % ep:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"EP degree {ep} does not divide {cfg.n_routed_experts} experts + "
                                 f"{w.redundant_experts} redundant = {n_phys}")
    wdt = _serving_weight_dtype(cfg, w.gemm_dtype)
    wbytes = _weights_per_gpu(cfg, n_phys, ep, wdt)
    kv_tok = kv_cache_bytes_per_token(cfg, w.kv_dtype_bytes, context=w.context_len)
    budget = perf.hbm_bytes * (1 - w.memory_reserve_fraction) - wbytes
    max_batch = int(budget // (w.context_len * kv_tok)) if budget > 0 else 0
    if max_batch < w.micro_batches:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"does not fit: KV budget {budget / 2**30:.1f} GiB holds {max_batch} requests of "
                                 f"{w.context_len} tokens ({kv_tok} B/token)")
    batch = max_batch if w.batch_per_gpu is None else w.batch_per_gpu
    if batch > max_batch:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"batch {batch} per GPU exceeds KV capacity {max_batch} at context {w.context_len} "
                                 f"({budget / 2**30:.1f} GiB free after {wbytes / 2**30:.1f} GiB weights)")
    if w.mtp and cfg.num_nextn_predict_layers:
        if w.mtp_acceptance is None:
            acc, acc_src = measured_mtp_acceptance()
        else:
            acc, acc_src = w.mtp_acceptance, "scenario"
        q = 2  # main model verifies the pending token and the MTP draft
    else:
        acc, acc_src, q = 0.0, "no MTP", 1
    mb_tokens = max(1, batch * q // w.micro_batches)
    try:
        lr = LR.layer_routing(_plan_key(cfg, w, ep, topo.cfg.gpus_per_node, mb_tokens, scn.seed),
                              LR.moe_positions(cfg, cfg.num_hidden_layers), w.routing_layers)
        key = lr.keys[0]
    except ValueError as e:
        return Infeasible(scenario=scn.name, kind="decode", reason=str(e))
    comm = {}
    comm_bytes = {}
    for name, kind in (("dispatch(F)", "dispatch"), ("combine(F)", "combine")):
        t, by = C.ep_link_bound(topo, key, kind=kind, mode="low-latency",
                                dtype=w.dispatch_dtype if kind == "dispatch" else "bf16", hidden=cfg.hidden_size)
        comm[name] = t + topo.cfg.kernel_latency
        comm_bytes[name] = {"time_s": t, "bytes_by_class": by, "mode": "low-latency", "method": "link-load bound"}
    comm_by_r = LR.layer_comm(topo, lr, comm, {"dispatch(F)": ("dispatch", "low-latency", w.dispatch_dtype),
                                               "combine(F)": ("combine", "low-latency", "bf16")}, cfg.hidden_size,
                              latency=topo.cfg.kernel_latency)
    layers = []
    for i in range(cfg.num_hidden_layers):
        r = lr.routing_of(i)
        s = decode_layer(cfg, i, gpu=gpu, batch=mb_tokens, context=w.context_len, expert_rows=lr.plans[r].rows_max,
                         local_experts=n_phys // ep, gemm_dtype=w.gemm_dtype, kv_dtype_bytes=w.kv_dtype_bytes)
        d = dict(s.times)
        if cfg.is_moe_layer(i):
            d.update(comm_by_r[r])
        layers.append(d)
    if q == 2:  # MTP module: one more MoE layer on the draft position
        layers.append(dict(layers[-1]))
    head = head_slices(cfg, gpu=gpu, tokens=mb_tokens, sm_fraction=1.0, n_heads=q)
    layers.append({"attn(F)": head.times["attn(F)"]})
    run = run_chunks([("F", layers), ("F", layers)])
    step = run.time_s
    tok_per_step = batch * (1.0 + acc)
    per_gpu = tok_per_step / step
    per_node = per_gpu * topo.cfg.gpus_per_node
    tpot = step / (1.0 + acc)
    metrics = {"decode_tokens_per_s_per_node": per_node, "decode_tokens_per_s_per_gpu": per_gpu, "tpot_s": tpot,
               "step_time_s_decode": step, "tokens_per_s_per_request": 1.0 / tpot, "batch_per_gpu": batch,
               "max_batch_per_gpu_kv": max_batch, "mtp_acceptance": acc, "mtp_acceptance_source": acc_src,
               "mtp_acceptance_published": list(PUBLISHED_MTP_ACCEPTANCE),
               "exposed_communication_s": run.exposed_comm_s, "context_len": w.context_len,
               "request_time_s": w.output_len * tpot}
    kv = {"kv_bytes_per_token": kv_tok, "kv_budget_bytes_per_gpu": budget,
          "kv_memory_bytes": batch * w.context_len * kv_tok, "max_batch_at_context": max_batch,
          "context_len": w.context_len, "kv_layers_fraction": 1.0,
          "kv_compare_models": {m: kv_capacity(m, gpu, w.context_len) for m in (scn.model,) + GQA_REFERENCES}}
    events = [{"rank": 0, "stream": s.stream, "name": s.name, "start_s": s.start, "end_s": s.end, "layer": s.layer,
               "microbatch": 0 if s.chunk == "F" else 1} for s in run.slices]
    return ServingResult(
        scenario=scn.name, kind="decode", model=scn.model, topology=topo.cfg.name, gpu=gpu, n_gpus=world,
        n_nodes=world / topo.cfg.gpus_per_node,
        parallel={"dp": p.dp, "attn_tp": p.attn_tp, "ep": ep, "redundant_experts": w.redundant_experts,
                  "micro_batches": w.micro_batches},
        metrics=metrics, layer_time_s=layers[cfg.num_hidden_layers - 1], kv=kv,
        memory_per_gpu=[{"rank": 0, "weights_bytes": wbytes, "kv_cache_bytes": kv["kv_memory_bytes"],
                         "hbm_bytes": perf.hbm_bytes}],
        **_load_fields(lr, w.node_limit),
        comm=comm_bytes, timeline={"events": events},
        sources=(f"GPU {gpu}: {perf.source}", f"MTP acceptance: {acc_src}"),
        sim_wall_s=time.perf_counter() - t0)


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
            "max_requests_per_node": int(budget // (kv * context)) if budget > 0 else 0,
            "max_tokens_per_node": int(budget // kv) if budget > 0 else 0}
