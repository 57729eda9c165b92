"""One training step of PP x DP (ZeRO-1) x EP: DeepSeek-V3's pre-training setup as a simulation.

How the step is assembled (details and the symmetric reductions in NOTES.md):
1. EP all-to-all of one micro-batch: simulated on the topology (``comm.ep_comm``) for the dispatch of the
   forward and of the backward (combine(B), in the dispatch dtype: V3 §3.3.3 sends activations and the
   activation gradients before the down-projections in FP8) and the BF16 combines. combine(B) uses the dispatch
   paths, dispatch(B) the combine paths. DeepEP's layout and notify kernels and, in overlapped pairs, the
   transfer's slowdown beside the GEMMs are added per slice (``deepep_overheads``).
2. Layer slices (``layer_ops.training_layer``) from kernel times, with the production element-wise kernels
   (``layer_extras``); MoE rows = the busiest GPU's received rows. In a pair, memory-bound kernels share HBM
   with the all-to-all (``interference``).
3. Chunk passes F, B, W, BW and overlapped pairs F&B(W) on one GPU, event by event (``overlap.run_chunks``).
4. The pipeline schedule (``dsv3sim.parallel.generate``) executed with those times (``parallel.execute``,
   longest path over the action DAG, p2p latency + activation bytes / NIC bandwidth between stages).
5. ZeRO-1 DP per model chunk (``optimizer_step``): a chunk's gradient reduce-scatter starts after its last W on
   the rank; optimizer (AdamW on the shard, FP8 re-quantisation, gradient zeroing) after the last one; the
   parameter all-gathers are exposed only past the next step's first use of each chunk.
Layer split over stages: embedding on stage 0, output head + MTP module (V3 §2.2) on the last stage; the
L decoder layers spread evenly, the remainder to the middle stages (DeepSeek does not publish its split).
"""

from __future__ import annotations

import time
from functools import cache, lru_cache

import numpy as np

from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.config.scenario import Scenario, TrainingWorkload
from dsv3sim.cost.flops import causal_mean_context, forward_flops_per_token, train_flops_per_token
from dsv3sim.cost.memory import activation_bytes_per_token_per_layer, training_state_bytes
from dsv3sim.cost.params import count_params, layer_params, mtp_module_params
from dsv3sim.parallel import Action, execute, generate
from dsv3sim.results import Infeasible, TrainingResult
from dsv3sim.sim.deepep import token_bytes
from dsv3sim.workload import comm as C
from dsv3sim.workload import deepep_overheads as DO
from dsv3sim.workload import interference as IF
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload import optimizer_step as OS
from dsv3sim.workload.kernels import MEM_EFF, gpu_perf
from dsv3sim.workload.layer_ops import head_slices, training_layer
from dsv3sim.workload.overlap import run_chunks

COMM_F = ("dispatch(F)", "combine(F)")
COMM_B = ("combine(B)", "dispatch(B)")


@lru_cache(maxsize=64)
def _schedule(name: str, pp: int, microbatches: int):
    return generate(name, pp, microbatches)


def activation_bytes(cfg: ModelConfig, i: int, recompute: bool = True) -> float:
    """Per token, layer ``i`` (MTP layers as the last layer): ``cost.memory``'s itemisation with V3's savings."""
    moe = cfg.is_moe and cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1))
    return activation_bytes_per_token_per_layer(cfg, moe, recompute_norm_and_up_proj=recompute)


def stage_layers(cfg: ModelConfig, pp: int) -> list[list[int]]:
    """Decoder layer indices per stage; the MTP module is layer index ``num_hidden_layers`` on the last stage."""
    L = cfg.num_hidden_layers
    if pp > L:
        raise ValueError(f"pp={pp} stages for {L} layers")
    base, extra = divmod(L, pp)
    sizes = [base] * pp
    middle = list(range(1, pp - 1)) or list(range(pp))
    for i in range(extra):
        sizes[middle[i % len(middle)]] += 1
    out, at = [], 0
    for s in sizes:
        out.append(list(range(at, at + s)))
        at += s
    out[-1] += [L] * cfg.num_nextn_predict_layers
    return out


