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
   longest path over the action DAG; p2p latency between stages, and before every action the rank waits for
   its sends and receives, activation bytes / NIC bandwidth, as DualPipe's reference commits them).
5. ZeRO-1 DP (``optimizer_step``): gradient reduce-scatter after the pipeline, optimizer (AdamW on the shard,
   FP8 re-quantisation, gradient zeroing), parameter all-gather before the next step; NCCL rings over NVLink
   and every NIC of the DP group's nodes (``comm.ring_time``). ``optimizer_overlap=True`` (what-if): per model
   chunk, the reduce-scatter starts after the chunk's last W, the all-gather is exposed only past the next
   step's first use of the chunk.
Layer split over stages: embedding on stage 0, output head + MTP module (V3 §2.2) on the last stage; the
L decoder layers spread evenly, the remainder to the middle stages (DeepSeek does not publish its split).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dsv3sim.config.errors import ConfigError, InfeasibleError
from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.config.scenario import Scenario, TrainingWorkload
from dsv3sim.cost.flops import train_flops_per_token
from dsv3sim.cost.memory import activation_bytes_per_token_per_layer, training_state_bytes
from dsv3sim.cost.params import count_params, layer_params, mtp_module_params
from dsv3sim.cost.pricing import gpu_hours_per_trillion_tokens as gph_per_t
from dsv3sim.parallel import Action, ExecResult, Schedule, activation_peaks, execute, generate
from dsv3sim.parallel.dualpipe_p2p import batches as dualpipe_batches
from dsv3sim.results import Infeasible, TrainingResult
from dsv3sim.sim.deepep import token_bytes
from dsv3sim.topology.graph import Topology
from dsv3sim.workload import comm as C
from dsv3sim.workload import deepep_overheads as DO
from dsv3sim.workload import interference as IF
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload import optimizer_step as OS
from dsv3sim.workload import training_metrics as TM
from dsv3sim.workload.kernels import MEM_EFF, GpuPerf, gpu_perf
from dsv3sim.workload.layer_ops import head_slices, training_layer
from dsv3sim.workload.overlap import run_chunks


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
        raise InfeasibleError(f"pp={pp} stages for {L} layers")
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


def stage_params(cfg: ModelConfig, layers: list[int], first: bool, last: bool) -> tuple[float, float]:
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


@dataclass(frozen=True, kw_only=True, slots=True)
class StepPlan:
    """A training step before any simulation: model, cluster, layout, schedule and per-rank memory."""

    scn: Scenario
    cfg: ModelConfig
    topo: Topology
    perf: GpuPerf
    tokens: int  # T: tokens of one micro-batch
    sm_fraction: float  # SMs left to compute while a communication kernel holds comm_sms (V3 §3.2.2)
    layers_of: list[list[int]]  # decoder layer indices per stage (MTP = num_hidden_layers)
    sched: Schedule
    mem_rows: list[dict]

    @property
    def gpu(self) -> str:
        return self.topo.cfg.gpu


@dataclass(frozen=True, kw_only=True, slots=True)
class EpTimes:
    """The EP all-to-all of one micro-batch: per slice name, its (kind, dtype), routing 0's simulated time and
    result, and the per-routing slice times of every MoE layer routing (``layer_routing``)."""

    specs: dict[str, tuple[str, str]]
    comm: dict[str, float]
    comm_res: dict[str, dict]
    comm_by_r: list[dict[str, float]]
    lr: LR.LayerRouting | None

    @property
    def lspecs(self) -> dict[str, tuple[str, str, str]]:
        return {n: (kind, "normal", dt) for n, (kind, dt) in self.specs.items()}  # (kind, mode, dtype) per slice

    @property
    def rows_by_r(self) -> list[int]:
        return [pl.rows_max for pl in self.lr.plans] if self.lr else [0]

    @property
    def rows(self) -> int:
        return self.lr.plans[0].rows_max if self.lr else 0

    def local_experts(self, ep: int) -> int:
        return self.lr.plans[0].n_physical // ep if self.lr else 0

    def routing_of(self, i: int) -> int:
        return self.lr.routing_of(i) if self.lr else 0


