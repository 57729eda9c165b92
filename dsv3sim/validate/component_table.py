"""The calibration as ordinary artefacts ``dsv3sim run`` reads: a component table of this machine
(``workload/measured_step.py`` documents the format and the step composed from it), the calibrated topology
YAML with the collective fits, and a scenario file that names both.

From the calibration phase only (never the run's timings), per rank (statistics: ``robust.py``): every
component's forward and backward time pooled over all probes (the full profile + the quick probe before each
measured step): on CPU the expected value (``robust.expected``) of its CPU-time samples over the share of a core the
rank got in the steps' window (``window_share``), on a GPU of its wall samples; the routed-expert fit t = a + b * rows,
the autograd start-up per backward call and the optimizer step the same way; the gradient all-reduce on the
run's buffers (wall); the relative spread cv of the wall samples (time-weighted robust sigma / median).
Transport: alpha-beta fits over rank 0's pooled sweep points (``calibrate.fit``).
From the run: its stage split and its routing (rows per EP rank pair per micro-batch and MoE layer, mean over
the measured steps and micro-batches), as a routing trace would give it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from dsv3sim.validate.alpha_beta import fit, interpolate
from dsv3sim.validate.atomic import write_json, write_text
from dsv3sim.validate.calibrate import GAP_S
from dsv3sim.validate.ep import row_bytes
from dsv3sim.validate.layout import Coord, rank_of
from dsv3sim.validate.load import cores
from dsv3sim.validate.robust import expected, rel_spread
from dsv3sim.workload.measured_table import COMPONENTS, FORMAT, VERSION
from dsv3sim.workload.preemption import fit as preemption_fit

TABLE = "components.json"
SCENARIO = "scenario.py"


def transport_fits(calib: list[dict]) -> dict[str, dict[str, float]]:
    """{kind: {latency_us, bandwidth_GBps}} over rank 0's pooled sweep points (it is in every pattern; each
    point the mean over its iterations). The fit weighs points by 1 / t^2 (``alpha_beta.fit``), so a probe whose
    collectives a loaded machine stretched several-fold counts less than the quiet ones: on this shared box a
    per-size mean let single 10 ms outliers set a 5 ms latency (MEASUREMENTS.md)."""
    pts = _rank0_points(calib)
    out = {k: fit([x for x, _ in v], [t for _, t in v]).to_dict() for k, v in pts.items()
           if len({x for x, _ in v}) >= 2}
    if "all_to_all" in out and any(k.startswith("all_to_all@") for k in out):  # the default sweep's gap, by name
        out[f"all_to_all@{GAP_S * 1e6:.0f}"] = out["all_to_all"]
    return out


def _rank0_points(calib: list[dict]) -> dict[str, list]:
    """{kind: [(size, time)]} of rank 0's sweeps, pooled over its probes (rank 0 is in every pattern)."""
    first = min(calib, key=lambda c: c["rank"])
    pts: dict[str, list] = defaultdict(list)
    for p in first["probes"]:
        for k, v in p.get("points", {}).items():
            pts[k] += v
    return pts


MIN_SAMPLES = 3  # per sweep size, for its expected time to price a hop (p2p_times)


def p2p_times(calib: list[dict], n_bytes: float) -> dict[str, float]:
    """{p2p_hop_s: one pipeline hop of ``n_bytes``, p2p_notify_s: one notification, p2p_isend_s: one isend call}:
    the expected one-way ping-pong time (``robust.expected`` per size over rank 0's pooled sweep points)
    interpolated at ``n_bytes`` (``alpha_beta.interpolate``), and at the sweep's smallest size (a control message:
    gloo's receive-ready notice); the expected ``isend`` call where probed (``calibrate._isend_calls``). {}
    without two sizes of MIN_SAMPLES points."""
    by: dict[float, list[float]] = defaultdict(list)
    for x, t in _rank0_points(calib).get("p2p", []):
        by[x].append(t)
    tail = fit([x for x, ts in by.items() for _ in ts], [t for ts in by.values() for t in ts]) if len(by) > 1 else None
    # a size the quick probes skip has one sample (the full probe's): on a loaded box one-way times at one size
    # spread 0.07-4.4 ms, so a single sample is not an expectation and would set the interpolation alone
    pts = {x: expected(ts) for x, ts in by.items() if len(ts) >= MIN_SAMPLES}
    if len(pts) < 2 or tail is None:
        return {}
    calls = [x for c in calib for p in c["probes"] for x in p.get("p2p_isend", [])]
    return {"p2p_hop_s": interpolate(pts, n_bytes, tail), "p2p_notify_s": pts[min(pts)],
            **({"p2p_isend_s": expected(calls)} if len(calls) >= MIN_SAMPLES else {})}


