"""Aggregated serving: prefill and decode on the same GPUs with chunked prefill (SGLang's and vLLM's default).

Every iteration on a GPU runs its decode batch (``batch_per_gpu`` requests, one token each, or 2 with MTP
verification) and up to ``chunk_tokens`` prompt tokens of waiting requests. Steady state: requests leave after
``output_len`` tokens, B (1 + acceptance) / output_len per iteration, and as many arrive, so each iteration must
compute P = B (1 + a) / output_len x prompt_len x (1 - cache_hit_rate) prompt tokens. If P exceeds
``chunk_tokens`` the GPU cannot keep B requests decoding: B falls to what chunk_tokens sustains
(``prefill_bound``).

Iteration time t_it(P) = t_decode(B) + t_chunk(P) - min(t_shared, t_chunk_mlp):
- t_decode: the decode step of B requests at mean context prompt_len + output_len / 2 (``decode.decode_step``:
  first-principles kernels, low-latency all-to-all).
- t_chunk(P): P tokens' share of a prefill forward of whole prompts (``prefill.simulate_prefill`` on
  max(P, prompt_len) tokens per GPU with the same layout, normal-mode all-to-all): a chunk at offset o of a
  prompt attends to o + its own tokens, so over a prompt's chunks the attention FLOPs are the prompt's causal
  FLOPs; per token the forward costs what whole prompts cost.
- t_shared (``fused_weight_read_overlap_s``): the decode step's weight-read-bound MoE GEMMs (routed and shared
  experts). In the fused mixed batch a GEMM takes max(weight read, compute of P + B rows), not the sum of the
  two parts' times: the chunk's MoE GEMMs (its ``mlp(F)`` share of t_chunk, t_chunk_mlp) hide the decode
  part's weight read up to their own length. The decode tokens' extra GEMM FLOPs are not added; attention
  projections are not merged (conservative).
TPOT = t_it(P) / (1 + a) (the mean over a request's iterations, the usual definition); ``tpot_chunk_s``: an
iteration carrying a full chunk (the inter-token gap a decoding request sees when a chunk rides along).

TTFT (mean) = half an iteration (the one in flight) + the wait in the GPU's prefill queue + the prompt's own
service S = ceil(prompt_len (1 - hit) / chunk_tokens) iterations each carrying a full chunk. With attention DP a
request's prompt is prefilled on its own GPU, so each GPU's chunk budget is a single server: arrivals Poisson,
service deterministic (S), utilisation rho = P / chunk_tokens (the share of the chunk budget the steady state
uses). M/D/1 mean wait (Pollaczek-Khinchine): W = rho S / (2 (1 - rho)); rho -> 1 makes TTFT unbounded, so a
batch that saturates the chunk budget cannot meet a TTFT limit. Bigger chunks: lower TTFT, longer (spikier)
inter-token gaps.
"""

from __future__ import annotations

import math
import time

from dsv3sim.config.errors import InfeasibleError
from dsv3sim.config.scenario import AggregatedWorkload, DecodeWorkload, PrefillWorkload, Scenario
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token
from dsv3sim.results import Infeasible, ServingResult
from dsv3sim.workload.decode import decode_step, kv_budget
from dsv3sim.workload.decode_ops import decode_constants
from dsv3sim.workload.prefill import simulate_prefill
from dsv3sim.workload.serving import (
    PUBLISHED_MTP_ACCEPTANCE,
    Instance,
    events_of,
    load_fields,
    mtp_plan,
    open_instance,
    parallel_fields,
)

_SHARED = ("gemm_dtype", "dispatch_dtype", "node_limit", "routing_trace", "placement", "redundant_experts",
           "routing_layers", "micro_batches")


def decode_part(w: AggregatedWorkload, batch: int | None) -> DecodeWorkload:
    return DecodeWorkload(context_len=w.prompt_len + w.output_len // 2, output_len=w.output_len, batch_per_gpu=batch,
                          kv_dtype_bytes=w.kv_dtype_bytes, mtp=w.mtp, mtp_acceptance=w.mtp_acceptance,
                          mtp_acceptance_source=w.mtp_acceptance_source, ll_transport=w.ll_transport,
                          memory_reserve_fraction=w.memory_reserve_fraction, **{k: getattr(w, k) for k in _SHARED})


def prefill_part(w: AggregatedWorkload, tokens: int) -> PrefillWorkload:
    return PrefillWorkload(prompt_len=w.prompt_len, tokens_per_gpu=max(tokens, w.prompt_len),
                           **{k: getattr(w, k) for k in _SHARED})


def chunk_time(scn: Scenario, w: AggregatedWorkload, tokens: float) -> tuple[float, ServingResult | Infeasible]:
    """Seconds for ``tokens`` prompt tokens inside an iteration (see the module docstring)."""
    if tokens <= 0:
        return 0.0, None
    r = simulate_prefill(scn.with_(workload=prefill_part(w, math.ceil(tokens))))
    if isinstance(r, Infeasible):
        return math.inf, r
    return tokens * r.metrics["ttft_s"] / r.metrics["tokens_per_gpu"], r


