"""Transport micro-benchmark: alpha-beta fits of this machine's process-group transport.

Run as a torchrun job (``job="calibrate"``) before a validation run. Over message sizes n (bytes):
* p2p ping-pong rank 0 <-> rank 1: one-way time = round trip / 2;
* ``all_to_all_single`` over the run's EP group (all ranks without EP) with n bytes to every peer (fitted
  against n * (R - 1), the bytes a rank sends off-rank, which is what the predictor feeds it);
* ``all_reduce`` of n bytes over all ranks.
Each fit is t(n) = alpha + n / beta (Hockney's model; Hockney 1994, "The communication challenge for MPP"),
least squares over the sizes' mean times. On one CPU host the collectives are timed from their last member's
entry and their exits' skew is kept (``_Last``). The p2p fit becomes the transport latency/bandwidth of
``topologies/local-cpu.yaml``; the collective fits are kept beside it for the predictor.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from dsv3sim.config import load_model_config
from dsv3sim.validate.alpha_beta import fit
from dsv3sim.validate.components import profile_components, rank_params
from dsv3sim.validate.layout import coord, make_groups
from dsv3sim.validate.nn_adapter import build
from dsv3sim.validate.schedule import plan
from dsv3sim.validate.timeline import Timeline
from dsv3sim.validate.train import sync_gradients

GAP_S = 3e-3  # compute before each timed collective: how the run uses them (see _time)
# The all-to-all is also swept after shorter compute gaps: the wake-up a blocked rank pays grows with the time
# its communication thread slept (in the run a dispatch follows the layout exchange at once, a combine follows
# ~1 ms of expert compute). Key "all_to_all@<gap us>"; "all_to_all" is the GAP_S point.
A2A_GAPS_S = (0.0, 1e-3)


def compute_for(gap_s: float) -> None:
    """Small matrix products for ``gap_s`` seconds of wall time: the compute before a timed collective."""
    a = torch.ones(64, 64)
    end = time.perf_counter() + gap_s
    while time.perf_counter() < end:
        torch.mm(a, a)


def _time(fn, iters: int, sync, rel: list[float] | None = None, gap_s: float = 0.0, last=None) -> float:
    """Mean time of fn() over ``iters``. With ``gap_s`` every call follows that much compute (untimed): in the
    run a collective always follows a compute segment, and a process that computed and then blocks on a
    socket pays the wake-up of its communication thread, which back-to-back collectives do not see.

    ``last`` (a collective's members on one host, ``_Last``): each call is timed from the moment its last
    member entered, not from this rank's own entry. A rank that entered early waits there for a peer that was
    still busy or descheduled when its gap ended; the step model prices that wait itself (the lockstep meeting
    waits for the latest rank's clock plus the expected lateness of the slowest, ``measured_lanes.Lanes``), so
    a fit that also held it would count it twice (measured on the 2-core box: the backward all-to-alls +50..+470 %
    over the run with the own-entry fit)."""
    fn()  # warm-up
    t_in, t_out = [], []
    for _ in range(iters):
        if gap_s:
            compute_for(gap_s)
        sync()
        t_in.append(time.perf_counter())
        fn()
        sync()
        t_out.append(time.perf_counter())
    starts = last.latest(t_in, t_out) if last is not None else t_in
    ts = [max(t1 - t0, 0.0) for t0, t1 in zip(starts, t_out)]
    m = statistics.fmean(ts)
    if rel is not None and m > 0:
        rel += [t / m for t in ts]
    return m  # the mean: a step's time is a sum, so its expectation is what adds up


class _Last:
    """The latest entry time of every call among a group's members: ``time.perf_counter`` is the host's
    CLOCK_MONOTONIC, one clock for all processes of one machine, so the members' entry stamps compare directly
    (all-gathered over the group after the timed calls). ``of(ctx, group)`` is None where they do not compare
    (several hosts) or the group is one rank."""

    def __init__(self, group, size: int, members: tuple[int, ...] | None = None) -> None:
        self.group, self.size, self.members = group, size, members
        self.exit_skew: list[float] = []  # per call: the last member's exit - the members' mean exit
        self.entry_wait: list[float] = []  # per call: the last member's entry - this member's (kept apart)

    @classmethod
    def of(cls, ctx, group=None, size: int | None = None, members: tuple[int, ...] | None = None):
        """``members``: the group ranks whose entries count (a call between two ranks of a larger group)."""
        size = ctx.world if size is None else size
        if ctx.spec.nnodes > 1 or ctx.device.type != "cpu" or size < 2:
            return None
        return cls(group, size, members)

    def latest(self, t_in: list[float], t_out: list[float]) -> list[float]:
        """The latest entry of every call; records the exits' skew: the members leave a collective when each
        one's thread is woken from it, not at once, and the next meeting waits for the last of them."""
        mine = torch.tensor([t_in, t_out], dtype=torch.float64)
        every = torch.stack(self._gather(mine))  # [members, 2, calls]
        if self.members is not None:
            every = every[list(self.members)]
        outs = every[:, 1]
        self.exit_skew += (outs.amax(0) - outs.mean(0)).tolist()
        latest = every[:, 0].amax(0).tolist()
        self.entry_wait += [t1 - t0 for t0, t1 in zip(t_in, latest)]
        return latest

    def _gather(self, x: torch.Tensor) -> list[torch.Tensor]:
        every = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(every, x, group=self.group)
        return every


def run_rank(ctx) -> dict:
    """The calibration phase: one full probe. A train job adds quick probes between its steps."""
    ctx.maybe_fault(0)
    return {"rank": ctx.rank, "world": ctx.world, "probes": [probe(ctx)]}


def probe(ctx, quick: bool = False) -> dict:
    """One probe on this rank: transport sweep + (with a model) component profile + gradient sync.

    ``quick`` (between training steps) uses every other size and a third of the iterations, so that drifts in
    this machine's load are sampled throughout the run; the predictor pools all probes. Rank 0's transport
    numbers are the authoritative ones (it takes part in every pattern)."""
    spec, rank, world, dev = ctx.spec, ctx.rank, ctx.world, ctx.device
    sizes = spec.calib_sizes[::2] if quick else spec.calib_sizes
    iters = max(spec.calib_iters // 3, 3) if quick else spec.calib_iters
    rows: dict[str, list[tuple[int, float]]] = {"p2p": [], "all_to_all": [], "all_reduce": []}
    rel: dict[str, list[float]] = {k: [] for k in rows}  # sample / mean: the transport's jitter
    last = None  # the all-to-all's members (its exit skews pool over every size and gap)
    pair = _Last.of(ctx, members=(0, 1))  # the ping-pong's two ranks: each round trip from the later one's entry
    for size in sizes:
        numel = max(size // 4, 1)
        buf = torch.ones(numel, dtype=torch.float32, device=dev)
        if world >= 2:
            ctx.collective(f"p2p:{size}")

            def ping() -> None:
                if rank == 0:
                    dist.send(buf, 1)
                    dist.recv(buf, 1)
                elif rank == 1:
                    dist.recv(buf, 0)
                    dist.send(buf, 0)
            rows["p2p"].append((numel * 4, _time(ping, iters, ctx.sync, rel["p2p"], GAP_S, pair) / 2))
            dist.barrier()
            ctx.collective(f"all_to_all:{size}")
            last = _a2a_sweep(ctx, numel, iters, rows, rel, last)
        ctx.collective(f"all_reduce:{size}")
        rows["all_reduce"].append((numel * 4, _time(lambda: dist.all_reduce(buf), iters, ctx.sync,
                                                   rel["all_reduce"], GAP_S, _Last.of(ctx))))
    fits = {}
    for k, pts in rows.items():
        if len(pts) >= 2:
            fits[k] = fit([p[0] for p in pts], [p[1] for p in pts]).to_dict()
    out = {"quick": quick, "points": rows, "fits": fits, "rel": rel}
    if last is not None and last.exit_skew:
        out["all_to_all_exit_skew_s"] = statistics.fmean(last.exit_skew)
        out["all_to_all_entry_wait_s"] = statistics.fmean(last.entry_wait)
    if spec.model and spec.pp > 1 and world > spec.ep and dev.type == "cpu":
        out["p2p_isend"] = _isend_calls(ctx, iters)
    if spec.model:
        out["components"] = _model_probe(ctx, iters, quick)
    return out


def _isend_calls(ctx, iters: int) -> list[float]:
    """Seconds of the ``isend`` call itself, as a pipeline stage makes it at a chunk's end: rank 0 hands one
    micro-batch's activation to its next stage's rank (``spec.ep``), which is computing and receives GAP_S later;
    the call returns before the transfer, but enqueues the work to gloo's thread and wakes it (0.1-0.2 ms per call
    in the runs, no span there: their ``other``). Rank 0 returns its calls' times, the other ranks []."""
    spec, rank = ctx.spec, ctx.rank
    ctx.collective("p2p_isend")
    calls: list[float] = []
    if rank in (0, spec.ep):
        cfg = load_model_config(spec.model)
        buf = torch.ones(spec.micro_batch * spec.seq_len * cfg.hidden_size, dtype=torch.float32, device=ctx.device)
        for _ in range(iters + 1):  # the first call warms the pair up
            if rank == 0:
                t0 = time.perf_counter()
                h = dist.isend(buf, spec.ep)
                calls.append(time.perf_counter() - t0)
                compute_for(GAP_S)
                h.wait()
            else:
                compute_for(GAP_S)
                dist.irecv(buf, 0).wait()
    dist.barrier()
    return calls[1:]


def _model_probe(ctx, iters: int, quick: bool) -> dict:
    """The component profile of this rank's part of the model and its gradient sync (``probe`` with a model)."""
    spec, rank, dev = ctx.spec, ctx.rank, ctx.device
    ctx.status.enter("compute")
    cfg = load_model_config(spec.model)
    # meta-built: only what the profile materialises is allocated, then freed
    parts = build(cfg, spec.seed, fp8=spec.fp8_compute)
    groups = _groups(ctx)
    ep = (groups.ep, coord(rank, spec.ep, spec.pp).ep) if spec.ep > 1 else None
    sync_after = _SyncAfter(ctx, groups) if groups.replica_size > 1 or groups.dp_size > 1 else None
    comps = profile_components(cfg, spec, dev, ctx.sync, rank, parts=parts,
                               reps=min(3, spec.profile_reps) if quick else spec.profile_reps, ep=ep,
                               grad_sync=sync_after, meet=dist.barrier if ctx.world > 1 and dev.type == "cpu" else None)
    comps["grad_sync"] = _grad_sync(ctx, cfg, iters, parts)
    del parts
    if spec.fp8_compute:  # the FP8 linears' weight cache holds the profiled weights: let them go
        from dsv3sim.nn.fp8 import clear_weight_cache

        clear_weight_cache()
    # Memory goes back to the driver after the full probe only: a quick probe sits between training steps,
    # and emptying the allocator's cache there makes the next step cudaMalloc its tensors again, which a
    # training run in steady state does not (one-layer at 16k tokens with --fp8: steps after a quick probe
    # 697 ms, the profiled step, which follows none, 541 ms even with the profiler on; shared(F) at 2 x 64
    # tokens 3.1-3.8 ms vs 0.65 ms). The allocator releases cached blocks itself when an allocation fails.
    if dev.type == "cuda" and not quick:
        torch.cuda.empty_cache()
    return comps


def _a2a_sweep(ctx, numel: int, iters: int, rows: dict, rel: dict, last):
    """``all_to_all_single`` of ``numel`` fp32 to every peer over the run's EP group (every EP group at once, as in
    the run; the world without EP) after GAP_S and after each of A2A_GAPS_S of compute; adds the points to
    ``rows`` / ``rel`` and returns the members' ``_Last`` (one per probe: its exit skews pool over the sizes)."""
    spec, world = ctx.spec, ctx.world
    grp, n = (_groups(ctx).ep, spec.ep) if 1 < spec.ep < world else (None, world)
    send = torch.ones(numel * n, dtype=torch.float32, device=ctx.device)
    recv = torch.empty_like(send)
    last = _Last.of(ctx, grp, n) if last is None else last
    for k, g in (("all_to_all", GAP_S), *((f"all_to_all@{g * 1e6:.0f}", g) for g in A2A_GAPS_S)):
        rows.setdefault(k, [])
        rel.setdefault(k, [])
        rows[k].append((numel * 4 * (n - 1), _time(lambda: dist.all_to_all_single(recv, send, group=grp),
                                                   iters, ctx.sync, rel[k], g, last)))
    return last


class _SyncAfter:
    """The run's gradient all-reduce (``train.sync_gradients``: dense gradients over the replica group, the
    experts' over the DP group) called from inside the stage pass (``stage_pass._update_context``) on the stage's real
    gradients: right after its backward, as the run calls it, and again after GAP_S of compute, as the
    ``grad_sync`` probe times it. Every call is timed from its group's latest entry (``_Last``), gathered once
    by ``times`` after the pass. In process, two gloo ranks of `tiny` on the 2-core box: 13.0 ms right after a
    forward and backward, 9.3 ms after the probe's gap (medians of 22, entries aligned by a barrier)."""

    def __init__(self, ctx, groups) -> None:
        self.ctx, self.groups = ctx, groups
        self.last = _Last.of(ctx, groups.replica, groups.replica_size)
        self.t_in: list[float] = []
        self.t_out: list[float] = []
        self.tl = Timeline(ctx.device)
        self.tl.recording = False

    def __call__(self, dense: list, experts: list, gap: bool = False) -> None:
        if gap:
            compute_for(GAP_S)
        self.ctx.sync()
        self.t_in.append(time.perf_counter())
        sync_gradients(self.tl, dense, experts, self.groups)
        self.ctx.sync()
        self.t_out.append(time.perf_counter())

    def times(self) -> list[float]:
        """Every call's seconds from its latest entry, in call order (collective: every member calls it once)."""
        starts = self.last.latest(self.t_in, self.t_out) if self.last is not None else self.t_in
        return [max(t1 - t0, 0.0) for t0, t1 in zip(starts, self.t_out)]


def _groups(ctx):
    """The run's process groups (``layout.make_groups``), made once per process (every rank calls this in the
    same order: group creation is collective)."""
    if "groups" not in ctx.extra:
        spec = ctx.spec
        mirror = plan(spec.schedule, spec.pp, spec.n_microbatches).layout == "bidirectional"
        ctx.extra["groups"] = make_groups(ctx.rank, spec.ep, spec.pp, spec.dp, mirror)
    return ctx.extra["groups"]


def _grad_sync(ctx, cfg, iters: int, parts) -> dict:
    """The run's gradient all-reduces (same buffers, same groups, same code as ``train.sync_gradients``) timed
    here on synthetic gradients: dense grads over the replica group, expert grads over the DP group."""
    spec = ctx.spec
    groups = _groups(ctx)
    if groups.replica_size <= 1 and groups.dp_size <= 1:  # nothing to all-reduce (one replica)
        return {"F": 0.0, "B": 0.0, "F_s": [0.0], "B_s": [0.0], "bytes": 0}
    dense, experts = rank_params(parts, cfg, spec, ctx.rank)
    dtype = torch.bfloat16 if ctx.device.type == "cuda" else torch.float32

    def fake(ps):
        out = [torch.nn.Parameter(torch.zeros(p.shape, dtype=dtype, device=ctx.device)) for p in ps]
        for p in out:
            p.grad = torch.randn_like(p)
        return out
    dense, experts = fake(dense), fake(experts)
    tl = Timeline(ctx.device)
    tl.recording = False
    ctx.collective("grad_sync")
    rel: list[float] = []

    def sync_all() -> None:
        sync_gradients(tl, dense, experts, groups)
    # timed from the latest entry of the rank's own sync group (the replica group holds its DP group): the wait
    # for late members is allreduce_wait; the world's latest entry fell after a stage's whole call when the
    # stages sync apart (pp2 x ep2: 0 s samples)
    m = _time(sync_all, iters, ctx.sync, rel, GAP_S, _Last.of(ctx, groups.replica, groups.replica_size))
    dist.barrier()
    return {"F": m, "B": 0.0, "F_rel": rel, "B_rel": [1.0],
            "bytes": sum(p.numel() * p.element_size() for p in dense + experts)}