def window_share(probes: list[dict]) -> float:
    """The share of a core this rank got while it profiled (CPU / wall seconds over every sample), over the quick
    probes interleaved with the measured steps when there are any (the steps' window), else over all probes."""
    wins = [p["components"]["window"] for p in probes if "window" in p.get("components", {})]
    quick = [p["components"]["window"] for p in probes if p.get("quick") and "window" in p.get("components", {})]
    wins = quick or wins
    cpu, wall = sum(w["cpu_s"] for w in wins), sum(w["wall_s"] for w in wins)
    return min(cpu / wall, 1.0) if wall > 0 else 1.0


def _component_times(comps: list[dict], ded: bool, share: float, cvs: list[float],
                     wts: list[float], host: list[dict] | None = None) -> dict[str, list[float]]:
    """{component: [F, B]}: the expected time per call of the pooled samples (``robust.expected``; CPU seconds over
    the window's share with ``ded``, else wall); each repeated component's robust spread of its wall samples
    (weight: its time) goes to ``cvs`` / ``wts``. With ``ded`` the CPU samples are pooled over ``host`` (every
    rank's probes on this host, default this rank's): the CPU seconds a call needs are the code's and the
    core type's, the same for every rank, while the share is each rank's own; pooling two ranks halves the
    variance of each rank's estimate."""
    out: dict[str, list[float]] = {}
    pool = host if ded and host else comps
    for k in (k for k in COMPONENTS if any(k in cc for cc in comps)):
        fb = []
        for key in ("F", "B"):
            xs = [x for cc in pool if k in cc for x in cc[k].get(f"{key}_cpu_s" if ded else "", cc[k][f"{key}_s"])]
            m = expected(xs) / share if xs else 0.0
            fb.append(m)
            walls = [x for cc in comps if k in cc for x in cc[k][f"{key}_s"]]
            if len(walls) > 1 and m > 0:
                cvs.append(rel_spread(walls))
                wts.append(m)
        out[k] = fb
    return out


def _expert_fit(comps: list[dict], share: float, cvs: list[float], wts: list[float]) -> dict[str, list[float]]:
    """{fwd|bwd: [a_s, b_s_per_row]}: the median over the probes that profiled the most experts (closest to the
    rank's count) over the share; each fit's relative spread goes to ``cvs`` (weight: its fixed cost a_s)."""
    ex = [cc["expert"] for cc in comps if "expert" in cc]
    if not ex:
        return {"fwd": [0.0, 0.0], "bwd": [0.0, 0.0]}
    most = max(e.get("profiled_experts", 0) for e in ex)
    ex = [e for e in ex if e.get("profiled_experts", 0) == most]
    for e in ex:
        for d, key in (("fwd", "F_rel"), ("bwd", "B_rel")):
            if len(e[key]) > 1:
                cvs.append(rel_spread(e[key]))
                wts.append(e[d]["a_s"])
    return {d: [statistics.median(e[d]["a_s"] for e in ex) / share,
                statistics.median(e[d]["b_s_per_row"] for e in ex) / share] for d in ("fwd", "bwd")}


def _codec_fit(comps: list[dict], share: float) -> dict[str, list[float]]:
    """{wire: [a_s, b_s_per_row]} of the payload encoding, median over the probes, over the share."""
    codecs = [cc["codec"] for cc in comps if "codec" in cc]
    if not codecs:
        return {}
    return {w: [statistics.median(c_[w][0] for c_ in codecs) / share,
                statistics.median(c_[w][1] for c_ in codecs) / share] for w in codecs[0]}


def _preempt(probes: list[dict], comps: list[dict]) -> dict:
    """Preemption slices in the steps' window (the quick probes, else all; ``workload/preemption.py``)."""
    quick = [p["components"] for p in probes if p.get("quick") and "components" in p] or comps
    pairs = [(w, c_) for cc in quick for k in COMPONENTS if k in cc and "F_cpu_s" in cc[k]
             for d in ("F", "B") for w, c_ in zip(cc[k][f"{d}_s"], cc[k][f"{d}_cpu_s"])]
    return preemption_fit([p[0] for p in pairs], [p[1] for p in pairs])


