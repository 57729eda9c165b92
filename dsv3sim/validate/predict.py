"""The prediction: the validation run's step, replayed from profiled component times, the calibrated
transport and the routing the real run used — never from the run's own timings.

Composition (stated in every result as ``prediction_method``):
* compute: ``components.py`` forward/backward times of each component, profiled on this machine in the
  calibration phase (each rank its own); the rank's routed experts t = a + b * (rows it received);
* EP all-to-all: the calibrated all_to_all fit t = alpha + bytes / beta on the largest off-rank bytes
  (sent or received) of any rank in the EP group, from the run's routing (rows x wire bytes per row);
  counts+ids exchange ("layout") = 2 small all-to-alls;
* EP synchronisation: every rank of an EP group runs its compute, then waits at each all-to-all for the
  slowest rank (lockstep), so a rank's measured all-to-all time includes waiting for its peers;
* PP: the action lists are replayed in order per pipeline rank (list scheduling): a forward on stage s
  starts when its rank is free and the activation of stage s-1 has arrived (p2p fit); backward likewise;
* DP: all-reduce of dense gradients over the replica group and of expert gradients over the DP group, as
  timed on the same buffers and groups in the calibration phase (``calibrate._grad_sync``);
* optimizer: AdamW step profiled on this rank's parameter shapes;
* jitter: on a shared CPU every duration is resampled from its profiled spread (Monte Carlo), because each
  all-to-all waits for the slowest rank: E[max] of noisy segments exceeds the sum of their means.
Step time of a rank = its clock after the optimizer; the run's step time = max over ranks.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict

from dsv3sim.validate.calibrate import fit
from dsv3sim.validate.ep import row_bytes
from dsv3sim.validate.layout import Coord, pp_peers, rank_of
from dsv3sim.validate.schedule import parse, plan

METHOD = ("composed in dsv3sim.validate.predict: list-schedule replay of the run's action lists, EP lockstep at "
          "every all-to-all, compute from components profiled on this machine (validate calibration job), "
          "transport from the calibrated alpha-beta fits (gloo/NCCL p2p, all_to_all, all_reduce), routing "
          "replayed from the real run")


class Costs:
    """Component times of one rank (its own profile: ranks on a busier core are slower, and the EP lockstep
    makes their peers wait), pooled over all its probes, + transport fits of rank 0's pooled sweep points.
    With ``rng`` every duration is its mean times a factor resampled from the profiled samples (sample /
    mean), one factor per span."""

    def __init__(self, calib: list[dict], rank: int | None = None, which: list[int] | None = None) -> None:
        """``which``: indices of the probes to use (None: all of them, pooled)."""
        mine = [c for c in calib if rank is None or c["rank"] == rank]
        probes = [p for c in mine for i, p in enumerate(c["probes"]) if "components" in p
                  and (which is None or i in which)]
        if not probes:
            raise ValueError("calibration has no component profile (run the calibration phase with a model)")
        comps = [p["components"] for p in probes]
        self.c: dict[str, tuple[float, float]] = {}
        self.rel: dict[str, list[float]] = {}
        for k, v in comps[0].items():
            if isinstance(v, dict) and "F_s" in v:
                for d, key in ((0, "F_s"), (1, "B_s")):
                    xs = [x for c in comps if k in c for x in c[k][key]]
                    m = statistics.fmean(xs) if xs else 0.0
                    self.rel[f"{k}:{d}"] = [x / m for x in xs] if m else [1.0]
                    self.c[k] = (m, self.c.get(k, (0.0, 0.0))[1]) if d == 0 else (self.c[k][0], m)
        ex = [c["expert"] for c in comps if "expert" in c]
        self.expert = {d: {k: statistics.fmean(e[d][k] for e in ex) for k in ("a_s", "b_s_per_row")}
                       for d in ("fwd", "bwd")} if ex else {}
        if ex:
            self.rel["expert:0"] = [x for e in ex for x in e["F_rel"]] or [1.0]
            self.rel["expert:1"] = [x for e in ex for x in e["B_rel"]] or [1.0]
        first = min(calib, key=lambda c: c["rank"])  # rank 0: in every transport pattern
        pts: dict[str, list] = defaultdict(list)
        self.comm_rel: dict[str, list[float]] = defaultdict(list)
        for i, p in enumerate(first["probes"]):
            if which is not None and i not in which:
                continue
            for k, v in p.get("points", {}).items():
                pts[k] += v
            for k, v in p.get("rel", {}).items():
                self.comm_rel[k] += v
        self.bwd_start = statistics.fmean(c.get("bwd_call_overhead_s", 0.0) for c in comps)
        self.fit = {k: fit([x for x, _ in v], [t for _, t in v]) for k, v in pts.items() if len({x for x, _ in v}) >= 2}
        self.rng: random.Random | None = None

    def _f(self, key: str) -> float:
        rel = self.rel.get(key) if key in self.rel else self.comm_rel.get(key)
        return self.rng.choice(rel) if self.rng is not None and rel else 1.0

    def fb(self, name: str, d: int) -> float:
        return self.c.get(name, (0.0, 0.0))[d] * self._f(f"{name}:{d}")

    def experts(self, rows: list[int], d: str) -> float:
        """The rank's expert module on ``rows`` per local expert: a + b * total rows (components.py)."""
        e, n = self.expert[d], sum(rows)
        return (e["a_s"] + e["b_s_per_row"] * n) * self._f(f"expert:{int(d == 'bwd')}") if n > 0 else 0.0

    def comm(self, kind: str, n_bytes: float) -> float:
        f = self.fit.get(kind)
        return f.time(n_bytes) * self._f(kind) if f is not None else 0.0


