"""Decode instance (DeepSeek-V3 §3.4.2; deepseek-ai/profile-data decode: EP128, 128 requests per GPU, 4K context).

Attention data-parallel (``attn_tp`` = 1: each GPU holds all attention weights and its requests' latent cache,
Day-6 layout) or TP + SP inside replicas of ``attn_tp`` GPUs (V3 §3.4.2: TP4), MoE with EP groups of ``ep``
GPUs, DeepEP low-latency all-to-all that holds no SMs (profile-data README), so computation keeps every SM.

A step: ``batch_per_gpu`` requests split into ``micro_batches`` chains (1: no overlap, the all-to-all is
exposed; 2: DeepSeek's two-micro-batch overlap; more: the same with smaller batches), each a forward of all
layers priced kernel by kernel from first principles (``decode_ops``: weight-read-bound GEMMs at the H200
tables' small-M streaming rate, FlashMLA-class attention, CUDA-graph launch cost per kernel; each chain reads
the weights again). The all-to-all is the busiest link's bytes / capacity + path latency + kernel latency over
DeepEP's low-latency paths (``ll_transport``: NVLink inside a node or pure RDMA; ``sim.deepep.ll_link_bound``).

MTP (V3 §5.4.3), priced as DeepSeek's serving verifies a draft: the main model runs q = 2 tokens per request
(the pending token and the MTP draft); FlashMLA reads each request's cache once for both query tokens, GEMMs
at small M cost their weight reads whatever M, so verification is nearly free where decode is weight- or
cache-bound; the all-to-all carries 2x the tokens. The MTP module (one more layer on the 2 positions and the
head on 1) drafts the next token. A step yields 1 + acceptance tokens per request.
Batch per GPU is bounded by the KV cache: (HBM x (1 - reserve) - weights) / (attn_tp x context x latent bytes
per token): the latent cache (one KV head) is replicated on the attn_tp ranks of a TP replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dsv3sim.config.errors import InfeasibleError
from dsv3sim.config.scenario import DecodeWorkload, Scenario
from dsv3sim.cost.kvcache import GQA_REFERENCES, kv_cache_bytes_per_token, max_batch_at_context
from dsv3sim.results import Infeasible, ServingResult
from dsv3sim.sim.deepep import ep_counts, ll_link_bound
from dsv3sim.workload import comm as C
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload.decode_ops import decode_constants, decode_layer_kernels, head_kernels, slice_times
from dsv3sim.workload.overlap import run_chunks
from dsv3sim.workload.serving import (
    PUBLISHED_MTP_ACCEPTANCE,
    Instance,
    events_of,
    kv_capacity,
    load_fields,
    mtp_plan,
    open_instance,
    parallel_fields,
    plan_key,
    serving_weight_dtype,
    weights_per_gpu,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeStep:
    """One decode step on one GPU (all micro-batches)."""

    time_s: float
    layers: list[dict[str, float]]  # per layer (+ MTP layer, head) slice times of one micro-batch
    exposed_comm_s: float
    comm: dict
    run: object
    lr: object
    requests_per_micro_batch: int
    q: int


def ll_comm(topo, key, *, kind: str, dtype: str, hidden: int, transport: str) -> tuple[float, dict]:
    """Low-latency dispatch or combine of one micro-batch over ``transport`` (link-load bound)."""
    plan = C.ep_plan(**dict(key))
    c = ep_counts(topo, tuple(range(plan.routing.shape[0])), plan.routing, plan.n_physical)
    t, by = ll_link_bound(topo, c, kind=kind, dtype=dtype, hidden=hidden, transport=transport)
    return t, {"time_s": t, "bytes_by_class": by, "mode": "low-latency", "transport": transport,
               "method": "link-load bound"}


def decode_step(scn: Scenario, cfg, p, topo, gpu: str, w, *, requests: int, q: int) -> DecodeStep:
    """Simulate one step of ``requests`` per GPU (split over ``w.micro_batches``) with ``q`` tokens each.
    ValueError when the routing cannot be planned."""
    ep, n_mb = p.ep, w.micro_batches
    n_phys = cfg.n_routed_experts + w.redundant_experts
    r_mb = max(1, requests // n_mb)
    mb_tokens = r_mb * q
    lr = LR.layer_routing(plan_key(cfg, w, ep, topo.cfg.gpus_per_node, mb_tokens, scn.seed),
                          LR.moe_positions(cfg, cfg.num_hidden_layers), w.routing_layers)
    key = lr.keys[0]
    comm, info = {}, {}
    for name, kind, dt in (("dispatch(F)", "dispatch", w.dispatch_dtype), ("combine(F)", "combine", "bf16")):
        if ep == 1:
            comm[name], info[name] = 0.0, {"time_s": 0.0, "bytes_by_class": {}, "method": "no EP"}
            continue
        comm[name], info[name] = ll_comm(topo, key, kind=kind, dtype=dt, hidden=cfg.hidden_size,
                                         transport=w.ll_transport)
    comm_by_r = LR.layer_comm(topo, lr, comm, {"dispatch(F)": ("dispatch", "low-latency", w.dispatch_dtype),
                                               "combine(F)": ("combine", "low-latency", "bf16")}, cfg.hidden_size,
                              latency=topo.cfg.kernel_latency) if ep > 1 else {}
    # TP + SP attention: all-gather [tokens x tp, H] before attention, reduce-scatter after (BF16, NVLink ring)
    sp_t = 2 * C.ring_time(topo, p.attn_tp, mb_tokens * p.attn_tp * cfg.hidden_size * 2.0, cross_node=False)
    layers = []
    for i in range(cfg.num_hidden_layers):
        r = lr.routing_of(i)
        ks = decode_layer_kernels(cfg, i, gpu=gpu, requests=r_mb, q=q, context=w.context_len,
                                  expert_rows=lr.plans[r].rows_max, local_experts=n_phys // ep,
                                  gemm_dtype=w.gemm_dtype, kv_dtype_bytes=w.kv_dtype_bytes, attn_tp=p.attn_tp, ep=ep,
                                  expert_weight_dtype=serving_weight_dtype(cfg, w.gemm_dtype))
        d = slice_times(ks)
        d["attn(F)"] += sp_t
        if cfg.is_moe_layer(i) and ep > 1:
            d.update(comm_by_r[r])
        layers.append(d)
    heads = [head_kernels(cfg, gpu=gpu, tokens=mb_tokens, attn_tp=p.attn_tp)]
    if q == 2:  # MTP module: embed + project, one more layer on the 2 positions, head on the drafted position
        layers.append(dict(layers[-1]))
        heads.append(head_kernels(cfg, gpu=gpu, tokens=r_mb, attn_tp=p.attn_tp))
    layers.append({"attn(F)": sum(slice_times(h)["attn(F)"] for h in heads)})
    run = run_chunks([("F", layers)] * n_mb, record=scn.record, tags=[str(j) for j in range(n_mb)])
    return DecodeStep(time_s=run.time_s, layers=layers, exposed_comm_s=run.exposed_comm_s, comm=info, run=run, lr=lr,
                      requests_per_micro_batch=r_mb, q=q)


def kv_budget(cfg, p, w, perf) -> tuple[float, float, int]:
    """(weights bytes, KV budget bytes, max requests per GPU) at ``w.context_len``."""
    n_phys = cfg.n_routed_experts + w.redundant_experts
    wbytes = weights_per_gpu(cfg, n_phys, p.ep, serving_weight_dtype(cfg, w.gemm_dtype), p.attn_tp)
    budget = perf.hbm_bytes * (1 - w.memory_reserve_fraction) - wbytes
    # the latent cache is replicated on the attn_tp ranks; sliding-window layers cap at W
    max_batch = max_batch_at_context(cfg, budget, w.context_len, w.kv_dtype_bytes, replicas=p.attn_tp)
    return wbytes, budget, max_batch


def simulate_decode(scn: Scenario) -> ServingResult | Infeasible:
    t0 = time.perf_counter()
    inst = open_instance(scn, "decode", DecodeWorkload)
    if isinstance(inst, Infeasible):
        return inst
    w, cfg, p = inst.w, inst.cfg, inst.p
    fit = _decode_batch(scn, inst)
    if isinstance(fit, Infeasible):
        return fit
    batch, wbytes, budget, max_batch = fit
    acc, acc_src, q = mtp_plan(cfg, w)
    try:
        st = decode_step(scn, cfg, p, inst.topo, inst.gpu, w, requests=batch, q=q)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind="decode", reason=e.reason)
    return _decode_result(scn, inst, st, acc=acc, acc_src=acc_src, wbytes=wbytes, budget=budget, max_batch=max_batch,
                          t0=t0)


def _decode_batch(scn: Scenario, inst: Instance) -> tuple[int, float, float, int] | Infeasible:
    """(requests per GPU, weights bytes, KV budget bytes, max requests per GPU), or Infeasible when the experts,
    the KV cache or the micro-batches do not fit."""
    w, cfg, p = inst.w, inst.cfg, inst.p
    ep = p.ep
    n_phys = cfg.n_routed_experts + w.redundant_experts
    if n_phys % ep:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"EP degree {ep} does not divide {cfg.n_routed_experts} experts + "
                                 f"{w.redundant_experts} redundant = {n_phys}")
    wbytes, budget, max_batch = kv_budget(cfg, p, w, inst.perf)
    kv_tok = kv_cache_bytes_per_token(cfg, w.kv_dtype_bytes, context=w.context_len)
    if max_batch < w.micro_batches:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"does not fit: KV budget {budget / 2**30:.1f} GiB holds {max_batch} requests of "
                                 f"{w.context_len} tokens ({kv_tok} B/token, attn_tp {p.attn_tp})")
    batch = max_batch if w.batch_per_gpu is None else w.batch_per_gpu
    if batch > max_batch:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"batch {batch} per GPU exceeds KV capacity {max_batch} at context {w.context_len} "
                                 f"({budget / 2**30:.1f} GiB free after {wbytes / 2**30:.1f} GiB weights)")
    if batch < w.micro_batches:
        return Infeasible(scenario=scn.name, kind="decode",
                          reason=f"batch {batch} per GPU cannot fill {w.micro_batches} micro-batches")
    return batch, wbytes, budget, max_batch


def _decode_result(scn: Scenario, inst: Instance, st: DecodeStep, *, acc: float, acc_src: str, wbytes: float,
                   budget: float, max_batch: int, t0: float) -> ServingResult:
    w, cfg, p, topo, gpu, perf = inst.w, inst.cfg, inst.p, inst.topo, inst.gpu, inst.perf
    kv_tok = kv_cache_bytes_per_token(cfg, w.kv_dtype_bytes, context=w.context_len)
    run_batch = st.requests_per_micro_batch * w.micro_batches  # requests actually run
    step = st.time_s
    per_gpu = run_batch * (1.0 + acc) / step
    tpot = step / (1.0 + acc)
    metrics = {"decode_tokens_per_s_per_node": per_gpu * topo.cfg.gpus_per_node, "decode_tokens_per_s_per_gpu": per_gpu,
               "tpot_s": tpot, "step_time_s_decode": step, "tokens_per_s_per_request": 1.0 / tpot,
               "batch_per_gpu": run_batch, "max_batch_per_gpu_kv": max_batch, "mtp_acceptance": acc,
               "mtp_acceptance_source": acc_src, "mtp_acceptance_published": list(PUBLISHED_MTP_ACCEPTANCE),
               "tokens_per_request_per_step": st.q, "exposed_communication_s": st.exposed_comm_s,
               "context_len": w.context_len, "request_time_s": w.output_len * tpot}
    kv = {"kv_bytes_per_token": kv_tok, "kv_budget_bytes_per_gpu": budget,
          "kv_memory_bytes": run_batch * p.attn_tp * w.context_len * kv_tok, "max_batch_at_context": max_batch,
          "context_len": w.context_len, "kv_layers_fraction": 1.0,
          "kv_compare_models": {m: kv_capacity(m, gpu, w.context_len) for m in (scn.model,) + GQA_REFERENCES}}
    return ServingResult(
        scenario=scn.name, kind="decode", model=scn.model, topology=topo.cfg.name, gpu=gpu, n_gpus=inst.world,
        n_nodes=inst.world / topo.cfg.gpus_per_node, parallel=parallel_fields(p, w, p.ep),
        metrics=metrics, layer_time_s=st.layers[cfg.num_hidden_layers - 1], kv=kv,
        memory_per_gpu=[{"rank": 0, "weights_bytes": wbytes, "kv_cache_bytes": kv["kv_memory_bytes"],
                         "hbm_bytes": perf.hbm_bytes}],
        **load_fields(st.lr, w.node_limit),
        comm=st.comm, timeline={"events": events_of(st.run)},
        sources=(f"GPU {gpu}: {perf.source}", f"MTP acceptance: {acc_src}", f"decode kernels: {decode_constants().source}"),
        sim_wall_s=time.perf_counter() - t0)