def _context(cc: dict, cfg) -> dict[str, float] | None:
    """{F|B: in-stage / standalone} of one probe's compute: the glue profile's whole-stage pass (every layer's
    forward, then every backward, as the run does) over the same calls timed standalone, back to back. A
    component inside a stage pass finds its weights and saved activations evicted by the other layers' work
    (measured on 16 idle cores: the stage's spans 8-21 % above the standalone sum; the runs' compute
    components -3..-21 % under-predicted from the standalone times). CPU only, CPU seconds on both sides (the
    stage's compute spans' own CPU: on a shared core a rank woken from an all-to-all computes at a higher share
    than the stage's average, so wall x share misjudged the EP stages); None without a usable stage profile (a GPU
    profiles no MoE stage; an EP run profiled before the glue took the EP path held other experts)."""
    g = cc.get("glue")
    if not g or "stage_spans_s" not in g or not cc.get("dedicated") or "attn" not in cc:
        return None
    n = len(g["layers"])
    n_moe = g.get("n_moe")
    if n_moe is None:  # a profile from before the glue recorded its MoE layers and expert pairs
        if cfg is None or "codec" in cc:  # an EP run's one-rank glue held all experts, the fit the rank's
            return None
        n_moe = sum(cfg.is_moe_layer(L) for L in g["layers"])
    pairs = g.get("pairs_per_moe_layer") or cc["tokens_per_microbatch"] * (cfg.num_experts_per_tok if cfg else 1)
    out, totals = {}, {}
    for d, key in (("F", "fwd"), ("B", "bwd")):
        std = n * cc["attn"][d] + (n - n_moe) * cc.get("mlp_dense", {}).get(d, 0.0)
        if n_moe:
            ex = cc["expert"][key]
            std += n_moe * (cc.get("shared", {}).get(d, 0.0) + ex["a_s"] + ex["b_s_per_row"] * pairs)
            std += n_moe * cc["gate"]["F"] if d == "F" else 0.0  # the gate's backward is outside the spans
        ctx = _stage_compute_cpu(g, d)
        if std <= 0 or ctx <= 0:
            return None
        out[d] = ctx / std
        totals[d] = (ctx, std)
    by = _context_by_component(cc, g.get("stage_span_cpu_s"), n, n_moe, totals) if "stage_compute_cpu_s" in g \
        else None
    return dict(out, **by) if by else out


def _stage_compute_cpu(g: dict, d: str) -> float:
    """CPU seconds inside the stage pass's compute spans (measured; older profiles: the spans' wall times the
    stage's CPU share outside the all-to-alls)."""
    if "stage_compute_cpu_s" in g:
        return g["stage_compute_cpu_s"][d]
    comm = g.get("stage_all_to_all_s", {}).get(d, 0.0)
    busy = g["stage_wall_s"][d] - comm
    ratio = min(g["stage_cpu_s"][d] / busy, 1.0) if "stage_cpu_s" in g and busy > 0 else 1.0
    return (g["stage_spans_s"][d] - comm) * ratio


# Compute spans of the stage pass (named as their component) with their own profile: (component, called in)
_SPAN_OF = (("attn", "all"), ("shared", "moe"), ("gate", "moe"))
# Calls the stage pass times once per sample outside its own spans (``stage_pass._stage_pass``): own factor only
_AROUND = ("head", "embed")