def mlp_share(r: ServingResult) -> float:
    """The MoE / MLP GEMMs' share of a prefill layer's computation (its ``mlp(F)`` slice)."""
    lt = r.layer_time_s
    comp = lt.get("attn(F)", 0.0) + lt.get("mlp(F)", 0.0)
    return lt.get("mlp(F)", 0.0) / comp if comp > 0 else 0.0


def simulate_aggregated(scn: Scenario) -> ServingResult | Infeasible:
    t0 = time.perf_counter()
    inst = open_instance(scn, "aggregated", AggregatedWorkload)
    if isinstance(inst, Infeasible):
        return inst
    w, cfg, p = inst.w, inst.cfg, inst.p
    dw = decode_part(w, w.batch_per_gpu)
    n_phys = cfg.n_routed_experts + w.redundant_experts
    if n_phys % p.ep:
        return Infeasible(scenario=scn.name, kind="aggregated",
                          reason=f"EP degree {p.ep} does not divide {n_phys} experts ({w.redundant_experts} redundant)")
    wbytes, budget, max_batch = kv_budget(cfg, p, dw, inst.perf)
    batch = max_batch if w.batch_per_gpu is None else w.batch_per_gpu
    if batch > max_batch or max_batch < w.micro_batches:
        return Infeasible(scenario=scn.name, kind="aggregated",
                          reason=f"batch {batch} per GPU exceeds KV capacity {max_batch} at context "
                                 f"{dw.context_len} ({budget / 2**30:.1f} GiB free after {wbytes / 2**30:.1f} GiB)")
    acc, acc_src, q = mtp_plan(cfg, w)
    batch, need, prefill_bound = _steady_batch(w, batch, acc)
    try:
        st = decode_step(scn, cfg, p, inst.topo, inst.gpu, dw, requests=batch, q=q)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind="aggregated", reason=e.reason)
    it = _iteration(scn, inst, dw, st, need)
    if isinstance(it, Infeasible):
        return it
    metrics = _aggregated_metrics(w, inst, st, it, acc=acc, acc_src=acc_src, need=need, prefill_bound=prefill_bound,
                                  max_batch=max_batch)
    return _aggregated_result(scn, inst, dw, st, metrics, acc_src=acc_src, wbytes=wbytes, budget=budget,
                              max_batch=max_batch, t0=t0)


RHO_MAX = 0.999  # a saturated chunk budget: the queue wait is 500x the service, i.e. no TTFT limit is met


def prefill_queue_wait(rho: float, service_s: float) -> float:
    """M/D/1 mean waiting time (Pollaczek-Khinchine, deterministic service): rho S / (2 (1 - rho))."""
    rho = min(max(rho, 0.0), RHO_MAX)
    return rho * service_s / (2.0 * (1.0 - rho))


def _steady_batch(w: AggregatedWorkload, batch: int, acc: float) -> tuple[int, float, bool]:
    """(requests per GPU, prompt tokens per iteration in steady state, whether chunk capacity bounds the batch)."""
    computed_prompt = w.prompt_len * (1.0 - w.cache_hit_rate)
    need = batch * (1.0 + acc) / w.output_len * computed_prompt  # prompt tokens per iteration, steady state
    prefill_bound = need > w.chunk_tokens
    if prefill_bound:  # chunk capacity limits how many requests can be kept decoding
        batch = max(w.micro_batches, int(w.chunk_tokens * w.output_len / ((1.0 + acc) * computed_prompt)))
        need = batch * (1.0 + acc) / w.output_len * computed_prompt
    return batch, need, prefill_bound


def _iteration(scn: Scenario, inst: Instance, dw: DecodeWorkload, st, need: float) -> dict | Infeasible:
    """An iteration's times: the decode step plus the steady-state chunk (``t_it``) or a full chunk
    (``t_it_full``), less the weight reads the fused batch shares; Infeasible when the chunk is."""
    w = inst.w
    t_chunk, pr = chunk_time(scn, w, need)
    if isinstance(pr, Infeasible):
        return Infeasible(scenario=scn.name, kind="aggregated", reason=f"prefill chunk: {pr.reason}")
    computed_prompt = w.prompt_len * (1.0 - w.cache_hit_rate)
    full = min(w.chunk_tokens, max(1.0, computed_prompt))
    t_full, pf = chunk_time(scn, w, full)
    shared = sum(k.time_s for k in _weight_bound(inst.cfg, inst.gpu, dw, inst.p, st))
    ov = min(shared, t_chunk * mlp_share(pr)) if t_chunk else 0.0
    ov_full = min(shared, t_full * mlp_share(pf)) if t_full else 0.0
    n_chunks = math.ceil(computed_prompt / w.chunk_tokens) if computed_prompt > 0 else 0
    return {"t_chunk": t_chunk, "ov": ov, "t_it": st.time_s + t_chunk - ov, "t_it_full": st.time_s + t_full - ov_full,
            "n_chunks": n_chunks}