def simulate_training(scn: Scenario) -> TrainingResult | Infeasible:
    """plan (layout, schedule, memory) -> EP all-to-all times -> chunk times -> pipeline execution -> metrics."""
    t_wall = time.perf_counter()
    sp = plan_step(scn)
    if isinstance(sp, Infeasible):
        return sp
    ep = ep_times(sp)
    if isinstance(ep, Infeasible):
        return ep
    chunks = ChunkTimes(sp, ep)
    T, H = sp.tokens, sp.cfg.hidden_size
    # pipeline sends of one micro-batch's BF16 activations (or their gradients) between stages on other nodes,
    # committed and waited for at every chunk boundary as DualPipe's reference does (parallel.execute)
    lat = C.p2p_time(sp.topo, 0.0, cross_node=True)
    ex = execute(sp.sched, lambda rank, a: chunks(rank, a).time_s, p2p_latency=lat,
                 p2p_transfer=C.p2p_time(sp.topo, T * H * 2.0, cross_node=True) - lat,
                 p2p_batches=dualpipe_batches(sp.sched) if sp.sched.layout == "bidirectional" else None)
    return training_result(sp, ep, chunks, ex, t_wall)


def plan_step(scn: Scenario) -> StepPlan | Infeasible:
    """Layout checks, schedule and memory first: a configuration that does not fit costs no simulation."""
    w = scn.workload
    assert isinstance(w, TrainingWorkload)
    p = scn.parallel
    cfg = load_model_config(scn.model)
    try:
        topo = C.build_topology(scn.topology, scn.gpu, scn.perturb, p.world)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind="training", reason=e.reason)
    gpu = topo.cfg.gpu
    perf = gpu_perf(gpu)
    if cfg.is_moe and cfg.n_routed_experts % p.ep and not w.redundant_experts:
        return Infeasible(scenario=scn.name, kind="training",
                          reason=f"EP degree {p.ep} does not divide {cfg.n_routed_experts} experts")
    if p.pp > cfg.num_hidden_layers:
        return Infeasible(scenario=scn.name, kind="training", reason=f"pp={p.pp} > {cfg.num_hidden_layers} layers")
    T = w.micro_batch_sequences * w.seq_len
    comm_sms = topo.cfg.comm_sms if p.ep > 1 else 0
    frac = (perf.n_sms - comm_sms) / perf.n_sms
    layers_of = stage_layers(cfg, p.pp)
    try:
        sched = _schedule(w.schedule, p.pp, scn.microbatches)
    except InfeasibleError as e:  # e.g. DualPipe with fewer than 2*pp micro-batches
        return Infeasible(scenario=scn.name, kind="training", reason=e.reason)
    mem_rows = _dp_and_memory(cfg, scn, sched, layers_of, topo, perf, T)
    worst_mem = max(mem_rows, key=lambda m: m["total_bytes"])
    if worst_mem["total_bytes"] > perf.hbm_bytes:
        return Infeasible(scenario=scn.name, kind="training",
                          reason=f"does not fit in HBM: rank {worst_mem['rank']} needs "
                                 f"{worst_mem['total_bytes'] / 2**30:.1f} GiB > "
                                 f"{perf.hbm_bytes / 2**30:.1f} GiB of {gpu}")
    return StepPlan(scn=scn, cfg=cfg, topo=topo, perf=perf, tokens=T, sm_fraction=frac, layers_of=layers_of,
                    sched=sched, mem_rows=mem_rows)