def _context_by_component(cc: dict, spans: dict | None, n: int, n_moe: int,
                          totals: dict[str, tuple[float, float]]) -> dict | None:
    """Per-component factors where the stage pass names a component's spans (``stage_span_cpu_s``): a small
    component right after a blocking exchange or another layer's work pays more for its evicted caches than a
    large one (the embedding lookup 3.7x back to back on the 2-core box, MEASUREMENTS.md), which one factor
    spreads over all. ``totals``: {F|B: (in-stage CPU, standalone sum)}. Returns {"by": {component: {F|B: k}},
    F|B: the factor of the rest (dense FFN and experts, which share the ``mlp`` span)}, so the stage's total is
    kept; None without the spans or with nothing left for the rest."""
    if not spans:
        return None
    by: dict[str, dict[str, float]] = {}
    rest = {d: list(t) for d, t in totals.items()}
    for comp, kind in _SPAN_OF:
        calls = n if kind == "all" else n_moe
        for d in rest:
            t_in, t_alone = spans.get(f"{comp}({d})", 0.0), cc.get(comp, {}).get(d, 0.0)
            if calls and t_in > 0 and t_alone > 0:
                by.setdefault(comp, {})[d] = t_in / (calls * t_alone)
                rest[d][0] -= t_in
                rest[d][1] -= calls * t_alone
    if not by or any(c <= 0 or s_ <= 0 for c, s_ in rest.values()):
        return None
    for comp in _AROUND:  # outside the stage's totals: the rest is untouched
        t_in, t_alone = spans.get(f"{comp}(F)", 0.0), cc.get(comp, {}).get("F", 0.0)
        if t_in > 0 and t_alone > 0:
            by[comp] = {"F": t_in / t_alone}
    if after := _embed_after(cc, spans):
        by["embed_after"] = after
    return {"by": by, **{d: c / s_ for d, (c, s_) in rest.items()}}


def _embed_after(cc: dict, spans: dict) -> dict[str, float]:
    """{F|B: the embedding lookup's CPU / its back-to-back time} by the pass that ran before it on the core
    (``stage_pass._stage_pass``). The lookup itself is a few microseconds; the rest is its code and data brought
    back into the caches the pass before it evicted, which that pass sets (in process on ``tiny``: 13-22 us back
    to back, 60-136 after a forward, 123-180 after a backward, MEASUREMENTS.md)."""
    t_alone = cc.get("embed", {}).get("F", 0.0)
    ts = (("F", spans.get("embed after F")), ("B", spans.get("embed(F)")))
    return {pos: t / t_alone for pos, t in ts if t and t_alone > 0}


def _apply_context(entry: dict, k: dict) -> None:
    """Compute components (every one but the glue, which is measured in the stage) and the expert fit x k; a
    component with its own factor (``k["by"]``) takes that one."""
    by = k.get("by", {})
    if "embed_after" in by and "embed" in entry["components"]:  # CPU per call by what precedes the lookup
        entry["embed_after_s"] = {pos: entry["components"]["embed"][0] * f for pos, f in by["embed_after"].items()}
    for name, fb in entry["components"].items():
        if name != "glue":
            own = by.get(name, {})
            entry["components"][name] = [fb[0] * own.get("F", k["F"]), fb[1] * own.get("B", k["B"])]
    for d, key in (("F", "fwd"), ("B", "bwd")):
        entry["expert"][key] = [x * k[d] for x in entry["expert"][key]]


def _context_of_probes(entry: dict, comps: list[dict], cfg) -> None:
    """The median context factor over the probes that give one, applied to ``entry`` (``context`` key)."""
    ks = [k for k in (_context(cc, cfg) for cc in comps) if k]
    if ks:
        entry["context"] = {d: statistics.median(k[d] for k in ks) for d in ("F", "B")}
        by: dict[str, dict[str, list[float]]] = {}
        for k in ks:
            for name, fb in k.get("by", {}).items():
                for d, v in fb.items():
                    by.setdefault(name, {}).setdefault(d, []).append(v)
        if by:
            entry["context"]["by"] = {name: {d: statistics.median(v) for d, v in fb.items()}
                                      for name, fb in by.items()}
        _apply_context(entry, entry["context"])


def _profiles(c: dict) -> list[dict]:
    """A rank calibration's component profiles, one per probe that has one."""
    return [p["components"] for p in c["probes"] if "components" in p]