def _stage_params(cfg: ModelConfig, layers: list[int], first: bool, last: bool) -> tuple[float, float]:
    """(non-expert, routed-expert) parameters of a stage."""
    return _stage_params_cached(cfg, tuple(layers), first, last)


@lru_cache(maxsize=4096)
def _stage_params_cached(cfg: ModelConfig, layers: tuple, first: bool, last: bool) -> tuple[float, float]:
    ne = ex = 0.0
    for i in layers:
        p = mtp_module_params(cfg) if i >= cfg.num_hidden_layers else layer_params(cfg, i)
        ex += p.get("routed_experts", 0)
        ne += sum(v for k, v in p.items() if k != "routed_experts")
    pc = count_params(cfg)
    if first:
        ne += pc.by_component.get("embedding", 0)
    if last:
        ne += pc.by_component.get("head", 0)
    return ne, ex


def simulate_training(scn: Scenario) -> TrainingResult | Infeasible:
    t_wall = time.perf_counter()
    w = scn.workload
    assert isinstance(w, TrainingWorkload)
    p = scn.parallel
    cfg = load_model_config(scn.model)
    world = p.world
    try:
        topo = C.build_topology(scn.topology, scn.gpu, scn.perturb, world)
    except ValueError as e:
        return Infeasible(scenario=scn.name, kind="training", reason=str(e))
    gpu = topo.cfg.gpu
    perf = gpu_perf(gpu)
    if cfg.is_moe and cfg.n_routed_experts % p.ep and not w.redundant_experts:
        return Infeasible(scenario=scn.name, kind="training",
                          reason=f"EP degree {p.ep} does not divide {cfg.n_routed_experts} experts")
    if p.pp > cfg.num_hidden_layers:
        return Infeasible(scenario=scn.name, kind="training", reason=f"pp={p.pp} > {cfg.num_hidden_layers} layers")
    T = w.micro_batch_sequences * w.seq_len
    H = cfg.hidden_size
    comm_sms = topo.cfg.comm_sms if p.ep > 1 else 0
    frac = (perf.n_sms - comm_sms) / perf.n_sms

    # 0. schedule and memory first: a configuration that does not fit costs no simulation
    layers_of = stage_layers(cfg, p.pp)
    try:
        sched = _schedule(w.schedule, p.pp, scn.microbatches)
    except ValueError as e:  # e.g. DualPipe with fewer than 2*pp micro-batches
        return Infeasible(scenario=scn.name, kind="training", reason=str(e))
    mem_rows = _dp_and_memory(cfg, scn, sched, layers_of, topo, perf, T)
    worst_mem = max(mem_rows, key=lambda m: m["total_bytes"])
    if worst_mem["total_bytes"] > perf.hbm_bytes:
        return Infeasible(scenario=scn.name, kind="training",
                          reason=f"does not fit in HBM: rank {worst_mem['rank']} needs "
                                 f"{worst_mem['total_bytes'] / 2**30:.1f} GiB > "
                                 f"{perf.hbm_bytes / 2**30:.1f} GiB of {gpu}")

    # 1. EP plan and all-to-all times for one micro-batch
    comm: dict[str, float] = {}
    comm_res: dict[str, dict] = {}
    plan = None
    lr = None
    n_all_layers = max(i for ls in layers_of for i in ls) + 1
    comm_by_r: list[dict[str, float]] = [comm]
    if cfg.is_moe:
        try:
            plan_key = tuple(sorted({
                "n_experts": cfg.n_routed_experts, "topk": cfg.num_experts_per_tok, "ep": p.ep,
                "gpus_per_node": topo.cfg.gpus_per_node, "tokens_per_rank": T, "node_limit": w.node_limit,
                "trace": w.routing_trace, "placement": w.placement, "redundant": w.redundant_experts, "seed": scn.seed,
                "n_group": cfg.n_group}.items()))
            lr = LR.layer_routing(plan_key, LR.moe_positions(cfg, n_all_layers), w.routing_layers)
            plan_key, plan = lr.keys[0], lr.plans[0]
        except ValueError as e:
            return Infeasible(scenario=scn.name, kind="training", reason=str(e))
        # V3 §3.3.3: activations before the up-projections and activation gradients before the down-projections
        # go out in FP8 (profile-data: a per-token FP8 cast precedes combine(B)'s dispatch kernel); combines BF16
        specs = {"dispatch(F)": ("dispatch", w.dispatch_dtype), "combine(F)": ("combine", "bf16"),
                 "combine(B)": ("dispatch", w.dispatch_dtype), "dispatch(B)": ("combine", "bf16")}
        for name, (kind, dt) in specs.items():
            if scn.comm_model == "bound":
                t_b, by = C.ep_link_bound(topo, plan_key, kind=kind, mode="normal", dtype=dt, hidden=H)
                comm[name] = t_b + topo.cfg.kernel_latency
                comm_res[name] = {"time_s": t_b, "bytes_by_class": dict(by),
                                  "method": "busiest-link bound"}
            else:
                r = C.ep_comm(topo, plan_key, kind=kind, mode="normal", dtype=dt, hidden=H, fast=scn.fast)
                comm[name] = r.time_s + topo.cfg.kernel_latency
                comm_res[name] = dict(r.to_dict(), method="event simulation")
        C.check_round_trip(comm_res)
        # the other MoE layers' routings: routing 0's times scaled by their busiest-link bounds (layer_routing.py)
        lspecs = {n: (kind, "normal", dt) for n, (kind, dt) in specs.items()}  # (kind, mode, dtype) per slice
        comm_by_r = LR.layer_comm(topo, lr, comm, lspecs, H, latency=topo.cfg.kernel_latency)
    rows = plan.rows_max if plan else 0
    rows_by_r = [pl.rows_max for pl in lr.plans] if lr else [0]
    local_experts = (plan.n_physical // p.ep) if plan else 0

    def routing_of(i: int) -> int:
        return lr.routing_of(i) if lr else 0

    # 2. per-layer slices (full SMs for lone passes, compute partition for overlapped pairs)
    straggler_rank = None
    if scn.perturb.straggler_gpu is not None:
        if scn.perturb.straggler_gpu >= world:
            raise ValueError(f"straggler_gpu={scn.perturb.straggler_gpu} not in 0..{world - 1}")
        straggler_rank = scn.perturb.straggler_gpu // (p.dp * p.tp)  # GPU = stage * dp*tp + dp rank

    ep_cfg = _ep_overhead_args(topo, p.ep, T, cfg.num_experts_per_tok if cfg.is_moe else 0)
    comm_hbm = {n: IF.comm_hbm_bytes(rdma_bytes=v["bytes_by_class"].get("nic_tx", 0.0) / p.ep,
                                     nvlink_bytes=v["bytes_by_class"].get("nvlink_rx", 0.0) / p.ep,
                                     source_bytes=T * token_bytes(specs[n][0], "normal", specs[n][1], H))
                for n, v in comm_res.items()} if cfg.is_moe else {}

    @cache
    def layer(i: int) -> tuple[dict, dict]:
        r = routing_of(i)
        li = min(i, cfg.num_hidden_layers - 1) if i >= cfg.num_hidden_layers else i
        kw = {"gpu": gpu, "tokens": T, "seq_len": w.seq_len, "expert_rows": rows_by_r[r],
              "local_experts": local_experts, "gemm_dtype": w.gemm_dtype, "sm_fraction": frac,
              "recompute": w.recompute, "extras": True}
        s = training_layer(cfg, li, **kw)
        moe = cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1)) and cfg.is_moe
        full, part = dict(s.times), dict(s.times_partial)
        if moe:
            pair_comm = DO.comm_slices(comm_by_r[r], part, paired=True, **ep_cfg)
            # HBM taken by the all-to-all, averaged over the pair's layer: its wall time is the longer stream
            span = max(sum(part.values()), sum(pair_comm.values()))
            share = IF.hbm_share(sum(comm_hbm.values()), span, perf.hbm_bw)
            if share > 0:
                part = dict(training_layer(cfg, li, mem_stretch=IF.memory_bound_stretch(share), **kw).times_partial)
            full.update(DO.comm_slices(comm_by_r[r], full, paired=False, **ep_cfg))
            part.update(DO.comm_slices(comm_by_r[r], part, paired=True, **ep_cfg))
        return full, part

    heads = head_slices(cfg, gpu=gpu, tokens=T, sm_fraction=frac, n_heads=1 + cfg.num_nextn_predict_layers)

    def stage_dicts(stage: int, partial: bool, slow: float) -> list[dict]:
        out = []
        for i in layers_of[stage]:
            d = dict(layer(i)[1 if partial else 0])
            out.append(d)
        if stage == p.pp - 1:
            out.append(dict(heads.times_partial if partial else heads.times))
        if slow != 1:
            out = [{k: (v * slow if not k.startswith(("dispatch", "combine")) else v) for k, v in d.items()}
                   for d in out]
        return out

    runs: dict = {}

    def signature(stage: int) -> tuple:
        """Stages with the same layer kinds in the same order have identical chunk times (exact reuse)."""
        def kind(i: int) -> str:
            base = "mtp" if i >= cfg.num_hidden_layers else ("moe" if cfg.is_moe and cfg.is_moe_layer(i) else "dense")
            return base + (str(routing_of(i)) if lr and len(lr) > 1 and i in lr.positions else "")

        kinds = tuple(kind(i) for i in layers_of[stage])
        return kinds + (("head",) if stage == p.pp - 1 else ())

    sigs = [signature(s) for s in range(p.pp)]

    def chunk(rank: int, a: Action):
        slow = scn.perturb.straggler_slowdown if rank == straggler_rank else 1.0
        key = (rank == 0 and scn.record, slow, a.is_pair,
               tuple((o.kind, sigs[sched.stage_of(rank, o.chunk)]) for o in a.ops))
        r = runs.get(key)
        if r is None:
            parts = [(o.kind, stage_dicts(sched.stage_of(rank, o.chunk), a.is_pair, slow)) for o in a.ops]
            r = runs[key] = run_chunks(parts, record=(rank == 0 and scn.record))
        return r

    ex = execute(sched, lambda rank, a: chunk(rank, a).time_s,
                 p2p_latency=C.p2p_time(topo, T * H * 2.0, cross_node=True))

    # the overlapped pair with the most MoE layers, slice by slice (DeepSeek's profile-data shows one such pair)
    pair_slices: dict = {}
    pairs = [(sum(sigs[sched.stage_of(r, o.chunk)].count("moe") for o in a.ops), r, a)
             for r in range(p.pp) for a in sched.actions[r] if a.is_pair]
    if pairs and cfg.is_moe:
        _n, pr, pa = max(pairs, key=lambda x: x[0])
        run = run_chunks([(o.kind, stage_dicts(sched.stage_of(pr, o.chunk), True, 1.0)) for o in pa.ops])
        per: dict[str, list[float]] = {}
        for sl in run.slices:
            per.setdefault(sl.name, []).append(sl.end - sl.start)
        pair_slices = {"pair_s": run.time_s, "rank": pr, "action": str(pa),
                       "per_layer_s": {k: sum(v) / len(v) for k, v in per.items()}}

    # 5. data parallel + optimizer as DeepSeek runs them (optimizer_step.py; memory rows came before simulation)
    ends = {r: _rank_end(cfg, scn, sched, layers_of, topo, perf, ex, r, mem_rows[r]) for r in range(p.pp)}
    crit = max(ends, key=lambda r: ends[r].end_s)
    step = ends[crit].end_s
    pipe_end = max(ex.makespan, ends[crit].rs_end_s)

    # metrics
    tokens = w.global_batch_sequences * w.seq_len
    tps = tokens / step
    flops_tok = train_flops_per_token(cfg, w.seq_len)
    mfu = flops_tok * tps / (world * perf.bf16_flops)
    mfu_noncausal = noncausal_train_flops_per_token(cfg, w.seq_len) * tps / (world * perf.bf16_flops)
    r0 = 0
    cats: dict[str, float] = {}
    for s in ex.spans[r0]:
        cats[s.category] = cats.get(s.category, 0.0) + (s.end - s.start)
    bd = {"forward_s": cats.get("F", 0.0), "backward_input_s": cats.get("B", 0.0),
          "weight_grad_s": cats.get("W", 0.0), "backward_full_s": cats.get("BW", 0.0),
          "overlapped_forward_backward_s": cats.get("F&B", 0.0), "bubble_s": ex.bubble[r0],
          "dp_comm_exposed_s": pipe_end - ex.makespan + ends[crit].ag_exposed_s,
          "optimizer_s": ends[crit].optimizer_s}
    # DeepSeek's terms (ISCA'25 Table 4) on PP rank 0; they add up to the step time
    deepseek_bd = {"1F": bd["forward_s"], "1B": bd["backward_input_s"] + bd["backward_full_s"],
                   "1W": bd["weight_grad_s"], "1F1B": bd["overlapped_forward_backward_s"], "bubble": bd["bubble_s"],
                   "opt": step - ex.makespan}
    # communication accounting: per-GPU NIC / NVLink bytes of a step
    moe_layers = {s: sum(1 for i in layers_of[s] if cfg.is_moe and cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1)))
                  for s in range(p.pp)}
    per_class = {"nic": {"F": 0.0, "B": 0.0}, "nvlink": {"F": 0.0, "B": 0.0}}
    # bytes per MoE layer: routing 0's simulated bytes, scaled for the other routings by their (exact) link bytes
    mix: dict[tuple[str, str], float] = {}
    if lr and len(lr) > 1:
        lb = LR.link_bytes(topo, lr, lspecs, H)
        wts = LR.weights(lr)
        mix = {(n, c): sum(w_ * lb[r][n].get(c, 0.0) for r, w_ in enumerate(wts)) / lb[0][n][c]
               for n in lb[0] for c in ("nic_tx", "nvlink_rx") if lb[0][n].get(c)}
    for name, r in comm_res.items():
        d = "F" if name.endswith("(F)") else "B"
        f_nic, f_nvl = mix.get((name, "nic_tx"), 1.0), mix.get((name, "nvlink_rx"), 1.0)
        per_class["nic"][d] += f_nic * r["bytes_by_class"].get("nic_tx", 0.0) / p.ep
        per_class["nvlink"][d] += f_nvl * r["bytes_by_class"].get("nvlink_rx", 0.0) / p.ep
    n_f = dict.fromkeys(range(p.pp), 0)
    n_b = dict.fromkeys(range(p.pp), 0)
    for r, acts_ in sched.actions.items():
        for a in acts_:
            for o in a.ops:
                st = sched.stage_of(r, o.chunk)
                if o.kind == "F":
                    n_f[r] += moe_layers[st]
                elif o.kind in ("B", "BW"):
                    n_b[r] += moe_layers[st]
    nic_cap = topo.cfg.nic.effective_bandwidth if topo.cfg.nic else float("inf")
    nvl_cap = topo.cfg.scale_up.effective_bandwidth
    ib_bytes = n_f[r0] * per_class["nic"]["F"] + n_b[r0] * per_class["nic"]["B"]
    nvl_bytes = n_f[r0] * per_class["nvlink"]["F"] + n_b[r0] * per_class["nvlink"]["B"]
    util = {"ib": ib_bytes / (step * nic_cap), "nvlink": nvl_bytes / (step * nvl_cap)}
    exposed = sum(chunk(r0, a).exposed_comm_s for a in sched.actions[r0]) + bd["dp_comm_exposed_s"]

    # timelines: pipeline spans of every PP rank, slices of rank 0, link utilisation over time of rank 0
    events = []
    for r, spans in ex.spans.items():
        for s in spans:
            events.append({"rank": r, "stream": "pipeline", "name": s.category, "action": s.action,
                           "start_s": s.start, "end_s": s.end})
    series_t, ib_u, nvl_u = _link_series(sched, ex, r0, per_class, moe_layers, nic_cap, nvl_cap, step)
    for a, s in zip(sched.actions[r0], ex.spans[r0]):
        for sl in chunk(r0, a).slices:
            events.append({"rank": r0, "stream": sl.stream, "name": sl.name, "start_s": s.start + sl.start,
                           "end_s": s.start + sl.end, "layer": sl.layer, "action": s.action})
    events.append({"rank": r0, "stream": "compute", "name": "optimizer", "start_s": pipe_end,
                   "end_s": pipe_end + bd["optimizer_s"]})
    # exposed DP communication (breakdown dp_comm_exposed_s): the gradient reduce-scatter still running after
    # the pipeline drains, and the parameter all-gather after the optimizer (ZeRO-1), on the comm stream
    for what, t0_, t1_ in (("reduce-scatter", ex.makespan, pipe_end),
                           ("all-gather", pipe_end + bd["optimizer_s"], step)):
        if t1_ > t0_:
            events.append({"rank": r0, "stream": "comm", "name": "dp_comm(exposed)", "collective": what,
                           "start_s": t0_, "end_s": t1_})
    sources = sorted(set(heads.sources) | set(training_layer(
        cfg, cfg.num_hidden_layers - 1, gpu=gpu, tokens=T, seq_len=w.seq_len, expert_rows=rows,
        local_experts=local_experts, gemm_dtype=w.gemm_dtype, sm_fraction=frac).sources))
    sources += [f"GPU {gpu}: {perf.source}", f"topology {topo.cfg.name}: " + "; ".join(topo.cfg.sources)]
    chunk_times = {"&".join(f"{kind}[{'+'.join(sig)}]" for kind, sig in k[3]) + (f" x{k[1]:g} slow" if k[1] != 1
                   else ""): v.time_s for k, v in sorted(runs.items(), key=lambda kv: str(kv[0]))}
    loads = lr.loads() if lr else {}
    return TrainingResult(
        scenario=scn.name, model=cfg.name if hasattr(cfg, "name") else scn.model, topology=topo.cfg.name, gpu=gpu,
        n_gpus=world, parallel={"pp": p.pp, "dp": p.dp, "tp": p.tp, "ep": p.ep, "schedule": w.schedule,
                                "microbatches": scn.microbatches, "micro_batch_tokens": T},
        step_time_s=step, breakdown_s=bd, step_breakdown_s=deepseek_bd, mfu=mfu, mfu_causal=mfu,
        mfu_noncausal=mfu_noncausal, pair_slices_s=pair_slices, tokens_per_s=tps, tokens_per_step=tokens,
        gpu_hours_per_trillion_tokens=world * 1e12 / tps / 3600.0, train_flops_per_token=flops_tok,
        memory_per_gpu=mem_rows, link_utilisation={"t_s": series_t, "by_class": {"ib": ib_u, "nvlink": nvl_u},
                                                   "by_node": {"0": {"ib": ib_u, "nvlink": nvl_u}},
                                                   "average": util},
        ib_utilisation=util["ib"], nvlink_utilisation=util["nvlink"], exposed_communication_s=exposed,
        expert_load_before=loads.get("expert_load_before", []),
        expert_load_after=loads.get("expert_load_after", []),
        expert_load_logical=loads.get("expert_load_logical", []),
        nodes_per_token={"hist": loads.get("nodes_per_token_hist", []), "node_limit": w.node_limit,
                         "routing_layers": loads.get("routing_layers", 0), "n_group": cfg.n_group},
        comm=dict(comm_res), chunk_times_s=chunk_times,
        timeline={"events": events}, pipeline=ex.to_dict(),
        sources=tuple(sources), sim_wall_s=time.perf_counter() - t_wall)


