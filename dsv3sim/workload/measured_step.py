"""A training step on a machine described by a *measured component table* (a CPU or a single GPU that
``dsv3sim validate`` calibrated) instead of GPU kernel tables: the step model ``validate`` predicts with, and
that ``dsv3sim run`` reproduces from the scenario file ``validate`` writes.

Inputs (all ordinary files a scenario names):
* ``TrainingWorkload.component_table``: JSON written by the calibration (``validate/component_table.py``):
  per rank, forward/backward seconds of every model component the run executes (attention block, dense FFN,
  gate work, shared experts, head + loss, embedding; routed experts as t = a + b * rows), the host work
  between the layout all-to-alls of one MoE layer (``layout_host_s``), the autograd
  engine's start-up per backward call, the optimizer step on the rank's parameters, the gradient all-reduce
  on the run's exact buffers, each component's relative spread (cv); the run's stage split and its routing
  (rows each EP rank sends to each other rank per micro-batch and MoE layer, per DP replica; routing is an
  input like a routing trace, never a timing).
* the topology YAML: p2p = the scale-up link (alpha = 2 hops x latency_us, beta = bandwidth_GBps) and the
  ``collectives`` fits (``all_to_all``, ``all_reduce``: t = alpha + bytes / beta, Hockney 1994).

Composition:
* pipeline: ``dsv3sim.parallel.generate(schedule, pp, microbatches)`` executed by ``dsv3sim.parallel.execute``
  (longest path over the action DAG, the same executor as ``workload.training``), one pipeline per DP replica,
  p2p = the table's ``p2p_hop_s`` (the expected one-way time measured around the activation's size) where the
  table has one, else activation bytes over the p2p fit; with the table's ``p2p_notify_s`` (gloo on CPU) a
  receive posted after its send waits notify + hop from its post (the executor's ``p2p_rendezvous``); a chunk
  that hands its output to another rank pays the ``isend`` call (``p2p_isend_s``) as framework time. B and BW
  run the full backward, W is empty (eager PyTorch computes weight gradients with the input gradients); an
  overlapped pair runs as its two ops in order, as the run does.
* one chunk on one pipeline rank: every EP rank of the replica runs the chunk's layers in lockstep; at each
  all-to-all (layout, dispatch, combine; each dispatch/combine span also encodes the rows sent and decodes those
  received, the table's ``codec`` fit) all EP ranks meet: the all-to-all starts at the latest rank's clock
  plus the expected lateness of the slowest of n jittering ranks, sigma x E[max of n N(0,1)] (order
  statistics, Blom's approximation), sigma = cv x sqrt(sum of the squared component times since the last
  meeting) (each component call an independent sample of its profiled spread: variances add), and costs the
  all_to_all fit on the largest
  off-rank bytes any rank sends or receives; the fit is the one calibrated after as much compute as the ranks
  did since their previous collective (a rank whose communication thread slept longer pays a longer wake-up;
  the dispatch follows the layout exchange with none); the fit is timed from the last rank's entry (the
  waits for late ranks are the lateness above, not transfer), and every meeting after the chunk's first also
  waits for the ranks' staggered exits from the previous one (``a2a_exit_skew_s``, measured by the same sweep).
* EP exchanges the table measured in the calibration's whole-stage pass (``comm_in_stage_s`` of every rank of
  the group: wall per MoE layer of layout, dispatch, combine forward and backward, waits and wake-ups as a
  stage has them) cost the ranks' mean of that wall past the latest rank's clock instead of the fits, the
  lateness and the codec (``_moe_layer_in_stage``), the gate weights' backward exchange (``layout(B)``)
  included where measured; between them the ranks' compute and framework time run at the stage's measured
  pace (``measured_lanes.Lanes``).
* ``allreduce``: the calibrated gradient all-reduce; ``allreduce_wait``: the members arrive at their own
  pipeline ends, and each arrives late by its jitter since the last point it met the others: sigma of that
  compute x E[max of n N(0,1)] (DP replicas never meet before it: their whole step; EP ranks: the last
  chunk's compute after its last all-to-all).
* ``optim``: the measured optimizer step (on an oversubscribed pipeline host, shared only among the ranks that step
  at once: ``cpu_sharing.optimizer_speeds``). ``framework``: per layer and pass the glue the calibration measured
  (the run's stage code minus its timed spans: residual adds, marks, the autograd graph between components;
  on CPU with EP the MoE layers' EP path with real all-to-alls, its layout bookkeeping included), the autograd
  start-up of every backward call, and the backward of gate, head and embedding (timed in the calibration, not
  separately in a run).
* ``requant`` (FP8 compute): the FP8 weight copies re-quantised once after the optimizer, as calibrated.
The step = max over ranks of the end of the optimizer. Components are per step, mean over ranks.

Not modelled here (the GPU step of ``workload.training`` prices them): SM partitions, DeepEP kernels, HBM
interference, the production element-wise kernels, ZeRO-1 (a CPU run all-reduces gradients, no shards).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from itertools import pairwise

from dsv3sim.config.scenario import Scenario, TrainingWorkload
from dsv3sim.config.topology import load_topology_config
from dsv3sim.cost.pricing import gpu_hours_per_trillion_tokens as gph_per_t
from dsv3sim.parallel import execute, generate
from dsv3sim.parallel.actions import Action
from dsv3sim.results import Infeasible, TrainingResult
from dsv3sim.workload import cpu_sharing
from dsv3sim.workload.measured_lanes import Lanes, lateness_of_slowest
from dsv3sim.workload.measured_table import TableError, load_table


class Transport:
    """Alpha-beta fits of the topology: p2p from the scale-up link, the collectives from ``collectives``."""

    def __init__(self, topology: str) -> None:
        cfg = load_topology_config(topology)
        su = cfg.scale_up
        self.p2p = (2.0 * su.latency + su.message_latency, su.bandwidth * su.achievable_fraction)
        self.fits = {k: (lat, bw) for k, lat, bw in cfg.collectives}
        self.name = cfg.name

        # fits of one collective after different compute gaps ("all_to_all@<gap us>"): sorted (gap s, fit)
        self.gaps: dict[str, list] = defaultdict(list)
        for k, v in self.fits.items():
            if "@" in k:
                base, g = k.split("@", 1)
                self.gaps[base].append((float(g) * 1e-6, v))
        for v in self.gaps.values():
            v.sort()

    def time(self, kind: str, n_bytes: float, after_s: float | None = None) -> float:
        """``after_s``: compute the ranks did since their last collective (wake-up cost, calibrate.py):
        linear between the calibrated gaps, the nearest gap outside them."""
        n = max(n_bytes, 0.0)
        pts = self.gaps.get(kind)
        if after_s is not None and pts:
            ts = [(g, a + n / b) for g, (a, b) in pts]
            if after_s <= ts[0][0]:
                return ts[0][1]
            for (g0, t0), (g1, t1) in pairwise(ts):
                if after_s <= g1:
                    return t0 + (t1 - t0) * (after_s - g0) / (g1 - g0)
            return ts[-1][1]
        a, b = self.p2p if kind == "p2p" else self.fits.get(kind, (None, None))
        if a is None:
            raise TableError(f"topology {self.name}: no {kind!r} fit under collectives (calibrate with validate)")
        return a + n / b


def _a2a_bytes(send: list[list[float]], row_bytes: float, reverse: bool) -> float:
    """Largest off-rank bytes one rank sends or receives; reverse swaps senders and receivers (combine)."""
    n = len(send)
    mat = [list(c) for c in zip(*send)] if reverse else send
    sent = [sum(mat[i][j] for j in range(n) if j != i) for i in range(n)]
    recv = [sum(mat[j][i] for j in range(n) if j != i) for i in range(n)]
    return max(max(sent), max(recv)) * row_bytes


def _codec(rank: dict, wire: str, rows: float) -> float:
    """Encoding the rows a rank sends and decoding those it receives (``rows`` = their mean), t = a + b * rows."""
    ab = (rank.get("codec") or {}).get(wire)
    return ab[0] + ab[1] * rows if ab and rows > 0 else 0.0


def _codec_rows(send: list[list[float]], reverse: bool) -> list[float]:
    """Per rank: mean of the rows it encodes (all it sends, to itself too) and decodes (all it receives)."""
    n = len(send)
    mat = [list(c) for c in zip(*send)] if reverse else send
    return [(sum(mat[i]) + sum(mat[j][i] for j in range(n))) / 2 for i in range(n)]


def _fb(rank: dict, name: str, d: int) -> float:
    return float(rank["components"].get(name, (0.0, 0.0))[d])


def _embed(rank: dict, after: str) -> float:
    """The embedding lookup's time after a pass ``after`` (F or B; the step's start counts as B, ``_after``) on its
    rank's core (``embed_after_s``: its caches hold what that pass left), else the table's one in-stage time."""
    return float((rank.get("embed_after_s") or {}).get("B" if after == "start" else after, _fb(rank, "embed", 0)))


def _experts(rank: dict, rows: float, d: int) -> float:
    a, b = rank["expert"]["fwd" if d == 0 else "bwd"]
    return a + b * rows if rows > 0 else 0.0


def _moe_layer(lanes: Lanes, kind: str, rr: dict, a2a, wires: tuple[str, str], rb_d: float, rb_c: float) -> None:
    """One MoE layer's gate, experts and shared expert; with EP > 1 the DeepEP layout, dispatch and combine
    all-to-alls between them (forward: dispatch in ``rb_d`` bytes per row, combine in ``rb_c``; backward:
    both in ``rb_c``); each dispatch/combine span also encodes the rows sent and decodes those received in its
    wire format (``wires``: dispatch, combine; the table's ``codec`` fit, validate/ep.py)."""
    R, ep = lanes.r, len(lanes.r)
    send, rows = rr["send_rows"], rr["expert_rows"]
    wd, wc = wires
    if ep == 1:
        _moe_layer_local(lanes, kind, rows)
        return
    if all(set(x.get("comm_in_stage_s") or {}) >= _IN_STAGE for x in R):
        _moe_layer_in_stage(lanes, kind, rr, a2a)
        return
    fwd, bwd = _codec_rows(send, False), _codec_rows(send, True)
    if kind == "F":
        lanes.compute("gate(F)", [_fb(x, "gate", 0) for x in R])
        # counts; the host work on them (``tolist``, the pair layout tensors, the gate weights' autograd
        # all-to-all: the table's ``layout_host_s``); then row ids + local experts and the pairs' gate weights
        # (FP32), the third right after the second (validate/ep.py _exchange_layout)
        lanes.meet("layout(F)", lambda s: a2a(4 * ep, s))
        lanes.compute("layout(F)", [float(x.get("layout_host_s", 0.0)) for x in R])
        lanes.meet("layout(F)", lambda s: a2a(_a2a_bytes(send, 8, False), s) + a2a(_a2a_bytes(send, 4, False), 0.0))
        lanes.compute("dispatch(F)", [_codec(x, wd, fwd[i]) for i, x in enumerate(R)])
        lanes.meet("dispatch(F)", lambda s: a2a(_a2a_bytes(send, rb_d, False), s))
        lanes.compute("mlp(F)", [_experts(x, rows[i], 0) for i, x in enumerate(R)])
        lanes.compute("combine(F)", [_codec(x, wc, bwd[i]) for i, x in enumerate(R)])
        lanes.meet("combine(F)", lambda s: a2a(_a2a_bytes(send, rb_c, True), s))
        lanes.compute("shared(F)", [_fb(x, "shared", 0) for x in R])
    else:
        lanes.compute("shared(B)", [_fb(x, "shared", 1) for x in R])
        lanes.compute("combine(B)", [_codec(x, wc, fwd[i]) for i, x in enumerate(R)])
        lanes.meet("combine(B)", lambda s: a2a(_a2a_bytes(send, rb_c, False), s))
        lanes.compute("mlp(B)", [_experts(x, rows[i], 1) for i, x in enumerate(R)])
        lanes.compute("dispatch(B)", [_codec(x, wc, bwd[i]) for i, x in enumerate(R)])
        lanes.meet("dispatch(B)", lambda s: a2a(_a2a_bytes(send, rb_c, True), s))
        # the gate weights' gradient goes back to the token ranks (the third layout all-to-all's backward;
        # autograd runs it after the dispatch's, being older), then the gate's backward
        lanes.meet("layout(B)", lambda s: a2a(_a2a_bytes(send, 4, True), s))
        lanes.compute("framework", [_fb(x, "gate", 1) for x in R])


def _moe_layer_local(lanes: Lanes, kind: str, rows: list[float]) -> None:
    """A MoE layer without EP: the gate (its backward is framework time), the experts, the shared expert."""
    R, d = lanes.r, 0 if kind == "F" else 1
    lanes.compute("gate(F)" if kind == "F" else "framework", [_fb(x, "gate", d) for x in R])
    lanes.compute(f"mlp({kind})", [_experts(x, rows[i], d) for i, x in enumerate(R)])
    lanes.compute(f"shared({kind})", [_fb(x, "shared", d) for x in R])


_IN_STAGE = {"layout(F)", "dispatch(F)", "combine(F)", "combine(B)", "dispatch(B)"}


def _moe_layer_in_stage(lanes: Lanes, kind: str, rr: dict, a2a) -> None:
    """An EP MoE layer whose exchanges the table measured in the stage (``Lanes.meet_in_stage``; each span's
    encoding and the layout's host work are inside those walls). The gate weights' backward exchange
    (``layout(B)``) too where the table has it; a table from before that span keeps the all-to-all fit."""
    R, send, rows = lanes.r, rr["send_rows"], rr["expert_rows"]
    if kind == "F":
        lanes.compute("gate(F)", [_fb(x, "gate", 0) for x in R])
        lanes.meet_in_stage("layout(F)")
        lanes.meet_in_stage("dispatch(F)")
        lanes.compute("mlp(F)", [_experts(x, rows[i], 0) for i, x in enumerate(R)])
        lanes.meet_in_stage("combine(F)")
        lanes.compute("shared(F)", [_fb(x, "shared", 0) for x in R])
    else:
        lanes.compute("shared(B)", [_fb(x, "shared", 1) for x in R])
        lanes.meet_in_stage("combine(B)")
        lanes.compute("mlp(B)", [_experts(x, rows[i], 1) for i, x in enumerate(R)])
        lanes.meet_in_stage("dispatch(B)")
        if all("layout(B)" in x["comm_in_stage_s"] for x in R):
            lanes.meet_in_stage("layout(B)")
        else:
            lanes.meet("layout(B)", lambda s: a2a(_a2a_bytes(send, 4, True), s))
        lanes.compute("framework", [_fb(x, "gate", 1) for x in R])


def _end(x: dict, key: str) -> float:
    """A chunk's end the table measured apart from the per-layer glue (``chunk_ends_s``: F/B head and tail);
    0 for a table whose glue still holds it."""
    return float((x.get("chunk_ends_s") or {}).get(key, 0.0))


def _stage_start(lanes: Lanes, kind: str, first: bool, last: bool) -> None:
    """The embedding before the first stage's F; the backward's start-up (and the head's backward) before B;
    each chunk's head (``_end``) where the stage's measured ends (``B_last``) do not already hold it."""
    R = lanes.r
    if kind == "F" and first:
        lanes.compute("embed(F)", [_embed(x, lanes.after) for x in R], fresh=lanes.after == "start")
    if kind == "F":
        lanes.compute("framework", [_end(x, "F_head") for x in R])
    if kind == "B" and last and all("boundary_s" in x for x in R):  # measured in a stage (component table)
        lanes.compute("framework", [x["boundary_s"]["B_last"] for x in R])
    elif kind == "B":
        lanes.compute("framework", [x["bwd_start_s"] + _end(x, "B_head") for x in R])
        if last:
            lanes.compute("framework", [_fb(x, "head", 1) for x in R])


def _stage_end(lanes: Lanes, kind: str, first: bool, last: bool) -> None:
    """The head after the last stage's F; the embedding's backward after the first stage's B; each chunk's tail
    where the stage's measured ends (``B_first``) do not already hold it."""
    R = lanes.r
    if kind == "F":
        lanes.compute("framework", [_end(x, "F_tail") for x in R])
    if kind == "F" and last:
        lanes.compute("head(F)", [_fb(x, "head", 0) for x in R])
    if kind == "B" and first and all("boundary_s" in x for x in R):  # measured in a stage (component table)
        lanes.compute("framework", [x["boundary_s"]["B_first"] for x in R])
    elif kind == "B":
        lanes.compute("framework", [_end(x, "B_tail") + (_fb(x, "embed", 1) if first else 0.0) for x in R])


def _run_op(t: dict, lanes: Lanes, tr: Transport, stage: int, kind: str, replica: int, dispatch_fp8: bool) -> None:
    """One forward (``F``) or full backward (``B``) of ``stage`` on the replica's EP ranks."""
    d = 0 if kind == "F" else 1
    layers = t["stages"][str(stage)]
    first, last = stage == 0, stage == len(t["stages"]) - 1
    R = lanes.r
    wires = ("fp8", "bf16") if dispatch_fp8 else ("native", "native")
    rb_d, rb_c = t["row_bytes"][wires[0]], t["row_bytes"][wires[1]]

    def a2a(n_bytes: float, after_s: float) -> float:
        return tr.time("all_to_all", n_bytes, after_s)

    lanes.kind = kind
    _stage_start(lanes, kind, first, last)
    for L in (layers if kind == "F" else list(reversed(layers))):
        rt = t["routing"].get(str(L))
        if kind == "F":
            lanes.compute("attn(F)", [_fb(x, "attn", 0) for x in R])
        if rt is None:
            lanes.compute(f"mlp({kind})", [_fb(x, "mlp_dense", d) for x in R])
        else:
            _moe_layer(lanes, kind, rt[replica], a2a, wires, rb_d, rb_c)
        if kind == "B":
            lanes.compute("attn(B)", [_fb(x, "attn", 1) for x in R])
        lanes.compute("framework", [_fb(x, "glue", d) for x in R])
    _stage_end(lanes, kind, first, last)
    if _hands_off(t, stage, kind):  # the hand-off's isend call (gloo on CPU; the run has no span for it)
        lanes.compute("framework", [float(t["p2p_isend_s"])] * len(R))
    lanes.after = kind


def _hands_off(t: dict, stage: int, kind: str) -> bool:
    """Whether a chunk of ``stage`` ends in an isend the table priced (``p2p_isend_s``): a forward to the next
    stage, a backward to the previous one; not between the two stages of DualPipeV's turn (one rank holds both)."""
    n, to = len(t["stages"]), stage + 1 if kind == "F" else stage - 1
    turn = t.get("schedule") == "dualpipev" and {stage, to} == {n // 2 - 1, n // 2}
    return bool(t.get("p2p_isend_s")) and 0 <= to < n and not turn


def _check(scn: Scenario, t: dict) -> str | None:
    w, p = scn.workload, scn.parallel
    if (p.pp, p.dp, p.ep) != (t["pp"], t["dp"] * t["ep"], t["ep"]):
        return (f"layout pp={p.pp} dp={p.dp} ep={p.ep} is not the calibrated one (pp={t['pp']}, "
                f"dp={t['dp'] * t['ep']}, ep={t['ep']}): component tables hold per-rank measurements")
    if w.schedule != t["schedule"] or scn.microbatches != t["microbatches"]:
        return (f"schedule {w.schedule} x {scn.microbatches} micro-batches is not the calibrated "
                f"{t['schedule']} x {t['microbatches']}")
    if w.micro_batch_sequences * w.seq_len != t["tokens_per_microbatch"]:
        return (f"micro-batch of {w.micro_batch_sequences} x {w.seq_len} tokens is not the calibrated "
                f"{t['tokens_per_microbatch']} tokens")
    if (w.gemm_dtype == "fp8") != bool(t.get("fp8_compute")):
        return f"gemm_dtype {w.gemm_dtype} is not the calibrated compute (fp8_compute={t.get('fp8_compute')})"
    return None


def _rank_of(d: int, p: int, e: int, pp: int, ep: int) -> int:
    """validate's layout: EP innermost, then PP, then DP."""
    return (d * pp + p) * ep + e


def simulate_measured(scn: Scenario) -> TrainingResult | Infeasible:
    t_wall = time.perf_counter()
    w = scn.workload
    assert isinstance(w, TrainingWorkload) and w.component_table
    t = load_table(w.component_table)
    bad = _check(scn, t)
    if bad:
        return Infeasible(scenario=scn.name, kind="training", reason=bad)
    tr = Transport(scn.topology)
    ranks = {int(k): v for k, v in t["ranks"].items()}
    sched = _one_op_per_slot(generate(w.schedule, pp := t["pp"], scn.microbatches))
    act_bytes = t["tokens_per_microbatch"] * t["hidden"] * t["elt_bytes"]
    hop = (t.get("p2p_hop_s") or tr.time("p2p", act_bytes)) if pp > 1 else 0.0
    # gloo's rendezvous (parallel.executor): a late receive waits for its notice to reach the sender, then the hop
    rdv = t["p2p_notify_s"] + hop if pp > 1 and "p2p_notify_s" in t else 0.0
    fp8 = w.dispatch_dtype == "fp8"
    comp, comp_cpu, end, spans, makespans = _step(t, sched, tr, ranks, (hop, rdv), fp8)
    # a CPU table's compute in CPU seconds (a GPU table's times are wall times: none)
    cpu = {k: v / len(ranks) for k, v in comp_cpu.items()} if str(t.get("device", "cpu")) == "cpu" else {}
    return _result(scn, t, tr, comp, end, spans, makespans, len(ranks), t_wall, cpu)


def _one_op_per_slot(sched):
    """The schedule as the measured run executes it: an overlapped pair (DualPipe's ``F1.1&BW0.0``) becomes its
    two ops in order, each starting when its own input has arrived (``validate/train.py`` receives each op's
    input right before the op, on one core: the forward runs while the backward's gradient is still on its way).
    As one slot, the pair would wait for both inputs: on DualPipe pp2 x 4 micro-batches that put a 9 ms wait per
    rank in front of the pair, where the run waited 0.2-0.5 ms."""
    if not any(a.is_pair for acts in sched.actions.values() for a in acts):
        return sched
    return replace(sched, actions={r: tuple(Action((o,)) for a in acts for o in a.ops)
                                   for r, acts in sched.actions.items()})


def _step(t: dict, sched, tr: Transport, ranks: dict, p2p: tuple[float, float], fp8: bool):
    """One step on every rank (``p2p`` = (hop, rendezvous) seconds): (components, their compute's CPU seconds,
    end per rank, spans per replica, makespans)."""
    comp: dict[str, float] = defaultdict(float)
    comp_cpu: dict[str, float] = defaultdict(float)
    end: dict[int, float] = {}
    tail: dict[int, tuple] = {}  # per rank: (compute, sum of squared component times) since it last met the DP group
    spans, makespans = {}, []
    for d in range(t["dp"]):
        ex = _simulate_replica(t, sched, tr, ranks, d, p2p, fp8, comp, end, tail, comp_cpu)
        makespans.append(ex.makespan)
        spans[d] = ex.spans
    _dp_allreduce(t, sched, ranks, comp, end, tail)
    # processor sharing between the ranks that step at once on an oversubscribed host (cpu_sharing.py)
    pace = cpu_sharing.optimizer_speeds(ranks, end) if cpu_sharing.oversubscribed(t, ranks) else {}
    for r, x in ranks.items():
        rq = x.get("requant_s", 0.0)  # FP8 weight re-quantisation after the optimizer (FP8 compute only)
        opt = x["optim_s"] * pace.get(r, 1.0)
        comp["optim"] += opt
        end[r] += opt + rq
        if rq:
            comp["requant"] += rq
    return comp, comp_cpu, end, spans, makespans


def _after(acts: tuple, a) -> str:
    """What a rank ran before action ``a`` of its list ``acts``: "start" before its first (the step's start, after
    the previous step's optimizer pass over the parameters, which leaves the caches at least as cold as a
    backward: on ``tiny`` the embedding lookup takes 124-337 us after it and a step's start, 123-180 after a
    backward, 60-136 after a forward, validate/MEASUREMENTS.md), else the previous action's last pass: F after a
    forward, B after a backward or weight pass."""
    i = acts.index(a)
    return "start" if i == 0 else "F" if acts[i - 1].ops[-1].kind == "F" else "B"


def _simulate_replica(t: dict, sched, tr: Transport, ranks: dict, d: int, p2p: tuple[float, float], fp8: bool,
                      comp: dict[str, float], end: dict[int, float], tail: dict[int, tuple],
                      comp_cpu: dict[str, float]):
    """Pipeline replica ``d``: every (stage, action) chunk run on its EP ranks' lanes, the schedule executed over
    them. Adds its components to ``comp``, sets its ranks' ``end`` and squared-time ``tail``; returns the
    execution (spans, makespan)."""
    pp, dp, ep = t["pp"], t["dp"], t["ep"]
    cache: dict = {}
    speed: dict = {}  # processor sharing on an oversubscribed host (cpu_sharing.py): compute time factors

    def chunk(p: int, a) -> float:
        key = (p, str(a))
        if key not in cache:
            lanes = Lanes([ranks[_rank_of(d, p, e, pp, ep)] for e in range(ep)], float(t.get("a2a_exit_skew_s", 0.0)),
                           speed.get(key, 1.0))
            lanes.after = _after(sched.actions[p], a)
            for o in a.ops:
                if o.kind != "W":
                    _run_op(t, lanes, tr, sched.stage_of(p, o.chunk), "F" if o.kind == "F" else "B", d, fp8)
            lanes.finish("p2p_wait" if pp > 1 else "allreduce_wait")
            cache[key] = (max(lanes.clock), lanes)
        return cache[key][0]

    ex = execute(sched, chunk, p2p_latency=p2p[0], p2p_rendezvous=p2p[1])
    for _ in range(cpu_sharing.ROUNDS if cpu_sharing.oversubscribed(t, ranks) else 0):
        new = cpu_sharing.speeds(t, ranks, sched, ex.spans)
        speed.update({k: 0.5 * (speed.get(k, 1.0) + v) for k, v in new.items()})
        cache.clear()
        before, ex = ex.makespan, execute(sched, chunk, p2p_latency=p2p[0], p2p_rendezvous=p2p[1])
        if abs(ex.makespan - before) <= cpu_sharing.TOL * before:
            break
    for p, acts in sched.actions.items():
        busy = 0.0
        sq, lin = [0.0] * ep, [0.0] * ep
        for a in acts:
            _, lanes = cache[(p, str(a))]
            busy += max(lanes.clock)
            sq = [x + y for x, y in zip(sq, lanes.sq)]
            lin = [x + y for x, y in zip(lin, lanes.busy)]
            for k, v in lanes.comp.items():
                comp[k] += v
            for k, v in lanes.comp_cpu.items():
                comp_cpu[k] += v
        last = cache[(p, str(acts[-1]))][1]
        fin = ex.spans[p][-1].end
        for e in range(ep):
            r = _rank_of(d, p, e, pp, ep)
            end[r] = fin
            tail[r] = (lin[e], sq[e]) if dp > 1 else (last.since[e], last.since_sq[e])
        if pp > 1:
            comp["p2p_wait"] += ep * (fin - busy)
    return ex


def _dp_allreduce(t: dict, sched, ranks: dict, comp: dict[str, float], end: dict[int, float],
                  tail: dict[int, tuple]) -> None:
    """DP: every stage's ranks (all replicas and EP ranks; DualPipe: + the mirrored stage) all-reduce gradients.
    The group starts when its expected-latest member arrives (each rank's end plus its jitter over the time since
    it last met the group, times the expected max of that many normals); moves ``end`` past the sync."""
    pp, dp, ep = t["pp"], t["dp"], t["ep"]
    mirror = sched.layout == "bidirectional"
    for p in range(pp):
        if mirror and p > pp - 1 - p:
            continue
        peers = sorted({p, pp - 1 - p}) if mirror else [p]
        grp = [_rank_of(d, q, e, pp, ep) for q in peers for d in range(dp) for e in range(ep)]
        if len(grp) < 2:
            continue
        late = {r: end[r] + lateness_of_slowest([ranks[x] for x in grp], tail[r][0], tail[r][1], len(grp)) for r in grp}
        t0 = max(late.values())
        sync = max(ranks[r]["grad_sync_s"] for r in grp)
        for r in grp:
            comp["allreduce_wait"] += t0 - end[r]
            comp["allreduce"] += sync
            end[r] = t0 + sync


def _result(scn: Scenario, t: dict, tr: Transport, comp: dict[str, float], end: dict[int, float], spans: dict,
            makespans: list[float], n: int, t_wall: float, cpu: dict[str, float]) -> TrainingResult:
    w = scn.workload
    pp, dp, ep = t["pp"], t["dp"], t["ep"]
    components = {k: v / n for k, v in comp.items()}
    step = max(end.values())
    tokens = w.global_batch_sequences * w.seq_len
    events = [{"rank": r, "stream": "pipeline", "name": s.category, "action": s.action, "start_s": s.start,
               "end_s": s.end, "replica": d} for d, sp in spans.items() for r, lst in sp.items() for s in lst]
    return TrainingResult(
        scenario=scn.name, model=scn.model, topology=tr.name, gpu=str(t.get("device", "cpu")), n_gpus=n,
        parallel={"pp": pp, "dp": dp * ep, "tp": 1, "ep": ep, "schedule": w.schedule,
                  "microbatches": scn.microbatches, "micro_batch_tokens": t["tokens_per_microbatch"]},
        step_time_s=step, breakdown_s=components, mfu=0.0, tokens_per_s=tokens / step, tokens_per_step=tokens,
        gpu_hours_per_trillion_tokens=gph_per_t(n, tokens / step), train_flops_per_token=0.0,
        memory_per_gpu=[], link_utilisation={}, ib_utilisation=0.0, nvlink_utilisation=0.0,
        exposed_communication_s=sum(v for k, v in components.items()
                                    if k.startswith(("layout", "dispatch", "combine", "allreduce", "p2p"))),
        expert_load_before=[], expert_load_after=[], expert_load_logical=[], nodes_per_token={},
        comm={}, chunk_times_s={}, timeline={"events": events}, pipeline={"makespan_s": max(makespans)},
        breakdown_cpu_s=cpu,
        sources=(f"component table {w.component_table} ({t.get('when', '?')}, {t.get('machine', '?')})",
                 f"topology {tr.name}: calibrated alpha-beta fits"),
        sim_wall_s=time.perf_counter() - t_wall, step_breakdown_s={"pipeline": max(makespans)})