def _rank_entry(c: dict, cfg=None, host: list[dict] | None = None) -> dict:
    """One rank's table entry from its calibration ``c``; ``host``: every rank's calibration on its host (the
    compute's CPU samples are pooled over them, ``_component_times``)."""
    comps = _profiles(c)
    if not comps:
        raise ValueError(f"rank {c['rank']}: the calibration has no component profile")
    ded = bool(comps[0].get("dedicated"))
    share = window_share(c["probes"]) if ded else 1.0
    wins = [cc["window"] for cc in comps if "window" in cc]
    cvs: list[float] = []
    wts: list[float] = []
    pool = [x for h in host for x in _profiles(h)] if host else comps
    out: dict = {"components": _component_times(comps, ded, share, cvs, wts, pool),
                 "expert": _expert_fit(comps, share, cvs, wts), "codec": _codec_fit(comps, share), "share": share,
                 "busy": statistics.median(w["busy"] for w in wins) if wins else 1.0}
    _context_of_probes(out, comps, cfg)
    out["bwd_start_s"] = statistics.median(cc.get("bwd_call_overhead_s", 0.0) for cc in comps) / share
    out["layout_host_s"] = _layout_host(comps, share)
    out["comm_in_stage_s"] = _comm_in_stage(comps)
    out["in_stage_wall_per_cpu"] = _compute_in_stage(comps) if ded else {}
    out.update(_optim(comps, share), **_boundary(comps, share), **_chunk_ends(comps, share))
    out["requant_s"] = _requant_s(comps, share)
    out.update(_grad_sync(comps))
    out["cv"] = sum(c_ * w for c_, w in zip(cvs, wts)) / sum(wts) if wts and sum(wts) > 0 else 0.0
    if ded:
        out["preempt"] = _preempt(c["probes"], comps)
    return out


def _optim(comps: list[dict], share: float) -> dict[str, float]:
    """{optim_s: the optimizer step's expected time (``robust.expected``) over the share, x ``optim_context`` where the
    stage pass measured it: the step after a forward and backward, as the run takes it, over back to back
    (``stage_pass._update_context``)}."""
    out = {"optim_s": expected([x for cc in comps for x in cc["optim"]["F_s"]]) / share}
    ks = [cc["glue"]["optim_context"] for cc in comps if (cc.get("glue") or {}).get("optim_context")]
    if ks:
        out["optim_context"] = statistics.median(ks)
        out["optim_s"] *= out["optim_context"]
    return out


def _boundary(comps: list[dict], share: float) -> dict[str, dict[str, float]]:
    """{boundary_s: the backward's two ends in a first-and-last stage (``stage_pass._boundary``), median over
    the probes over the share} where the stage pass measured them; else nothing (the step model then prices the
    autograd start-up and the head's and embedding's standalone backward)."""
    return _glue_medians(comps, "boundary", "boundary_s", ("B_last", "B_first"), share)


def _chunk_ends(comps: list[dict], share: float) -> dict[str, dict[str, float]]:
    """{chunk_ends_s: the glue stage pass's two ends per direction (``stage_pass.glue``: F/B head and tail),
    median over the probes over the share} where the profile measured them; else nothing (the step model then
    has them inside the per-layer glue, as the profile did)."""
    return _glue_medians(comps, "chunk_ends", "chunk_ends_s", ("F_head", "F_tail", "B_head", "B_tail"), share)


def _glue_medians(comps: list[dict], key: str, out_key: str, names: tuple[str, ...],
                  share: float) -> dict[str, dict[str, float]]:
    """{out_key: {name: the median over the probes of the glue profile's ``key`` entry / share}}; {} where no
    probe's glue profile has ``key``."""
    got = [cc["glue"][key] for cc in comps if (cc.get("glue") or {}).get(key)]
    return {out_key: {k: statistics.median(g[k] for g in got) / share for k in names}} if got else {}


def _layout_host(comps: list[dict], share: float) -> float:
    """Host work inside one MoE layer's ``layout(F)`` span between its three all-to-alls (the counts' ``tolist``,
    the pair layout tensors, the gate weights' autograd all-to-all): the CPU seconds of the glue stage's layout
    spans (the run's EP path, ``ep.EPMoE._exchange_layout``) per MoE layer, median over the probes, over the
    share. 0 without an EP glue profile (no EP, or a profile from before the spans kept their CPU)."""
    xs = [g["stage_layout_cpu_s"]["F"] / g["n_moe"] for g in (cc.get("glue") for cc in comps)
          if g and g.get("ep", 1) > 1 and g.get("n_moe") and "stage_layout_cpu_s" in g]
    return statistics.median(xs) / share if xs else 0.0