def noncausal_train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token counting the full S x S attention (DeepSeek's "non-causal" TFLOPS, ISCA'25 Table 4):
    the causal count with the attention core at context S instead of (S+1)/2."""
    core = forward_flops_per_token(cfg, seq_len).by_component.get("attention_core", 0.0)
    return train_flops_per_token(cfg, seq_len) + 3.0 * core * (seq_len / causal_mean_context(seq_len) - 1.0)


def _rank_end(cfg: ModelConfig, scn: Scenario, sched, layers_of, topo, perf, ex, r: int, mem: dict) -> OS.RankEnd:
    """Per chunk of rank ``r``: gradients ready (last W/BW end), first use in the next step (first F start),
    reduce-scatter and all-gather times (ring over DP for non-experts, DP/EP for experts); then ``rank_end``."""
    w, p = scn.workload, scn.parallel
    dp_ep = max(1, (p.dp * p.tp) // p.ep)
    red = (cfg.n_routed_experts + w.redundant_experts) / cfg.n_routed_experts if cfg.is_moe else 1.0
    ready: dict[int, float] = {}
    first: dict[int, float] = {}
    for a, sp in zip(sched.actions[r], ex.spans[r]):
        for o in a.ops:
            if o.kind in ("W", "BW"):
                ready[o.chunk] = max(ready.get(o.chunk, 0.0), sp.end)
            if o.kind == "F":
                first[o.chunk] = min(first.get(o.chunk, sp.start), sp.start)
    rs: dict[int, float] = {}
    ag: dict[int, float] = {}
    for c in set(ready) | set(first):
        st = sched.stage_of(r, c)
        ne, exs = _stage_params(cfg, layers_of[st], st == 0, st == p.pp - 1)
        ex_local = exs / p.ep * red
        rs[c] = C.ring_time(topo, p.dp, 4.0 * ne, cross_node=True) + C.ring_time(topo, dp_ep, 4.0 * ex_local,
                                                                               cross_node=True)
        ag[c] = 0.0 if not w.zero1 or w.optimizer_overlap else (
            C.ring_time(topo, p.dp, 2.0 * ne, cross_node=True) + C.ring_time(topo, dp_ep, 2.0 * ex_local,
                                                                             cross_node=True))
    opt = OS.optimizer_compute_time(shard_params=mem["master_weights_bytes"] / 4.0,
                                    local_params=mem["weights_bytes"] / 2.0, hbm_bw=perf.hbm_bw * MEM_EFF)
    return OS.rank_end(makespan=ex.makespan, ready=ready, rs=rs, first_use=first, ag=ag, optimizer_s=opt)


def _ep_overhead_args(topo, ep: int, tokens: int, topk: int) -> dict:
    """Arguments of ``deepep_overheads.comm_slices`` from the topology: EP size, barrier path latencies."""
    c = topo.cfg
    g = c.gpus_per_node
    cross = ep > g and c.n_nodes > 1
    rdma = topo.path_latency(topo.path(0, g)) if cross else 0.0
    nvl = topo.path_latency(topo.path(0, 1)) if g > 1 else 0.0
    return {"ep": ep, "tokens": tokens, "topk": topk, "rdma_latency_s": rdma, "nvlink_latency_s": nvl,
            "cross_node": cross}


def _dp_and_memory(cfg: ModelConfig, scn: Scenario, sched, layers_of: list[list[int]], topo, perf, T: int):
    """Per PP rank: memory rows (ZeRO-1 shard, weights, FP32 gradients, activations); pure arithmetic. The DP
    collectives and the optimizer's time are per chunk, after execution (``_rank_end``, optimizer_step.py)."""
    from dsv3sim.parallel import activation_peaks

    w, p = scn.workload, scn.parallel
    peaks = activation_peaks(sched)
    dp_ep = max(1, (p.dp * p.tp) // p.ep)
    mem_rows = []
    for r in range(p.pp):
        stages = sorted({sched.stage_of(r, c) for c in range(sched.n_chunks)})
        ne = sum(_stage_params(cfg, layers_of[s], s == 0, s == p.pp - 1)[0] for s in stages)
        exs = sum(_stage_params(cfg, layers_of[s], s == 0, s == p.pp - 1)[1] for s in stages)
        if sched.n_chunks == 2 and len(stages) == 1:  # DualPipe keeps two copies even of the same stage
            ne, exs = 2 * ne, 2 * exs
        ex_local = exs / p.ep * ((cfg.n_routed_experts + w.redundant_experts) / cfg.n_routed_experts
                                 if cfg.is_moe else 1)
        act_layers = [i for s in stages for i in layers_of[s]]
        act_per_mb = T * float(np.mean([activation_bytes(cfg, i, w.recompute) for i in act_layers])) * (
            len(act_layers) / len(stages))
        # cost.memory's training states (V3 §3.3.3), non-experts sharded over DP and experts over DP/EP
        st_ne = training_state_bytes(ne, p.dp, w.zero1)
        st_ex = training_state_bytes(ex_local, dp_ep, w.zero1)
        weights = st_ne.weights + st_ex.weights
        grads = st_ne.gradients + st_ex.gradients
        master = st_ne.master_weights + st_ex.master_weights
        moments = st_ne.optimizer_moments + st_ex.optimizer_moments
        acts = act_per_mb * peaks[r]
        tot = weights + grads + (master + moments) + acts
        mem_rows.append({"rank": r, "weights_bytes": weights, "gradients_bytes": grads,
                         "master_weights_bytes": master, "optimizer_moments_bytes": moments,
                         "activations_bytes": acts, "total_bytes": tot, "hbm_bytes": perf.hbm_bytes,
                         "activation_microbatch_stages": peaks[r]})
    return mem_rows


def _link_series(sched, ex, r0, per_class, moe_layers, nic_cap, nvl_cap, step, n_bins: int = 200):
    """Per-bin utilisation of rank 0's NIC and NVLink: each action's all-to-all bytes spread over its span."""
    edges = np.linspace(0.0, step, n_bins + 1)
    ib = np.zeros(n_bins)
    nv = np.zeros(n_bins)
    for a, s in zip(sched.actions[r0], ex.spans[r0]):
        b_ib = b_nv = 0.0
        for o in a.ops:
            d = "F" if o.kind == "F" else ("B" if o.kind in ("B", "BW") else None)
            if d is None:
                continue
            m = moe_layers[sched.stage_of(r0, o.chunk)]
            b_ib += m * per_class["nic"][d]
            b_nv += m * per_class["nvlink"][d]
        if s.end <= s.start or (b_ib == 0 and b_nv == 0):
            continue
        ov = np.clip(np.minimum(edges[1:], s.end) - np.maximum(edges[:-1], s.start), 0, None)
        frac = ov / (s.end - s.start)
        ib += b_ib * frac
        nv += b_nv * frac
    width = step / n_bins
    t = ((edges[:-1] + edges[1:]) / 2).tolist()
    return t, (ib / (width * nic_cap)).tolist(), (nv / (width * nvl_cap)).tolist()