def _a2a_bytes(send_rows: dict[int, list[int]], lanes: list[int], rb: int, reverse: bool) -> float:
    """Largest off-rank bytes sent or received by one lane; reverse=True swaps senders and receivers."""
    n = len(lanes)
    mat = [[send_rows[lanes[i]][j] for j in range(n)] for i in range(n)]
    if reverse:
        mat = [list(col) for col in zip(*mat)]
    sent = [sum(mat[i][j] for j in range(n) if j != i) for i in range(n)]
    recv = [sum(mat[j][i] for j in range(n) if j != i) for i in range(n)]
    return max(max(sent), max(recv)) * rb


def predict_step(spec, meas: list[dict], C: dict[int, Costs], step: int) -> dict:
    """Replay one step; returns per-rank end clocks, component sums and events."""
    costs = C[min(C)]  # transport fits (rank 0's)
    by_rank = {m["rank"]: m for m in meas}
    ep, pp, dp = spec.ep, spec.pp, spec.dp
    D, elt = meas[0]["hidden"], meas[0]["elt_bytes"]
    wire = "fp8" if spec.fp8 else "native"
    back = "bf16" if spec.fp8 else "native"
    import torch  # dtype only, for row_bytes
    dt = torch.float32 if elt == 4 else torch.bfloat16
    rb_d, rb_c = row_bytes(D, wire, dt), row_bytes(D, back, dt)
    act_bytes = meas[0]["tokens_per_mb"] * D * elt
    clock = {r: 0.0 for r in by_rank}
    comp: dict[int, dict[str, float]] = {r: defaultdict(float) for r in by_rank}
    events: dict[int, list[dict]] = {r: [] for r in by_rank}

    def compute(lanes, name, durs):
        for r, d in zip(lanes, durs):
            events[r].append(dict(name=name, t0=clock[r], t1=clock[r] + d))
            clock[r] += d
            comp[r][name] += d

    def sync(lanes, name, transfer):
        t = max(clock[r] for r in lanes) + transfer
        for r in lanes:
            events[r].append(dict(name=name, t0=clock[r], t1=t))
            comp[r][name] += t - clock[r]
            clock[r] = t

    def routing(r, layer, mb):
        for e in by_rank[r]["routing"].get(str(layer), []):
            if e["step"] == step and e["mb"] == mb:
                return e
        raise ValueError(f"no routing recorded for rank {r} layer {layer} step {step} microbatch {mb}")

    def run(lanes, stage_layers, first, last, kind, mb):
        d = 0 if kind == "F" else 1
        n = len(stage_layers)
        if kind == "F" and first:
            compute(lanes, "embed(F)", [C[r].fb("embed", 0) for r in lanes])
        if kind == "B":  # the autograd engine's start-up, once per backward call (components exclude it)
            compute(lanes, "bwd_start", [C[r].bwd_start for r in lanes])
        if kind == "B" and last:
            compute(lanes, "head(B)", [C[r].fb("head", 1) for r in lanes])
        order = stage_layers if kind == "F" else list(reversed(stage_layers))
        for L in order:
            is_moe = str(L) in by_rank[lanes[0]]["routing"]
            if kind == "F":
                compute(lanes, "attn(F)", [C[r].fb("attn", 0) for r in lanes])
            if not is_moe:
                compute(lanes, f"mlp({kind})", [C[r].fb("mlp_dense", d) for r in lanes])
            else:
                rt = {r: routing(r, L, mb) for r in lanes}
                send = {r: rt[r]["send_rows"] for r in rt}
                rows = {r: rt[r]["expert_rows"] for r in rt}
                if len(lanes) == 1:  # EP = 1: no all-to-all, only the local permutation (inside gate)
                    compute(lanes, f"gate({kind})", [C[r].fb("gate", d) for r in lanes])
                    compute(lanes, f"mlp({kind})", [C[r].experts(rows[r], "fwd" if d == 0 else "bwd") for r in lanes])
                    compute(lanes, f"shared({kind})", [C[r].fb("shared", d) for r in lanes])
                elif kind == "F":
                    compute(lanes, "gate(F)", [C[r].fb("gate", 0) for r in lanes])
                    ids = _a2a_bytes(send, lanes, 8, False)
                    sync(lanes, "layout(F)", costs.comm("all_to_all", 4 * len(lanes)) + costs.comm("all_to_all", ids))
                    sync(lanes, "dispatch(F)", costs.comm("all_to_all", _a2a_bytes(send, lanes, rb_d, False)))
                    compute(lanes, "mlp(F)", [C[r].experts(rows[r], "fwd") for r in lanes])
                    sync(lanes, "combine(F)", costs.comm("all_to_all", _a2a_bytes(send, lanes, rb_c, True)))
                    compute(lanes, "shared(F)", [C[r].fb("shared", 0) for r in lanes])
                else:
                    compute(lanes, "shared(B)", [C[r].fb("shared", 1) for r in lanes])
                    sync(lanes, "combine(B)", costs.comm("all_to_all", _a2a_bytes(send, lanes, rb_c, False)))
                    compute(lanes, "mlp(B)", [C[r].experts(rows[r], "bwd") for r in lanes])
                    sync(lanes, "dispatch(B)", costs.comm("all_to_all", _a2a_bytes(send, lanes, rb_c, True)))
                    compute(lanes, "gate(B)", [C[r].fb("gate", 1) for r in lanes])
            if kind == "B":
                compute(lanes, "attn(B)", [C[r].fb("attn", 1) for r in lanes])
        if kind == "F" and last:
            compute(lanes, "head(F)", [C[r].fb("head", 0) for r in lanes])
        if kind == "B" and first:
            compute(lanes, "embed(B)", [C[r].fb("embed", 1) for r in lanes])
        del n

    pl = plan(spec.schedule, pp, meas[0]["microbatches"])
    last_stage = pl.n_stages - 1
    done: dict[tuple, list[float]] = {}
    ptr = {(d_, p): 0 for d_ in range(dp) for p in range(pp)}
    acts = {(d_, p): [a for it in by_rank[rank_of(Coord(dp=d_, pp=p, ep=0), ep, pp)]["actions"] for a in parse(it)]
            for d_ in range(dp) for p in range(pp)}
    while any(ptr[k] < len(acts[k]) for k in ptr):
        progressed = False
        for (d_, p), lst in acts.items():
            while ptr[(d_, p)] < len(lst):
                a = lst[ptr[(d_, p)]]
                if a.kind == "W":
                    ptr[(d_, p)] += 1
                    continue
                s = pl.stage_of(p, a.chunk)
                prev, nxt = pl.neighbours(p, a.chunk)
                lanes = [rank_of(Coord(dp=d_, pp=p, ep=e), ep, pp) for e in range(ep)]
                kind = "F" if a.kind == "F" else "B"
                src = prev if kind == "F" else nxt
                dep = (kind, d_, src[0], src[1], a.mb) if src is not None else None
                if dep is not None and dep not in done:
                    break
                if dep is not None:
                    hop = costs.comm("p2p", act_bytes) if src[0] != p else 0.0
                    for e, r in enumerate(lanes):
                        w = max(done[dep][e] + hop - clock[r], 0.0)
                        if src[0] != p:
                            events[r].append(dict(name="p2p_wait", t0=clock[r], t1=clock[r] + w))
                            comp[r]["p2p_wait"] += w
                        clock[r] += w
                stage_layers = by_rank[lanes[0]]["stages"][str(s)]
                run(lanes, stage_layers, s == 0, s == last_stage, kind, pl.data_index(a.chunk, a.mb))
                done[(kind, d_, p, a.chunk, a.mb)] = [clock[r] for r in lanes]
                ptr[(d_, p)] += 1
                progressed = True
        if not progressed:
            raise ValueError(f"pipeline replay deadlocked at {ptr}: action lists are inconsistent")
    heads = sorted({pp_peers(p, pp, pl.layout == "bidirectional")[0] for p in range(pp)})
    for h in heads:  # DP: dense grads over the replica group, expert grads over each DP group (DualPipe: + mirror)
        peers = pp_peers(h, pp, pl.layout == "bidirectional")
        rep = [rank_of(Coord(dp=d_, pp=p, ep=e), ep, pp) for p in peers for d_ in range(dp) for e in range(ep)]
        if by_rank[rep[0]]["replica_size"] > 1 or by_rank[rep[0]]["dp_size"] > 1:
            # the calibration timed these exact all-reduces (calibrate._grad_sync); the slowest member's mean
            sync(rep, "allreduce", max(C[r].fb("grad_sync", 0) for r in rep))
    for r, m in by_rank.items():
        compute([r], "optim", [C[r].fb("optim", 0)])
    return {"step_s": max(clock.values()), "rank_step_s": dict(clock), "components": comp, "events": events}