def ep_times(sp: StepPlan) -> EpTimes | Infeasible:
    """EP plan of every MoE layer routing and the all-to-all times of one micro-batch (routing 0 simulated or
    bounded, the others scaled by their busiest-link bounds, ``layer_routing.py``)."""
    scn, cfg, topo = sp.scn, sp.cfg, sp.topo
    w, p, H = scn.workload, scn.parallel, cfg.hidden_size
    comm: dict[str, float] = {}
    if not cfg.is_moe:
        return EpTimes(specs={}, comm=comm, comm_res={}, comm_by_r=[comm], lr=None)
    n_all_layers = max(i for ls in sp.layers_of for i in ls) + 1
    try:
        plan_key = tuple(sorted({
            "n_experts": cfg.n_routed_experts, "topk": cfg.num_experts_per_tok, "ep": p.ep,
            "gpus_per_node": topo.cfg.gpus_per_node, "tokens_per_rank": sp.tokens, "node_limit": w.node_limit,
            "trace": w.routing_trace, "placement": w.placement, "redundant": w.redundant_experts, "seed": scn.seed,
            "n_group": cfg.n_group}.items()))
        lr = LR.layer_routing(plan_key, LR.moe_positions(cfg, n_all_layers), w.routing_layers)
    except InfeasibleError as e:
        return Infeasible(scenario=scn.name, kind="training", reason=e.reason)
    plan_key = lr.keys[0]
    # V3 §3.3.3: activations before the up-projections and activation gradients before the down-projections
    # go out in FP8 (profile-data: a per-token FP8 cast precedes combine(B)'s dispatch kernel); combines BF16
    specs = {"dispatch(F)": ("dispatch", w.dispatch_dtype), "combine(F)": ("combine", "bf16"),
             "combine(B)": ("dispatch", w.dispatch_dtype), "dispatch(B)": ("combine", "bf16")}
    comm_res: dict[str, dict] = {}
    for name, (kind, dt) in specs.items():
        if scn.comm_model == "bound":
            t_b, by = C.ep_link_bound(topo, plan_key, kind=kind, mode="normal", dtype=dt, hidden=H)
            comm[name] = t_b + topo.cfg.kernel_latency
            comm_res[name] = {"time_s": t_b, "bytes_by_class": dict(by), "method": "busiest-link bound"}
        else:
            r = C.ep_comm(topo, plan_key, kind=kind, mode="normal", dtype=dt, hidden=H, fast=scn.fast)
            comm[name] = r.time_s + topo.cfg.kernel_latency
            comm_res[name] = dict(r.to_dict(), method="event simulation")
    C.check_round_trip(comm_res)
    ept = EpTimes(specs=specs, comm=comm, comm_res=comm_res, comm_by_r=[], lr=lr)
    comm_by_r = LR.layer_comm(topo, lr, comm, ept.lspecs, H, latency=topo.cfg.kernel_latency)
    return EpTimes(specs=specs, comm=comm, comm_res=comm_res, comm_by_r=comm_by_r, lr=lr)