def _aggregated_metrics(w: AggregatedWorkload, inst: Instance, st, it: dict, *, acc: float, acc_src: str,
                        need: float, prefill_bound: bool, max_batch: int) -> dict:
    t_it, t_it_full, n_chunks = it["t_it"], it["t_it_full"], it["n_chunks"]
    rho = need / w.chunk_tokens if w.chunk_tokens else 0.0
    service = n_chunks * t_it_full
    wait = prefill_queue_wait(rho, service)
    ttft = 0.5 * t_it + wait + service
    run_batch = st.requests_per_micro_batch * w.micro_batches
    out_per_gpu = run_batch * (1.0 + acc) / t_it
    return {
        "ttft_s": ttft, "tpot_s": t_it / (1.0 + acc), "tpot_chunk_s": t_it_full / (1.0 + acc),
        "iteration_time_s": t_it, "decode_step_time_s": st.time_s, "chunk_time_s": it["t_chunk"],
        "prefill_tokens_per_iteration": need, "chunk_tokens": w.chunk_tokens, "prefill_bound": prefill_bound,
        "output_tokens_per_s_per_gpu": out_per_gpu,
        "output_tokens_per_s_per_node": out_per_gpu * inst.topo.cfg.gpus_per_node,
        "input_tokens_per_s_per_gpu": need / (1.0 - w.cache_hit_rate) / t_it,
        "computed_input_tokens_per_s_per_gpu": need / t_it, "tokens_per_s_per_request": (1.0 + acc) / t_it,
        "batch_per_gpu": run_batch, "max_batch_per_gpu_kv": max_batch, "mtp_acceptance": acc,
        "mtp_acceptance_source": acc_src, "mtp_acceptance_published": list(PUBLISHED_MTP_ACCEPTANCE),
        "prompt_len": w.prompt_len, "output_len": w.output_len, "cache_hit_rate": w.cache_hit_rate,
        "chunks_per_prompt": n_chunks, "fused_weight_read_overlap_s": it["ov"],
        "prefill_utilisation": rho, "ttft_queue_wait_s": wait,
        "request_time_s": ttft + w.output_len * t_it / (1.0 + acc),
        "exposed_communication_s": st.exposed_comm_s}


def _aggregated_result(scn: Scenario, inst: Instance, dw: DecodeWorkload, st, metrics: dict, *, acc_src: str,
                       wbytes: float, budget: float, max_batch: int, t0: float) -> ServingResult:
    w, cfg, p, topo, gpu, perf = inst.w, inst.cfg, inst.p, inst.topo, inst.gpu, inst.perf
    run_batch = metrics["batch_per_gpu"]
    kv_tok = kv_cache_bytes_per_token(cfg, w.kv_dtype_bytes, context=dw.context_len)
    kv = {"kv_bytes_per_token": kv_tok, "kv_budget_bytes_per_gpu": budget, "max_batch_at_context": max_batch,
          "context_len": dw.context_len, "kv_memory_bytes": run_batch * p.attn_tp * dw.context_len * kv_tok}
    return ServingResult(
        scenario=scn.name, kind="aggregated", model=scn.model, topology=topo.cfg.name, gpu=gpu, n_gpus=inst.world,
        n_nodes=inst.world / topo.cfg.gpus_per_node, parallel=parallel_fields(p, w, p.ep),
        metrics=metrics, layer_time_s=st.layers[cfg.num_hidden_layers - 1], kv=kv,
        memory_per_gpu=[{"rank": 0, "weights_bytes": wbytes, "kv_cache_bytes": kv["kv_memory_bytes"],
                         "hbm_bytes": perf.hbm_bytes}],
        **load_fields(st.lr, w.node_limit), comm=st.comm, timeline={"events": events_of(st.run)},
        sources=(f"GPU {gpu}: {perf.source}", f"MTP acceptance: {acc_src}", f"decode kernels: {decode_constants().source}"),
        sim_wall_s=time.perf_counter() - t0)


def _weight_bound(cfg, gpu, dw, p, st):
    """The decode step's memory-bound MoE / MLP GEMM kernels (what a fused mixed batch would not read twice)."""
    from dsv3sim.workload.decode_ops import WEIGHT_KERNELS, decode_layer_kernels

    out = []
    n_phys = cfg.n_routed_experts + dw.redundant_experts
    for i in range(cfg.num_hidden_layers):
        r = st.lr.routing_of(i)
        ks = decode_layer_kernels(cfg, i, gpu=gpu, requests=st.requests_per_micro_batch, q=st.q, context=dw.context_len,
                                  expert_rows=st.lr.plans[r].rows_max, local_experts=n_phys // p.ep,
                                  gemm_dtype=dw.gemm_dtype, kv_dtype_bytes=dw.kv_dtype_bytes, attn_tp=p.attn_tp)
        out += [k for k in ks if k.bound == "memory" and k.name in WEIGHT_KERNELS and k.slice == "mlp(F)"]
    return out * dw.micro_batches