def _comm_in_stage(comps: list[dict]) -> dict[str, float]:
    """{all-to-all span: wall seconds per MoE layer} of the EP glue stage (the run's EP path in a whole-stage
    pass, every rank of the EP group at once: transfer, the gloo threads' wake-ups and the waits for the peers as
    the stage has them), median over the probes; {} without an EP glue profile."""
    per = [g["comm_per_moe_layer_s"] for g in (cc.get("glue") for cc in comps) if g and g.get("comm_per_moe_layer_s")]
    names = {k for c in per for k in c}
    return {k: statistics.median(c[k] for c in per if k in c) for k in sorted(names)}


def _compute_in_stage(comps: list[dict]) -> dict[str, float]:
    """{F|B: wall over CPU seconds of the EP glue stage's compute spans} (every span of the direction but the
    all-to-alls, median over the probes, never below 1): the pace of compute between the exchanges as the stage
    runs it, every rank of the EP group at once. With more ranks than cores, ranks woken together from an
    all-to-all share the cores (4 ranks on 2 cores: 1.1-1.3 in the stage, 1.1-1.5 in the runs' spans); with a
    core each, ~1.0. One pace per direction: the short spans' own (gate, shared expert) ran at ~1.0 in the stage
    and at 1.1-1.5 in the runs, which the direction's pace matches better (MEASUREMENTS.md). {} without an EP
    glue profile."""
    gs = [g for g in (cc.get("glue") for cc in comps)
          if g and g.get("ep", 1) > 1 and "stage_compute_cpu_s" in g and "stage_all_to_all_s" in g]
    out = {}
    for d in ("F", "B"):
        xs = [(g["stage_spans_s"][d] - g["stage_all_to_all_s"][d]) / g["stage_compute_cpu_s"][d]
              for g in gs if g["stage_compute_cpu_s"][d] > 0]
        if xs:
            out[d] = max(statistics.median(xs), 1.0)
    return out


def _requant_s(comps: list[dict], share: float) -> float:
    """FP8 weight re-quantisation after the optimizer (``requant.py``; 0 without FP8 compute)."""
    rq = [x for cc in comps if "requant" in cc for x in cc["requant"]["F_s"]]
    return expected(rq) / share if rq else 0.0


def _grad_sync(comps: list[dict]) -> dict[str, float]:
    """{grad_sync_s: the gradient all-reduce's expected time (``robust.expected``; timed after GAP_S of compute),
    x ``allreduce_context`` where the stage pass measured it: the all-reduce right after a forward and backward,
    as the run calls it, over after the gap (``stage_pass._update_context``), medians of every probe's samples}."""
    gs = [x for cc in comps if "grad_sync" in cc for x in _grad_sync_samples(cc["grad_sync"])]
    out = {"grad_sync_s": expected(gs) if gs else 0.0}
    pairs = [cc["glue"]["allreduce_pair_s"] for cc in comps if (cc.get("glue") or {}).get("allreduce_pair_s")]
    after, again = ([x for p in pairs for x in p[k]] for k in ("after", "again"))
    if gs and after and again and statistics.median(again) > 0:
        out["allreduce_context"] = statistics.median(after) / statistics.median(again)
        out["grad_sync_s"] *= out["allreduce_context"]
    return out


def _grad_sync_samples(g: dict) -> list[float]:
    """The gradient all-reduce's samples (its mean times each sample / mean)."""
    return [g["F"] * r for r in g.get("F_rel", [1.0])] or [g["F"]]


def _routing(spec, train: list[dict]) -> dict[str, list[dict]]:
    """{layer: [per DP replica {send_rows: [[rows e -> e'] ...], expert_rows: [rows received per EP rank]}]}."""
    by_rank = {m["rank"]: m for m in train}
    layers = sorted({int(L) for m in train for L in m["routing"]})
    out: dict[str, list[dict]] = {}
    for L in layers:
        reps = []
        for d in range(spec.dp):
            send, rows = [], []
            for e in range(spec.ep):
                ents = [x for p in range(spec.pp)
                        for x in by_rank[rank_of(Coord(dp=d, pp=p, ep=e), spec.ep, spec.pp)]["routing"].get(str(L), [])]
                if not ents:
                    raise ValueError(f"no routing recorded for layer {L} replica {d} EP rank {e}")
                send.append([statistics.fmean(x["send_rows"][j] for x in ents) for j in range(spec.ep)])
                rows.append(statistics.fmean(sum(x["expert_rows"]) for x in ents))
            reps.append({"send_rows": send, "expert_rows": rows})
        out[str(L)] = reps
    return out