class ChunkTimes:
    """``(rank, action) -> ChunkRun``: the slices of the action's chunk passes on one GPU, event by event
    (``overlap.run_chunks``); full SMs for lone passes; in overlapped pairs each slice is (alone, beside): the
    compute partition and the all-to-all's HBM share (``interference``) while a DeepEP kernel is resident, the
    transfer's co-run slowdown while a GEMM runs beside it; DeepEP's layout and notify kernels are added
    (``deepep_overheads``). Stages with the same layer kinds in the same order have
    identical chunk times, so runs are reused exactly."""

    def __init__(self, sp: StepPlan, ep: EpTimes) -> None:
        scn, cfg = sp.scn, sp.cfg
        p, T, H = scn.parallel, sp.tokens, cfg.hidden_size
        self.sp, self.ep = sp, ep
        self.straggler_rank = None
        if scn.perturb.straggler_gpu is not None:
            if scn.perturb.straggler_gpu >= p.world:
                raise ConfigError(f"straggler_gpu={scn.perturb.straggler_gpu} not in 0..{p.world - 1}")
            self.straggler_rank = scn.perturb.straggler_gpu // (p.dp * p.tp)  # GPU = stage * dp*tp + dp rank
        self.ep_cfg = DO.ep_overhead_args(sp.topo, p.ep, T, cfg.num_experts_per_tok if cfg.is_moe else 0)
        self.comm_hbm = {n: IF.comm_hbm_bytes(rdma_bytes=v["bytes_by_class"].get("nic_tx", 0.0) / p.ep,
                                              nvlink_bytes=v["bytes_by_class"].get("nvlink_rx", 0.0) / p.ep,
                                              source_bytes=T * token_bytes(ep.specs[n][0], "normal", ep.specs[n][1],
                                                                           H))
                         for n, v in ep.comm_res.items()} if cfg.is_moe else {}
        self.heads = head_slices(cfg, gpu=sp.gpu, tokens=T, sm_fraction=sp.sm_fraction,
                                 n_heads=1 + cfg.num_nextn_predict_layers)
        self.sigs = [self.signature(s) for s in range(p.pp)]
        self.runs: dict = {}
        self._layers: dict[int, tuple[dict, dict]] = {}

    def layer(self, i: int) -> tuple[dict, dict]:
        """(alone, beside) slice times of layer ``i``, its routing's all-to-all included when MoE: compute on every
        SM vs the partition; the transfer alone vs slowed by GEMMs beside it (``overlap`` prices the second only
        while the other stream is busy)."""
        if i not in self._layers:
            self._layers[i] = self._layer(i)
        return self._layers[i]

    def _layer(self, i: int) -> tuple[dict, dict]:
        sp, cfg, w, ep = self.sp, self.sp.cfg, self.sp.scn.workload, self.ep
        r = ep.routing_of(i)
        li = min(i, cfg.num_hidden_layers - 1) if i >= cfg.num_hidden_layers else i
        kw = {"gpu": sp.gpu, "tokens": sp.tokens, "seq_len": w.seq_len, "expert_rows": ep.rows_by_r[r],
              "local_experts": ep.local_experts(sp.scn.parallel.ep), "gemm_dtype": w.gemm_dtype,
              "sm_fraction": sp.sm_fraction, "recompute": w.recompute, "extras": True}
        s = training_layer(cfg, li, **kw)
        moe = cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1)) and cfg.is_moe
        full, part = dict(s.times), dict(s.times_partial)
        if moe:
            beside = DO.comm_slices(ep.comm_by_r[r], part, paired=True, **self.ep_cfg)
            # HBM taken by the all-to-all, averaged over the pair's layer: its wall time is the longer stream
            span = max(sum(part.values()), sum(beside.values()))
            share = IF.hbm_share(sum(self.comm_hbm.values()), span, sp.perf.hbm_bw)
            if share > 0:  # the compute stretched: the comm slices' barriers follow it
                part = dict(training_layer(cfg, li, mem_stretch=IF.memory_bound_stretch(share), **kw).times_partial)
                beside = DO.comm_slices(ep.comm_by_r[r], part, paired=True, **self.ep_cfg)
            full.update(DO.comm_slices(ep.comm_by_r[r], full, paired=False, **self.ep_cfg))
            # in a pair a comm slice is (alone: the paired notify and layout, the transfer unslowed; beside GEMMs)
            part.update(DO.paired_comm(ep.comm_by_r[r], part, beside=beside, **self.ep_cfg))
        return full, part

    def stage_dicts(self, stage: int, partial: bool, slow: float) -> list[dict]:
        """Per layer {slice: seconds}; in an overlapped pair (``partial``) a compute slice is (every SM, the SMs
        DeepEP's kernels leave): ``run_chunks`` runs it at the second rate only while an all-to-all is resident."""
        pairs = [self.layer(i) for i in self.sp.layers_of[stage]]
        if stage == self.sp.scn.parallel.pp - 1:
            pairs.append((self.heads.times, self.heads.times_partial))
        out = []
        for full, part in pairs:
            d = {}
            for k, v in (part if partial else full).items():
                if k.startswith(("dispatch", "combine")):
                    d[k] = v  # a pair's comm slice is already (alone, beside) (``layer``)
                elif partial:
                    d[k] = (full.get(k, v) * slow, v * slow)
                else:
                    d[k] = v * slow
            out.append(d)
        return out

    def signature(self, stage: int) -> tuple:
        cfg, lr = self.sp.cfg, self.ep.lr

        def kind(i: int) -> str:
            base = "mtp" if i >= cfg.num_hidden_layers else ("moe" if cfg.is_moe and cfg.is_moe_layer(i) else "dense")
            return base + (str(self.ep.routing_of(i)) if lr and len(lr) > 1 and i in lr.positions else "")

        kinds = tuple(kind(i) for i in self.sp.layers_of[stage])
        return kinds + (("head",) if stage == self.sp.scn.parallel.pp - 1 else ())

    def __call__(self, rank: int, a: Action):
        scn, sched = self.sp.scn, self.sp.sched
        slow = scn.perturb.straggler_slowdown if rank == self.straggler_rank else 1.0
        key = (rank == 0 and scn.record, slow, a.is_pair,
               tuple((o.kind, self.sigs[sched.stage_of(rank, o.chunk)]) for o in a.ops))
        r = self.runs.get(key)
        if r is None:
            parts = [(o.kind, self.stage_dicts(sched.stage_of(rank, o.chunk), a.is_pair, slow)) for o in a.ops]
            r = self.runs[key] = run_chunks(parts, record=(rank == 0 and scn.record), issue_order=a.is_pair)
        return r

    def table(self) -> dict[str, float]:
        """Result field ``chunk_times_s``: each distinct chunk run by its passes and stage signatures."""
        return {"&".join(f"{kind}[{'+'.join(sig)}]" for kind, sig in k[3]) + (f" x{k[1]:g} slow" if k[1] != 1
                else ""): v.time_s for k, v in sorted(self.runs.items(), key=lambda kv: str(kv[0]))}

    def pair_slices(self) -> dict:
        """The overlapped pair with the most MoE layers, slice by slice (DeepSeek's profile-data shows one)."""
        sched, pp = self.sp.sched, self.sp.scn.parallel.pp
        pairs = [(sum(self.sigs[sched.stage_of(r, o.chunk)].count("moe") for o in a.ops), r, a)
                 for r in range(pp) for a in sched.actions[r] if a.is_pair]
        if not pairs or not self.sp.cfg.is_moe:
            return {}
        _n, pr, pa = max(pairs, key=lambda x: x[0])
        run = run_chunks([(o.kind, self.stage_dicts(sched.stage_of(pr, o.chunk), True, 1.0)) for o in pa.ops],
                         issue_order=True)
        per: dict[str, list[float]] = {}
        for sl in run.slices:
            per.setdefault(sl.name, []).append(sl.end - sl.start)
        return {"pair_s": run.time_s, "rank": pr, "action": str(pa),
                "per_layer_s": {k: sum(v) / len(v) for k, v in per.items()}}


