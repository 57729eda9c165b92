"""Prefill instance (DeepSeek-V3 §3.4.1; deepseek-ai/profile-data prefill: EP32, 4K prompts, 16K tokens per GPU).

Attention with ``attn_tp``-way TP + sequence parallelism inside ``dp`` replicas, MoE with EP groups of ``ep``
GPUs (redundant experts placed by EPLB). The ``tokens_per_gpu`` are split into ``micro_batches`` chains of
tokens_per_gpu // micro_batches tokens, all simulated together on one compute and one communication stream
(``overlap.run_chunks``): with 1 there is no overlap (the all-to-all is exposed and computation keeps every
SM); with 2, DeepSeek's two-micro-batch overlap (V3 §3.4.1), each chain's computation hides the other's DeepEP
normal all-to-all, which holds ``comm_sms`` SMs while it runs; more chains overlap the same way with smaller GEMMs.
DeepEP's normal kernels cost what they cost in training (``deepep_overheads``: layout, notify, and beside GEMMs
the co-run slowdown; slices are (alone, beside) pairs priced by ``run_chunks`` as the streams overlap).
Throughput counts the tokens actually run (micro_batches x tokens per micro-batch). TP all-gather /
reduce-scatter of SP (per layer, NVLink ring, alpha-beta) are added to attention.

KV-cache hits (``cache_hit_rate`` h, Day 6: 56.3 %): a prompt of S tokens computes only its last (1 - h) S tokens,
which attend to the cached h S too: per computed token the causal attention's mean context S / 2 becomes
h S + (1 - h) S / 2, so the attention core costs (1 + h) x the whole-prompt figure per token (the measured
``attn_prefill`` time of whole prompts, scaled). ``prefill_input_tokens_per_s_per_node`` counts every prompt
token as DeepSeek's published figure does: computed / (1 - h).

Prompt lengths (``prompt_len`` their mean, ``prompt_len_cv`` their spread; ``prompt_lengths``): GEMMs and
all-to-alls cost the same per token, the attention core is priced at the token-weighted mix of lengths (each bin
at its length in the measured kernel table), so a spread of lengths with the same mean costs more attention
(x (1 + cv^2) for a linear cost).
"""

from __future__ import annotations

import time

from dsv3sim.config.errors import ConfigError, InfeasibleError
from dsv3sim.config.scenario import PrefillWorkload, Scenario
from dsv3sim.cost.kvcache import kv_cache_bytes_per_token
from dsv3sim.results import Infeasible, ServingResult
from dsv3sim.workload import comm as C
from dsv3sim.workload import deepep_overheads as DO
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload.kernels import op_time
from dsv3sim.workload.layer_ops import head_slices, prefill_layer
from dsv3sim.workload.overlap import run_chunks
from dsv3sim.workload.prompt_lengths import token_weighted_bins
from dsv3sim.workload.serving import (
    Instance,
    events_of,
    load_fields,
    open_instance,
    parallel_fields,
    plan_key,
    serving_weight_dtype,
    weights_per_gpu,
)


def simulate_prefill(scn: Scenario) -> ServingResult | Infeasible:
    t0 = time.perf_counter()
    inst = open_instance(scn, "prefill", PrefillWorkload)
    if isinstance(inst, Infeasible):
        return inst
    w, cfg, p, topo = inst.w, inst.cfg, inst.p, inst.topo
    n_mb = w.micro_batches
    mb_tokens = w.tokens_per_gpu // n_mb
    if mb_tokens < 1:
        return Infeasible(scenario=scn.name, kind="prefill",
                          reason=f"{w.tokens_per_gpu} tokens per GPU cannot fill {n_mb} micro-batches")
    try:
        lr = LR.layer_routing(plan_key(cfg, w, p.ep, topo.cfg.gpus_per_node, mb_tokens, scn.seed),
                              LR.moe_positions(cfg, cfg.num_hidden_layers), w.routing_layers)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind="prefill", reason=e.reason)
    comm_info, comm_by_r = _prefill_comm(scn, inst, lr)
    # overlapped chains: DeepEP's normal kernels hold comm_sms SMs while computation runs beside them
    frac = (inst.perf.n_sms - _comm_sms(inst)) / inst.perf.n_sms if n_mb > 1 else 1.0
    layers, head = _prefill_layers(inst, lr, comm_by_r, mb_tokens, frac)
    run = run_chunks([("F", layers)] * n_mb, record=scn.record, tags=[str(j) for j in range(n_mb)])
    return _prefill_result(scn, inst, lr, run, layers=layers, head=head, comm_info=comm_info, mb_tokens=mb_tokens,
                           t0=t0)