MODES = ("pooled", "local", "local+full")


def predict(spec, meas: list[dict], calib: list[dict], samples: int = 64, seed: int = 0,
            mode: str = "pooled") -> dict:
    """``meas``: the train results of every rank; ``calib``: the calibration results of every rank.

    Each recorded step's routing is replayed ``samples`` times with resampled durations (Monte Carlo over the
    profiled jitter, fixed seeds, so deterministic); the predicted step is the mean over samples, and the
    median over steps. ``predicted_step_s_no_jitter`` is the same replay with mean durations. ``mode``: which
    calibration probes price step k: all pooled, the quick probe taken just before step k (``local``), or
    that one plus the full calibration (``local+full``, default: tracks this shared machine's load drift)."""
    if mode not in MODES:
        raise ValueError(f"prediction mode must be one of {MODES}, got {mode!r}")
    have = {c["rank"] for c in calib if any("components" in p for p in c["probes"])}
    steps = sorted({e["step"] for m in meas for lst in m["routing"].values() for e in lst}) or [spec.steps - 1]
    ranks = sorted(m["rank"] for m in meas)
    n_probes = min(len(c["probes"]) for c in calib)

    def costs_for(st: int) -> dict[int, Costs]:
        # local: the quick probe taken right before step st (probes[1 + st - warmup]), plus the full one
        k = 1 + st - spec.warmup
        which = None if mode == "pooled" or not 0 < k < n_probes else ([k] if mode == "local" else [0, k])
        return {r: Costs(calib, r if r in have else None, which) for r in ranks}
    C = costs_for(steps[0])
    times, plain = [], []
    comp: dict[str, float] = defaultdict(float)
    last = None
    for st in steps:
        C = costs_for(st)
        last = predict_step(spec, meas, C, st)
        plain.append(last["step_s"])
        acc = []
        for k in range(samples):
            for r, c in C.items():
                c.rng = random.Random(hash((seed, st, k, r)) & 0xFFFFFFFF)
            p = predict_step(spec, meas, C, st)
            acc.append(p["step_s"])
            for r in ranks:
                for name, v in p["components"][r].items():
                    comp[name] += v / (samples * len(steps) * len(ranks))
        times.append(statistics.fmean(acc))
    for c in C.values():
        c.rng = None
    fits = C[ranks[0]].fit
    return {"predicted_step_s": statistics.median(times), "predicted_steps_s": times,
            "predicted_step_s_no_jitter": statistics.median(plain), "samples": samples,
            "components_mean_over_ranks": dict(comp), "events_last_step": last["events"] if last else {},
            "prediction_method": METHOD + f"; probes: {mode}", "transport": {k: v.to_dict() for k, v in fits.items()}}
