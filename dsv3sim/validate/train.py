"""The ``train`` job of one rank: the model's stages with EP all-to-alls, the pipeline action list executed
with point-to-point sends, DP gradient all-reduce, AdamW; measured per step and per component.

Per step (after ``warmup``): step time = this rank's end - start after a start barrier (the run's step time
is the max over ranks); component spans from ``timeline.py``; wire bytes per kind; the routing each MoE layer
used. One extra step at the end runs under ``torch.profiler`` (Chrome trace ``trace_rank<R>.json`` kept,
top ops by self time returned); it is not counted in the step times.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from dsv3sim.config import load_model_config
from dsv3sim.nn.fp8 import requant_bytes_per_element
from dsv3sim.nn.fp8 import requantize_weights as requantize_fp8_weights
from dsv3sim.nn.fp8_weights import drop_forward_operands, forward_operand_bytes, keep_forward_operands
from dsv3sim.validate import load
from dsv3sim.validate.ep import EPMoE
from dsv3sim.validate.layout import Coord, coord, make_groups, rank_of, stage_layers
from dsv3sim.validate.nn_adapter import build
from dsv3sim.validate.parts import Block, materialize
from dsv3sim.validate.schedule import parse, plan
from dsv3sim.validate.timeline import Timeline, mark


class Stage(nn.Module):
    """Model stage s: [embedding] + blocks + [head and loss]."""

    def __init__(self, *, s: int, n_stages: int, parts, layers: range, moe: dict[int, EPMoE], tl: Timeline):
        super().__init__()
        self.s, self.first, self.last, self.tl = s, s == 0, s == n_stages - 1, tl
        self.embed = parts.embed if self.first else None
        self.head = parts.head if self.last else None
        self.blocks: list[Block] = [parts.blocks[i] for i in layers]
        self.mods = nn.ModuleList()
        for b in self.blocks:
            self.mods.extend([b.attn_norm, b.attn, b.ffn_norm] + ([b.ffn] if b.ffn is not None else []))
        self.moe = nn.ModuleDict({str(i): m for i, m in moe.items() if i in layers})
        self.extra = nn.ModuleList([m for m in (self.embed, self.head) if m is not None])

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        tl, h = self.tl, x
        if self.first:
            with tl.span("embed(F)"):
                h = self.embed(x)
        for b in self.blocks:
            L = b.layer
            a_in = mark(h, tl, "attn", L, "in")
            with tl.span("attn(F)", L):
                a = b.attn(b.attn_norm(a_in))
            h = h + mark(a, tl, "attn", L, "out")
            if b.ffn is not None:
                f_in = mark(h, tl, "mlp", L, "in")
                with tl.span("mlp(F)", L):
                    f = b.ffn(b.ffn_norm(f_in))
                h = h + mark(f, tl, "mlp", L, "out")
            else:
                with tl.span("gate(F)", L):  # the MoE norm belongs to the gate's work (components.py profiles both)
                    hn = b.ffn_norm(h)
                h = h + self.moe[str(L)](hn)
        if not self.last:
            return h
        with tl.span("head(F)"):
            logits = self.head(h)
            return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())


@dataclass(kw_only=True)
class _Rank:
    """What one rank holds: its position, the plan, its stages (materialised), its EP MoE layers, parameters
    and optimizer, and the timeline every span is recorded on."""

    me: Coord
    pl: object
    layers: list
    stage_ids: list[int]
    stages: dict
    moe: dict
    parts: object
    dense_params: list
    expert_params: list
    opt: object
    tl: Timeline
    dtype: torch.dtype
    acts: list  # this rank's schedule, parsed once: its ops in order (``schedule.parse``)
    drop_fp8_forward: bool = True  # free the FP8 forward copies after the last forward (decided after warm-up)


def _build_rank(ctx, cfg, groups, pl, me: Coord) -> _Rank:
    spec, dev = ctx.spec, ctx.device
    tl = Timeline(dev)
    layers = stage_layers(cfg.num_hidden_layers, pl.n_stages)
    parts = build(cfg, spec.seed, fp8=spec.fp8_compute)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    moe: dict[int, EPMoE] = {}
    stage_ids = pl.stages_of(me.pp)
    mine = {i for s in stage_ids for i in layers[s]}
    Er = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
    for b in parts.blocks:
        if b.is_moe and b.layer in mine:
            moe[b.layer] = EPMoE(cfg=cfg, layer=b.layer, gate_weight=b.gate_weight, gate_bias=b.gate_bias,
                                 experts=b.expert_slice(me.ep * Er, (me.ep + 1) * Er), n_local=Er, shared=b.shared,
                                 group=groups.ep, ep_rank=me.ep, ep_size=spec.ep, node_size=spec.node_size,
                                 fp8=spec.fp8, tl=tl)
    stages = {s: materialize(Stage(s=s, n_stages=pl.n_stages, parts=parts, layers=layers[s], moe=moe, tl=tl), dev,
                             dtype, spec.seed * 7919 + s) for s in stage_ids}
    for m in moe.values():
        if m.gate_bias is not None:
            m.gate_bias = m.gate_bias.to(dev)
    expert_params = [p for m in moe.values() for p in m.experts.parameters()]
    eids = {id(p) for p in expert_params}
    dense_params = [p for st in stages.values() for p in st.parameters() if id(p) not in eids]
    dense_params = list({id(p): p for p in dense_params}.values())
    opt = torch.optim.AdamW(dense_params + expert_params, lr=1e-4, fused=dev.type == "cuda")
    return _Rank(me=me, pl=pl, layers=layers, stage_ids=stage_ids, stages=stages, moe=moe, parts=parts,
                 dense_params=dense_params, expert_params=expert_params, opt=opt, tl=tl, dtype=dtype,
                 acts=[a for item in pl.actions[me.pp] for a in parse(item)])


def run_rank(ctx, probe=None, probes: list | None = None) -> dict:
    """``probe(ctx, quick=True)`` (the calibration's) runs before every measured step when given; its results
    are appended to ``probes``. It runs outside the timed region and its numbers only feed the predictor."""
    spec, rank, dev = ctx.spec, ctx.rank, ctx.device
    cfg = load_model_config(spec.model)
    nmb = spec.n_microbatches
    pl = plan(spec.schedule, spec.pp, nmb)
    me = coord(rank, spec.ep, spec.pp)
    groups = ctx.extra.get("groups") or make_groups(rank, spec.ep, spec.pp, spec.dp, pl.layout == "bidirectional")
    ctx.extra["groups"] = groups
    R = _build_rank(ctx, cfg, groups, pl, me)
    tl = R.tl
    gen = torch.Generator().manual_seed(spec.seed * 1000003 + me.dp * 1009 + me.ep)
    B, S, D = spec.micro_batch, spec.seq_len, cfg.hidden_size
    step_s: list[float] = []
    step_t0: list[float] = []  # CLOCK_MONOTONIC at each measured step's start (the ranks of one host compare)
    step_load: list[dict] = []
    step_alloc: list[dict] = []
    prof_ops: list[dict] = []
    for step in range(spec.steps + 1):
        tl.step, tl.recording = step, spec.warmup <= step < spec.steps
        profiling = step == spec.steps
        if tl.recording and probe is not None:  # re-sample this machine's speed right before the step
            probes.append(probe(ctx, quick=True))
        ctx.maybe_fault(step)
        tokens = torch.randint(0, cfg.vocab_size, (nmb, B, S + 1), generator=gen).to(dev)
        ctx.collective("barrier")
        dist.barrier()
        if spec.nnodes == 1 and spec.world_size > 1:
            _start_together(dev)
        ctx.status.enter("compute", step)
        prof = _profiler(dev) if profiling else None
        if prof:
            prof.__enter__()
            tl.profiling = True
        # counters read outside the timed step (0.1-0.2 ms after the start's sleep: no training step's work)
        snap = load.snapshot()
        alloc = _allocator(dev, reset_peak=True)
        t0 = tl.now()
        _pipeline_step(ctx, R, tokens, D)
        _update(tl, R, groups, spec.fp8_compute)
        t1 = tl.now()
        _decide_fp8_drop(R, spec, dev, step)
        tl.profiling = False
        if prof:
            prof.__exit__(None, None, None)
            prof.export_chrome_trace(str(Path(spec.out_dir) / f"trace_rank{rank}.json"))
            prof_ops = _top_ops(prof)
        if tl.recording:
            step_s.append(t1 - t0)
            step_t0.append(t0)
            step_load.append(load.between(snap, load.snapshot()))
            step_alloc.append({k: v - alloc.get(k, 0) for k, v in _allocator(dev).items()})
    res = _summarise(ctx, tl, step_s, prof_ops, R.moe, R.stage_ids, R.layers, pl.source, pl.actions[me.pp],
                     R.parts.source, me)
    res.update(layout=pl.layout, n_stages=pl.n_stages, load_per_step=step_load, allocator_per_step=step_alloc,
               step_t0_s=step_t0)
    res.update(_fp8_result(R, dev) if spec.fp8_compute else {})
    res.update(_sizes(R, groups, dev), microbatches=nmb, tokens_per_mb=B * S, hidden=D)
    return res


START_MARGIN_S = 0.010  # > the barrier's exit skew: up to 9 ms measured on the loaded 2-core box
SPIN_S = 0.001


def _start_together(dev: torch.device, group=None) -> None:
    """Every rank of one host (of ``group``) starts the step at the same instant: the first rank broadcasts
    ``now + START_MARGIN_S`` on CLOCK_MONOTONIC (``time.perf_counter``, one clock for all processes of a host) and
    each rank sleeps, then spins the last ``SPIN_S``, until then. A barrier alone releases its members one
    wake-up apart (0.1-9 ms on the shared 2-core box), and a rank released early waits inside its timed step for
    a peer not yet started, a wait no training step without the harness's barrier has. Ranks on several hosts
    keep the barrier."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t = torch.tensor([time.perf_counter() + START_MARGIN_S], dtype=torch.float64, device=dev)
    dist.broadcast(t, dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    wait_until(float(t.item()))


def wait_until(at: float) -> None:
    """Sleep, then spin the last ``SPIN_S``, until ``at`` (``time.perf_counter``): a step's idle start."""
    left = at - time.perf_counter() - SPIN_S
    if left > 0:
        time.sleep(left)
    while time.perf_counter() < at:
        pass


def _update(tl, R, groups, fp8_compute: bool) -> None:
    """After the pipeline: the gradient all-reduces, the optimizer step and the FP8 weight copies' refresh."""
    if groups.replica_size > 1 or groups.dp_size > 1:  # one replica: no all-reduce, no span (its sync is glue)
        with tl.span("allreduce"):
            sync_gradients(tl, R.dense_params, R.expert_params, groups)
    with tl.span("optim"):
        R.opt.step()
        R.opt.zero_grad(set_to_none=True)
    if fp8_compute:  # FP8 weight copies re-quantised once per optimizer step, in place (V3 §3.3)
        with tl.span("requant"):
            requantize_fp8_weights()


def _sizes(R, groups, dev: torch.device) -> dict:
    """The rank's parameter counts and group sizes, as the predictor reads them."""
    allp = R.dense_params + R.expert_params
    return dict(n_params=sum(p.numel() for p in allp), n_tensors=len(allp),
                n_dense_params=sum(p.numel() for p in R.dense_params),
                n_expert_params=sum(p.numel() for p in R.expert_params),
                elt_bytes=torch.finfo(R.dtype).bits // 8, replica_size=groups.replica_size, dp_size=groups.dp_size,
                device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu")


def _allocator(dev: torch.device, reset_peak: bool = False) -> dict:
    """The CUDA caching allocator's counters (``torch.cuda.memory_stats``): a step's device allocations
    (cudaMalloc) and frees, and its retries (every cached block freed to satisfy a request, a device sync),
    host time inside the spans that a warm training process does not pay. Empty on CPU. ``reset_peak``: also
    restart the high-water mark (a step's peak, read by ``_must_drop_fp8_forward``)."""
    if dev.type != "cuda":
        return {}
    if reset_peak:
        torch.cuda.reset_peak_memory_stats(dev)
    s = torch.cuda.memory_stats(dev)
    return {k: s.get(k, 0) for k in ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_ooms")}


def _pipeline_step(ctx, R: _Rank, tokens: torch.Tensor, D: int) -> None:
    """This rank's actions of one step: its chunks' forwards and backwards, activations and gradients to and from
    the neighbouring stages (point-to-point, or locally between two chunks in the V layout); waits for its sends."""
    spec, me, pl, tl = ctx.spec, R.me, R.pl, R.tl
    nmb, B, S = spec.n_microbatches, spec.micro_batch, spec.seq_len
    timeout = timedelta(seconds=spec.collective_timeout_s)

    def grank(p: int) -> int:
        return rank_of(Coord(dp=me.dp, pp=p, ep=me.ep), spec.ep, spec.pp)

    def tag(chunk: int, mb: int, grad: int) -> int:  # the RECEIVING position's chunk and micro-batch
        return (pl.data_index(chunk, mb) * 2 + chunk) * 2 + grad

    sends = []
    saved: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    local: dict[tuple[str, int], torch.Tensor] = {}  # hand-offs between two chunks of this rank (V layout)

    def hand(kind: str, t: torch.Tensor, nb: tuple[int, int], mb: int, grad: int) -> None:
        """To the neighbouring (stage, chunk) ``nb``: kept locally when this rank holds it, else sent."""
        if nb[0] == me.pp:
            local[(kind, mb)] = t
        else:
            sends.append(_send(tl, t, grank(nb[0]), tag(nb[1], mb, grad)))

    acts = R.acts
    last_f = max((i for i, a in enumerate(acts) if a.kind == "F"), default=-1)
    for i, a in enumerate(acts):
        if i == last_f + 1 and spec.fp8_compute and R.drop_fp8_forward:
            _free_forward_fp8_copies()
        s = pl.stage_of(me.pp, a.chunk)
        prev, nxt = pl.neighbours(me.pp, a.chunk)
        tl.mb = di = pl.data_index(a.chunk, a.mb)
        if a.kind == "F":
            if prev is None:
                x = tokens[di, :, :-1]
            elif prev[0] == me.pp:
                x = local.pop(("act", a.mb)).detach().requires_grad_()
            else:
                x = torch.empty(B, S, D, dtype=R.dtype, device=ctx.device)
                _recv(tl, x, grank(prev[0]), tag(a.chunk, a.mb, 0), timeout)
                x.requires_grad_()
            out = R.stages[s](x, tokens[di, :, 1:])
            saved[(a.chunk, a.mb)] = (x, out / nmb if nxt is None else out)  # the last stage's loss, averaged
            if nxt is not None:
                hand("act", out.detach(), nxt, a.mb, 0)
        elif a.kind in ("B", "BW"):
            x, out = saved.pop((a.chunk, a.mb))
            if nxt is None:
                out.backward()
            else:
                if nxt[0] == me.pp:
                    g = local.pop(("grad", a.mb))
                else:
                    g = torch.empty_like(out)
                    _recv(tl, g, grank(nxt[0]), tag(a.chunk, a.mb, 1), timeout)
                torch.autograd.backward(out, g)
            if prev is not None:
                hand("grad", x.grad, prev, a.mb, 1)
    for w in sends:
        w.wait(timeout)


def _fp8_result(R: _Rank, dev: torch.device) -> dict:
    return {"requant_bytes_per_param": requant_bytes_per_element(dev),
            "fp8_forward_copies": "dropped after the last forward" if R.drop_fp8_forward else "kept"}


def _decide_fp8_drop(R: _Rank, spec, dev: torch.device, step: int) -> None:
    """After each warm-up step of an FP8 run: whether the measured steps drop the FP8 forward copies. Once a step
    has kept them the rank keeps them (a later step's peak already holds the copies)."""
    if spec.fp8_compute and step < spec.warmup and R.drop_fp8_forward:
        R.drop_fp8_forward = _must_drop_fp8_forward(dev)


def _must_drop_fp8_forward(dev: torch.device) -> bool:
    """After a warm-up step (which dropped them): whether the measured steps free the FP8 forward copies after
    their last forward, i.e. keeping them would not fit on the card (nn/fp8_weights.py
    ``keep_forward_operands``, on the step's peak and the copies the re-quantisation has just remade). On the
    CPU always: host memory is the scarce one there."""
    if dev.type != "cuda":
        return True
    cap = torch.cuda.get_device_properties(dev).total_memory
    return not keep_forward_operands(torch.cuda.max_memory_allocated(dev), forward_operand_bytes(), cap)


def _free_forward_fp8_copies() -> None:
    """After this rank's last forward of the step no GEMM needs the FP8 forward copies of the weights until the
    re-quantisation after the optimizer; the backwards hold the transposed copies they use. One V3 layer's 256
    experts have 10.5 GiB of forward copies: with them a 16k-token one-layer step on one H200 (BF16 weights,
    gradients, AdamW states and both FP8 copies: ~118 GiB before activations) ran out of memory."""
    drop_forward_operands()


def _send(tl: Timeline, t: torch.Tensor, dst: int, tag: int):
    tl.count_bytes("p2p", t.numel() * t.element_size())
    return dist.isend(t.contiguous(), dst, tag=tag)


def _recv(tl: Timeline, buf: torch.Tensor, src: int, tag: int, timeout: timedelta) -> None:
    with tl.span("p2p_wait"):
        dist.irecv(buf, src, tag=tag).wait(timeout)


def sync_gradients(tl: Timeline, dense: list[torch.Tensor], experts: list[torch.Tensor], groups) -> None:
    """The step's gradient all-reduces: dense gradients over the replica group, the experts' over the DP group."""
    _allreduce(tl, dense, groups.replica, groups.replica_size)
    _allreduce(tl, experts, groups.dp, groups.dp_size)


def _allreduce(tl: Timeline, params: list[torch.Tensor], group, size: int, bucket: int = 1 << 26) -> None:
    """Mean of gradients over ``group``, flattened in buckets of <= ``bucket`` elements (missing grads = 0, so
    every rank sends the same buffers); buckets keep the extra memory small at DeepSeek-V3 width."""
    if size <= 1 or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    chunk: list[torch.Tensor] = []
    n = 0
    for i, p in enumerate(params):
        chunk.append(p)
        n += p.numel()
        if n >= bucket or i == len(params) - 1:
            grads = [q.grad for q in chunk]
            flat = _flatten_dense_tensors(grads)
            tl.count_bytes("allreduce", flat.numel() * flat.element_size())
            dist.all_reduce(flat, group=group)
            flat /= size
            for q, g in zip(chunk, _unflatten_dense_tensors(flat, grads)):
                q.grad.copy_(g)
            chunk, n = [], 0


def _profiler(dev: torch.device):
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=acts)


def _top_ops(prof, n: int = 25) -> list[dict]:
    rows = []
    for e in prof.key_averages():
        dev_us = getattr(e, "self_device_time_total", 0.0) or getattr(e, "self_cuda_time_total", 0.0) or 0.0
        rows.append({"op": e.key, "count": e.count, "self_cpu_us": e.self_cpu_time_total, "self_device_us": dev_us})
    rows.sort(key=lambda r: -(r["self_device_us"] or r["self_cpu_us"]))
    return rows[:n]


def _summarise(ctx, tl, step_s, prof_ops, moe, stage_ids, layers, sched_src, actions, source, me) -> dict:
    spec = ctx.spec
    n = max(len(step_s), 1)
    per_name: dict[str, float] = defaultdict(float)
    pos = {s: i for i, s in enumerate(sorted({e.step for e in tl.events}))}
    by_step: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(pos))
    cpu_by_step: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(pos))  # the spans' own CPU seconds
    for e in tl.events:
        per_name[e.name] += e.dur / n
        i = pos[e.step]
        by_step[e.name][i] += e.dur
        cpu_by_step[e.name][i] += e.cpu or 0.0
    t_first = min((e.t0 for e in tl.events if e.step == spec.steps - 1), default=0.0)
    last = [dict(name=e.name, t0=e.t0 - t_first, t1=e.t1 - t_first, mb=e.mb, layer=e.layer, cpu=e.cpu)
            for e in tl.events if e.step == spec.steps - 1]
    return {
        "rank": ctx.rank, "coord": {"dp": me.dp, "pp": me.pp, "ep": me.ep},
        "model_source": source, "schedule_source": sched_src, "actions": actions,
        "stages": {str(s): list(layers[s]) for s in stage_ids},
        "step_s": step_s, "step_median_s": statistics.median(step_s) if step_s else 0.0,
        "component_s_per_step": dict(per_name),
        "component_s_by_step": dict(by_step) if len(pos) == len(step_s) else {},
        "component_cpu_s_by_step": dict(cpu_by_step) if len(pos) == len(step_s) else {},
        "bytes_per_step": {k: v / n for k, v in tl.bytes.items()},
        "bytes_self_per_step": {k: v / n for k, v in tl.bytes_self.items()},
        "last_step_events": last,
        "last_step_t0": t_first,  # CLOCK_MONOTONIC (time.perf_counter): the ranks of one host compare directly
        "routing": {str(L): m.routing for L, m in moe.items()},
        "profiler_top_ops": prof_ops,
        "trace": f"trace_rank{ctx.rank}.json",
    }