def _prefill_comm(scn: Scenario, inst: Instance, lr) -> tuple[dict, dict]:
    """(dispatch / combine details of the first routing, their per-routing slice times): DeepEP normal
    all-to-all, event-simulated or the busiest link's bound (``scn.comm_model``)."""
    w, cfg, topo = inst.w, inst.cfg, inst.topo
    key = lr.keys[0]
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
    C.check_round_trip(comm_info)
    comm_by_r = LR.layer_comm(topo, lr, comm, {"dispatch(F)": ("dispatch", "normal", w.dispatch_dtype),
                                               "combine(F)": ("combine", "normal", "bf16")}, cfg.hidden_size)
    return comm_info, comm_by_r


def _comm_sms(inst: Instance) -> int:
    """SMs DeepEP's normal kernels hold in prefill: the workload's ``comm_sms`` (DeepSeek's prefill: 24), else the
    topology's."""
    n = inst.topo.cfg.comm_sms if inst.w.comm_sms is None else inst.w.comm_sms
    if not n < inst.perf.n_sms:
        raise ConfigError(f"PrefillWorkload.comm_sms={n} must be below the GPU's {inst.perf.n_sms} SMs")
    return n


def _prefill_layers(inst: Instance, lr, comm_by_r: dict, mb_tokens: int, frac: float):
    """(slice times of each layer + the head of one micro-batch, the head's kernels)."""
    w, cfg, p, topo, gpu = inst.w, inst.cfg, inst.p, inst.topo, inst.gpu
    # TP + SP attention: all-gather the sequence shard before attention, reduce-scatter after (BF16, NVLink)
    tp_bytes = mb_tokens * p.attn_tp * cfg.hidden_size * 2.0
    tp_t = 2 * C.ring_time(topo, p.attn_tp, tp_bytes, cross_node=False)
    core_extra = _attention_core_mix(inst, mb_tokens, frac) - _attention_core(cfg, gpu, mb_tokens, w.prompt_len, frac)
    n_physical = lr.plans[0].n_physical
    overlapped = w.micro_batches > 1
    ep_args = DO.ep_overhead_args(topo, p.ep, mb_tokens, cfg.num_experts_per_tok if cfg.is_moe else 0,
                               comm_sms=_comm_sms(inst))
    layers = []
    for i in range(cfg.num_hidden_layers):
        r = lr.routing_of(i)
        s = prefill_layer(cfg, i, gpu=gpu, tokens=mb_tokens, seq_len=w.prompt_len, expert_rows=lr.plans[r].rows_max,
                          local_experts=n_physical // p.ep, gemm_dtype=w.gemm_dtype, sm_fraction=frac)
        extra = {"attn(F)": tp_t + core_extra}
        alone = {k: s.times.get(k, 0.0) + extra.get(k, 0.0) for k in s.times_partial}
        beside = {k: v + extra.get(k, 0.0) for k, v in s.times_partial.items()}
        # overlapped chains: a compute slice on every SM unless a DeepEP kernel is resident (overlap.run_chunks)
        d = {k: (alone[k], beside[k]) if overlapped else beside[k] for k in beside}
        if cfg.is_moe_layer(i):
            d.update(_comm_slices(comm_by_r[r], beside, overlapped, ep_args))
        layers.append(d)
    head = head_slices(cfg, gpu=gpu, tokens=mb_tokens, sm_fraction=frac)
    hd = (head.times["attn(F)"], head.times_partial["attn(F)"])
    layers.append({"attn(F)": hd if overlapped else hd[1]})
    return layers, head


def _comm_slices(transfer: dict[str, float], compute: dict[str, float], overlapped: bool, ep_args: dict) -> dict:
    """DeepEP normal-mode dispatch/combine as training prices them (``deepep_overheads``: layout, notify, and
    beside GEMMs the co-run slowdown). Overlapped chains: per layer 2 x micro-batches transfers share the
    micro-batches' compute, so a barrier follows (attn + mlp) / 2 of compute, which ``comm_slices``' paired
    rule (sum of the pair's compute / 4) gives for twice one chain's compute. (alone, beside) tuples when
    overlapped: the slowdown only while a GEMM runs beside the transfer."""
    if not overlapped:
        return DO.comm_slices(transfer, compute, paired=False, **ep_args)
    return DO.paired_comm(transfer, {k: 2.0 * v for k, v in compute.items()}, **ep_args)


def _prefill_result(scn: Scenario, inst: Instance, lr, run, *, layers, head, comm_info: dict, mb_tokens: int,
                    t0: float) -> ServingResult:
    w, cfg, p, topo, gpu, perf = inst.w, inst.cfg, inst.p, inst.topo, inst.gpu, inst.perf
    t_fwd = run.time_s
    tokens_run = mb_tokens * w.micro_batches
    tok_per_gpu_s = tokens_run / t_fwd
    per_node = tok_per_gpu_s * topo.cfg.gpus_per_node
    n_physical = lr.plans[0].n_physical
    wbytes = weights_per_gpu(cfg, n_physical, p.ep, serving_weight_dtype(cfg, w.gemm_dtype), p.attn_tp)
    metrics = {"prefill_tokens_per_s_per_node": per_node, "prefill_tokens_per_s_per_gpu": tok_per_gpu_s,
               "ttft_s": t_fwd, "forward_time_s": t_fwd, "exposed_communication_s": run.exposed_comm_s,
               "tokens_per_gpu": tokens_run, "tokens_per_micro_batch": mb_tokens, "prompt_len": w.prompt_len,
               "cache_hit_rate": w.cache_hit_rate,
               "prefill_input_tokens_per_s_per_node": per_node / (1.0 - w.cache_hit_rate),
               "prefill_input_tokens_per_s_per_gpu": tok_per_gpu_s / (1.0 - w.cache_hit_rate)}
    return ServingResult(
        scenario=scn.name, kind="prefill", model=scn.model, topology=topo.cfg.name, gpu=gpu, n_gpus=inst.world,
        n_nodes=inst.world / topo.cfg.gpus_per_node, parallel=parallel_fields(p, w, p.ep),
        metrics=metrics, layer_time_s={k: v[1] if isinstance(v, tuple) else v for k, v in layers[-2].items()},
        kv={"kv_bytes_per_token": kv_cache_bytes_per_token(cfg, context=w.prompt_len)},
        memory_per_gpu=[{"rank": 0, "weights_bytes": wbytes, "hbm_bytes": perf.hbm_bytes}],
        **load_fields(lr, w.node_limit),
        comm=comm_info, timeline={"events": events_of(run)},
        sources=(f"GPU {gpu}: {perf.source}",) + tuple(sorted(set(head.sources))),
        sim_wall_s=time.perf_counter() - t0)


def _attention_core_mix(inst: Instance, tokens: int, frac: float) -> float:
    """Seconds of the attention core of ``tokens`` computed tokens drawn from the workload's prompt lengths
    (``prompt_lengths``: token-weighted bins of mean ``prompt_len``, cv ``prompt_len_cv``) with the cached prefix
    attended to: (1 + h) x the whole-prompt core per token (module docstring), summed over the bins."""
    w, cfg = inst.w, inst.cfg
    bins = token_weighted_bins(w.prompt_len, w.prompt_len_cv, max_len=cfg.max_position_embeddings)
    per_tok = sum(wt * _attention_core(cfg, inst.gpu, tokens, max(1, round(s)), frac) / tokens for s, wt in bins)
    return (1.0 + w.cache_hit_rate) * per_tok * tokens


def _attention_core(cfg, gpu: str, tokens: int, seq_len: int, frac: float) -> float:
    """Seconds of the causal attention core of ``tokens`` tokens of whole ``seq_len`` prompts (the kernel
    ``prefill_layer`` prices), per token x tokens when they are less than one prompt."""
    from dsv3sim.cost.flops import attention_core_flops_per_token, causal_mean_context

    nh = cfg.num_attention_heads
    dv = cfg.v_dim
    n_kv = nh if cfg.attention == "mla" else cfg.num_key_value_heads
    b = max(1, tokens // seq_len)
    core = b * seq_len * attention_core_flops_per_token(cfg, causal_mean_context(seq_len))
    qkv = 2.0 * b * seq_len * (nh * cfg.qk_head_dim + n_kv * (cfg.qk_head_dim + dv))
    t = op_time(gpu, "attn_prefill", "bf16", flops=core, bytes_=qkv, sm_fraction=frac, s=seq_len, h=nh, b=b,
                dqk=cfg.qk_head_dim, dv=dv).time_s
    return t * tokens / (b * seq_len)  # b whole prompts priced, scaled to the tokens asked for