def build_table(spec, train: list[dict], calib: list[dict], machine: str) -> dict:
    import torch

    m0 = train[0]
    D, elt = m0["hidden"], m0["elt_bytes"]
    dt = torch.float32 if elt == 4 else torch.bfloat16
    cfg = _model(spec)
    return {"format": FORMAT, "version": VERSION, "machine": machine,
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "device": spec.device, "model": spec.model,
            "pp": spec.pp, "ep": spec.ep, "dp": spec.dp, "schedule": spec.schedule, "microbatches": m0["microbatches"],
            "tokens_per_microbatch": m0["tokens_per_mb"], "hidden": D, "elt_bytes": elt,
            "fp8_compute": spec.fp8_compute, "fp8_dispatch": spec.fp8,
            "row_bytes": {w: row_bytes(D, w, dt) for w in ("fp8", "bf16", "native")},
            "stages": dict(sorted({s: v for m in train for s, v in m["stages"].items()}.items(),
                                  key=lambda kv: int(kv[0]))),
            "routing": _routing(spec, train),
            "cores": cores() if spec.device == "cpu" else 0, "procs": spec.nproc * spec.threads,
            "a2a_exit_skew_s": exit_skew(calib),
            **(p2p_times(calib, m0["tokens_per_mb"] * D * elt) if spec.pp > 1 else {}),
            "ranks": {str(c["rank"]): _rank_entry(c, cfg, [h for h in calib if h["rank"] // spec.nproc ==
                                                           c["rank"] // spec.nproc]) for c in calib}}


def exit_skew(calib: list[dict]) -> float:
    """The all-to-all sweep's exit skew: per call, the last member's exit from it past the members' mean exit
    (each member leaves when its own thread is woken from the collective; ``calibrate._Last``), median over
    rank 0's probes; 0 where the sweep could not compare the members' clocks (GPU, several hosts)."""
    first = min(calib, key=lambda c: c["rank"])
    xs = [p["all_to_all_exit_skew_s"] for p in first["probes"] if "all_to_all_exit_skew_s" in p]
    return statistics.median(xs) if xs else 0.0


def _model(spec):
    """The run's model config (the glue stage's MoE layers and expert pairs when its profile did not record
    them); None if it cannot be read."""
    from dsv3sim.config import load_model_config

    try:
        return load_model_config(spec.model)
    except Exception:  # noqa: BLE001 - an unreadable model only loses that fallback
        return None


def write_scenario(spec, out_dir: Path, topology: Path, table: Path) -> Path:
    """A scenario file reproducing the prediction: ``dsv3sim run <it> --json -``."""
    name = f"validate-{Path(spec.model).stem}-ep{spec.ep}-pp{spec.pp}-dp{spec.dp}-{spec.schedule}"
    gbs = spec.micro_batch * spec.n_microbatches * spec.dp * spec.ep
    text = f'''"""Written by dsv3sim validate: the step it predicted, on this machine's calibration
(topology {topology.name}, component table {table.name}). Reproduce: dsv3sim run {out_dir / SCENARIO} --json -"""

from pathlib import Path

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

HERE = Path(__file__).resolve().parent


def DEFAULT() -> Scenario:
    return Scenario(
        name={name!r}, model={spec.model!r}, topology=str(HERE / {topology.name!r}),
        parallel=ParallelDims(pp={spec.pp}, dp={spec.dp * spec.ep}, ep={spec.ep}),
        workload=TrainingWorkload(
            global_batch_sequences={gbs}, seq_len={spec.seq_len}, micro_batch_sequences={spec.micro_batch},
            schedule={spec.schedule!r}, gemm_dtype={"fp8" if spec.fp8_compute else "bf16"!r},
            dispatch_dtype={"fp8" if spec.fp8 else "bf16"!r}, node_limit=None, zero1=False,
            component_table=str(HERE / {table.name!r})))
'''
    return write_text(out_dir / SCENARIO, text)


def write_artefacts(spec, train: list[dict], calib: list[dict], out_dir: Path, topology: Path,
                    machine: str) -> tuple[Path, Path]:
    """(component table, scenario file) in ``out_dir``."""
    table = out_dir / TABLE
    write_json(table, build_table(spec, train, calib, machine))
    return table, write_scenario(spec, out_dir, topology, table)