def training_result(sp: StepPlan, ep: EpTimes, chunks: ChunkTimes, ex: ExecResult, t_wall: float) -> TrainingResult:
    """Step time (pipeline, then DP and optimizer as DeepSeek runs them, ``optimizer_step.py``) and metrics."""
    scn, cfg, topo, sched, perf = sp.scn, sp.cfg, sp.topo, sp.sched, sp.perf
    w, p, r0 = scn.workload, scn.parallel, 0
    ends = {r: _rank_end(cfg, scn, sched, sp.layers_of, topo, perf, ex, r, sp.mem_rows[r]) for r in range(p.pp)}
    crit = max(ends, key=lambda r: ends[r].end_s)
    step = ends[crit].end_s
    pipe_end = max(ex.makespan, ends[crit].rs_end_s)
    tokens = w.global_batch_sequences * w.seq_len
    tps = tokens / step
    flops_tok = train_flops_per_token(cfg, w.seq_len)
    mfu = flops_tok * tps / (p.world * perf.bf16_flops)
    bd = TM.breakdown(ex, ends[crit], pipe_end, r0)
    # DeepSeek's terms (ISCA'25 Table 4) on PP rank 0; they add up to the step time
    deepseek_bd = {"1F": bd["forward_s"], "1B": bd["backward_input_s"] + bd["backward_full_s"],
                   "1W": bd["weight_grad_s"], "1F1B": bd["overlapped_forward_backward_s"], "bubble": bd["bubble_s"],
                   "opt": step - ex.makespan}
    util, link_util = TM.link_utilisation(sp, ep, ex, step, r0)
    exposed = sum(chunks(r0, a).exposed_comm_s for a in sched.actions[r0]) + bd["dp_comm_exposed_s"]
    events = TM.events(sp, chunks, ex, r0, pipe_end, bd["optimizer_s"], step)
    loads = ep.lr.loads() if ep.lr else {}
    return TrainingResult(
        scenario=scn.name, model=cfg.name if hasattr(cfg, "name") else scn.model, topology=topo.cfg.name,
        gpu=sp.gpu, n_gpus=p.world, parallel={"pp": p.pp, "dp": p.dp, "tp": p.tp, "ep": p.ep, "schedule": w.schedule,
                                              "microbatches": scn.microbatches, "micro_batch_tokens": sp.tokens},
        step_time_s=step, breakdown_s=bd, step_breakdown_s=deepseek_bd, mfu=mfu, mfu_causal=mfu,
        mfu_noncausal=TM.noncausal_train_flops_per_token(cfg, w.seq_len) * tps / (p.world * perf.bf16_flops),
        pair_slices_s=chunks.pair_slices(), tokens_per_s=tps, tokens_per_step=tokens,
        gpu_hours_per_trillion_tokens=gph_per_t(p.world, tps), train_flops_per_token=flops_tok,
        memory_per_gpu=sp.mem_rows, link_utilisation=link_util,
        ib_utilisation=util["ib"], nvlink_utilisation=util["nvlink"], exposed_communication_s=exposed,
        expert_load_before=loads.get("expert_load_before", []),
        expert_load_after=loads.get("expert_load_after", []),
        expert_load_logical=loads.get("expert_load_logical", []),
        nodes_per_token={"hist": loads.get("nodes_per_token_hist", []), "node_limit": w.node_limit,
                         "routing_layers": loads.get("routing_layers", 0), "n_group": cfg.n_group},
        comm=dict(ep.comm_res), chunk_times_s=chunks.table(),
        timeline={"events": events}, pipeline=ex.to_dict(),
        sources=tuple(TM.sources(sp, ep, chunks)), sim_wall_s=time.perf_counter() - t_wall)


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
    # DP peers of a stage are consecutive GPUs (GPU = stage x dp x tp + dp rank x tp + tp rank): whole nodes of
    # them share NVLink; expert DP peers are EP groups apart (one per node once ep >= GPUs per node)
    g = topo.cfg.gpus_per_node
    k_ne, k_ex = max(1, min(p.dp, g // p.tp)), max(1, min(dp_ep, g // p.ep))

    def ring(nbytes_ne: float, nbytes_ex: float) -> float:
        return (C.ring_time(topo, p.dp, nbytes_ne, cross_node=True, per_node=k_ne)
                + C.ring_time(topo, dp_ep, nbytes_ex, cross_node=True, per_node=k_ex))

    for c in set(ready) | set(first):
        st = sched.stage_of(r, c)
        ne, exs = stage_params(cfg, layers_of[st], st == 0, st == p.pp - 1)
        ex_local = exs / p.ep * red
        rs[c] = ring(4.0 * ne, 4.0 * ex_local)
        ag[c] = ring(2.0 * ne, 2.0 * ex_local) if w.zero1 else 0.0
    if not w.optimizer_overlap:
        # plain ZeRO-1 order: every chunk's reduce-scatter after the rank's last pipeline action, every
        # all-gather before the next step starts (optimizer_step module docstring)
        last = max((sp_.end for sp_ in ex.spans[r]), default=0.0)
        ready = dict.fromkeys(ready, last)
        first = dict.fromkeys(first, 0.0)
    opt = OS.optimizer_compute_time(shard_params=mem["master_weights_bytes"] / 4.0,
                                    local_params=mem["weights_bytes"] / 2.0, hbm_bw=perf.hbm_bw * MEM_EFF)
    return OS.rank_end(makespan=ex.makespan, ready=ready, rs=rs, first_use=first, ag=ag, optimizer_s=opt)


def _dp_and_memory(cfg: ModelConfig, scn: Scenario, sched, layers_of: list[list[int]], topo, perf, T: int):
    """Per PP rank: memory rows (ZeRO-1 shard, weights, FP32 gradients, activations); pure arithmetic. The DP
    collectives and the optimizer's time are per chunk, after execution (``_rank_end``, optimizer_step.py)."""
    w, p = scn.workload, scn.parallel
    peaks = activation_peaks(sched)
    dp_ep = max(1, (p.dp * p.tp) // p.ep)
    mem_rows = []
    for r in range(p.pp):
        stages = sorted({sched.stage_of(r, c) for c in range(sched.n_chunks)})
        ne = sum(stage_params(cfg, layers_of[s], s == 0, s == p.pp - 1)[0] for s in stages)
        exs = sum(stage_params(cfg, layers_of[s], s == 0, s == p.pp - 1)[1] for s in stages)
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
