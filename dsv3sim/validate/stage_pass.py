"""The calibration's whole-stage pass: the model's layers run through the run's own stage code
(``train.Stage``), forward then backward, as a run's stage runs them. From it come the framework glue per
layer and pass (what the stage's spans do not cover), the EP exchanges as a stage has them, the in-stage
context of each compute component (``component_table._context``), the optimizer's context factor and the
backward's two ends in a first-and-last stage. ``win`` and ``grads`` are the profile's sample window and
gradient pattern (``components._Window``, ``components._Grads``)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch


def glue(cfg, spec, parts, mat, hid, reps: int, sync, comps: dict, bwd_start: float, win, grads, ep=None,
         around: dict | None = None, grad_sync=None) -> dict:
    """Framework time per layer and pass, measured the way the run defines it (``other`` = step - timed spans):
    the model's layers run through the run's own stage code (``train.Stage`` with ``ep.EPMoE`` MoE layers:
    residual adds, norms, timeline marks, the routing bookkeeping, the autograd graph between the components),
    forward and backward, and what the stage's timeline spans do not cover is the glue. With EP on CPU (``ep`` =
    (group, EP rank)) the MoE layers run the run's EP path with this rank's experts and real all-to-alls over its
    EP group (every rank of the group profiles at once, so the collectives pair up): the layout bookkeeping
    after the exchange, the all-to-all autograd functions and ``tolist`` syncs are glue the one-rank path lacks.
    Backward: less the autograd start-up and the gate's backward (both charged separately). The time from a
    pass's call to its first span and from its last span to its return (``chunk_ends``: F/B head and tail; on
    `tiny` 111 / 41 us forward, 409 / 136 us backward) is paid once per pipeline chunk, however many layers the
    chunk holds, so it is not spread over the layers (a 2-layer chunk paid half of it). Dropping the backward's
    output after the call frees the pass's autograd graph, a cost that grows with the layers: it joins the
    per-layer backward glue. On CPU the share of
    the stage's CPU time outside the spans (the table divides by the window's share; a rank blocked in an
    all-to-all spends no CPU, so the share is over the time outside them), on a GPU wall time. A GPU profiles the
    dense layers only (a V3-width MoE layer's experts do not fit beside the calibration)."""
    ded, dev = comps["dedicated"], hid().device
    st, tl, layers, moe, R, group = _glue_stage(cfg, spec, parts, mat, dev, ded, ep)
    tot, xchg, span_cpu, ends = _stage_spans(st, tl, hid, reps, sync, win, grads, around if ded else None, group)
    contexts = _update_context(st, moe, hid, reps, sync, win, grad_sync) if ded else (None, None)
    boundary = _boundary(cfg, spec, parts, mat, layers, moe, tl, dev, reps, sync, grads) if ded else None
    n, n_moe = len(layers), len(moe)
    gate_b = comps["gate"]["B"] if "gate" in comps else 0.0
    per, chunk = {}, {}
    for d in ("F", "B"):
        wall, cpu, spans, comm, _, _ = (v / reps for v in tot[d])
        busy = wall - comm
        ratio = min(cpu / busy, 1.0) if ded and busy > 0 else 1.0
        out_of_spans = max(wall - spans, 0.0) * ratio
        # the pass's two ends are paid once per chunk, whatever its layers (``chunk_ends``): a backward's head
        # holds the autograd start-up, which the step model charges per backward call already
        head, tail = ends.get(f"{d}_head", 0.0) / reps * ratio, ends.get(f"{d}_tail", 0.0) / reps * ratio
        if d == "B":
            out_of_spans -= bwd_start + n_moe * gate_b
            head = max(head - bwd_start, 0.0)
        # the backward's graph released after the call (``_stage_pass``): outside the pass's wall; its size and
        # so its cost grow with the chunk's layers, so it joins the per-layer glue
        release = ends.get("B_release", 0.0) / reps * ratio if d == "B" else 0.0
        chunk[f"{d}_head"], chunk[f"{d}_tail"] = head, tail
        per[d] = max((out_of_spans - head - tail + release) / n, 0.0)
    pairs = [sum(x["expert_rows"]) for m in moe.values() for x in m.routing]
    # the EP exchanges as the stage runs them (wall per MoE layer, waits for the peers included): R > 1 only
    in_stage = {k: v / reps / n_moe for k, v in xchg.items()} if R > 1 and n_moe else {}
    return {"F": per["F"], "B": per["B"], "F_s": [per["F"]], "B_s": [per["B"]], "chunk_ends": chunk,
            "layers": layers, "ep": R,
            "comm_per_moe_layer_s": in_stage,
            "stage_span_cpu_s": {k: v / reps for k, v in span_cpu.items()},  # per compute span name (context)
            "optim_context": contexts[0], "allreduce_pair_s": contexts[1], "boundary": boundary,
            "n_moe": n_moe, "pairs_per_moe_layer": statistics.fmean(pairs) if pairs else 0.0,
            **{f"stage_{k}_s": {d: tot[d][i] / reps for d in tot}
               for i, k in enumerate(("wall", "cpu", "spans", "all_to_all", "compute_cpu", "layout_cpu"))}}


def _glue_stage(cfg, spec, parts, mat, dev, ded: bool, ep):
    """The glue profile's stage (``train.Stage``, neither first nor last), its timeline, its layers, its EP MoE
    layers, EP size and EP group (None without one): every dense layer, and on CPU every MoE layer with this
    rank's experts (the run's EP path over ``ep`` = (group, EP rank) when given)."""
    from dsv3sim.validate.ep import EPMoE
    from dsv3sim.validate.timeline import Timeline
    from dsv3sim.validate.train import Stage

    layers = [b.layer for b in parts.blocks if b.ffn is not None or (ded and b.is_moe)]
    tl = Timeline(dev)
    tl.step = 0
    group, ep_rank = ep if ep is not None and ded else (None, 0)
    R = spec.ep if group is not None else 1
    Er = cfg.n_routed_experts // R
    moe = {b.layer: EPMoE(cfg=cfg, layer=b.layer, gate_weight=b.gate_weight, gate_bias=b.gate_bias,
                          experts=b.expert_slice(ep_rank * Er, (ep_rank + 1) * Er), n_local=Er, shared=b.shared,
                          group=group, ep_rank=ep_rank, ep_size=R, node_size=spec.node_size if R > 1 else 1,
                          fp8=spec.fp8 and R > 1, tl=tl) for b in parts.blocks if b.layer in layers and b.is_moe}
    st = mat(Stage(s=1, n_stages=3, parts=parts, layers=layers, moe=moe, tl=tl))
    for m in moe.values():
        if m.gate_bias is not None:
            m.gate_bias = m.gate_bias.to(dev)
    return st, tl, layers, moe, R, group


_COMM_SPANS = ("layout(", "dispatch(", "combine(")
_AROUND_CALLS = ("head(F)", "embed after F", "embed(F)")  # timed outside the stage's passes (``_stage_pass``)


def _stage_spans(st, tl, hid, reps: int, sync, win, grads, around: dict | None = None, group=None
                 ) -> tuple[dict[str, list[float]], dict[str, float], dict[str, float], dict[str, float]]:
    """({F|B: [wall, CPU, timeline spans, all-to-all spans, CPU inside the compute spans, CPU inside the layout
    spans]}, {all-to-all span name: wall}, {compute span name: CPU}, {F|B_head|tail: wall of the pass's two ends,
    ``_stage_pass``}) seconds of ``st`` forward and backward,
    summed over ``reps`` samples after one warm-up. ``around`` ({"head"|"embed": the profiled call}): the head
    runs on the stage's output right after its forward, as a last stage runs it, then the embedding, as a first
    stage's next forward follows a forward, and the embedding right after the backward, as it follows a backward
    or the optimizer's step; their CPU seconds join the span dict as ``head(F)`` / ``embed after F`` /
    ``embed(F)`` (outside the stage's own totals). With an EP ``group`` its ranks start every pass
    at one instant, as a run's steps start (``train._start_together``): unaligned, the pass's first exchange
    held the ranks' skew from the previous sample's ends."""
    from dsv3sim.validate.train import _start_together

    tot = {"F": [0.0] * 6, "B": [0.0] * 6}  # [4], the compute spans' CPU, is summed from the names' below
    comm: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    ends: dict[str, float] = defaultdict(float)
    for i in range(reps + 1):
        grads.before(i)
        x = hid().requires_grad_()
        if group is not None:
            _start_together(x.device, group)
        wc, outside, end = _stage_pass(st, tl, x, sync, win, around)
        if i:
            for k, v in end.items():
                ends[k] += v
            for d, (w, c) in wc.items():
                tot[d][0] += w
                tot[d][1] += c
                tot[d][2] += sum(e.dur for e in tl.events if e.name.endswith(f"({d})"))
                tot[d][3] += sum(e.dur for e in tl.events if e.name.endswith(f"({d})") and
                                 e.name.startswith(_COMM_SPANS))
                tot[d][5] += sum(e.cpu for e in tl.events if e.name == f"layout({d})")
            for e in tl.events:
                if e.name.startswith(_COMM_SPANS):
                    comm[e.name] += e.dur
                else:
                    cpu[e.name] += e.cpu
            for k, v in outside.items():
                cpu[k] += v
    for d in tot:  # the stage's own compute spans: every timed name of the direction but the calls around it
        tot[d][4] = sum(v for k, v in cpu.items() if k.endswith(f"({d})") and k not in _AROUND_CALLS)
    return tot, dict(comm), dict(cpu), dict(ends)


def _boundary(cfg, spec, parts, mat, layers, moe, tl, dev, reps: int, sync, grads) -> dict[str, float] | None:
    """The backward's two ends as a first-and-last stage runs them (``train.Stage`` with the embedding, the
    layers and the head and loss), CPU seconds (wall x the backward's own CPU share): ``B_last`` from the
    backward call to its first span (the autograd start-up, the loss's, head's and final norm's backward: what a
    last stage runs before its last layer's), ``B_first`` from its last span to the call's return (the
    embedding's backward and the engine's finish: what a first stage runs after its first layer's). Standalone,
    the head's and the embedding's backward missed 0.33 and 0.54 ms of these on ``tiny`` dp2."""
    from dsv3sim.validate.train import Stage

    full = mat(Stage(s=0, n_stages=1, parts=parts, layers=layers, moe=moe, tl=tl))
    tok = torch.randint(0, cfg.vocab_size, (spec.micro_batch, spec.seq_len + 1), device=dev)
    last, first = [], []
    for i in range(reps + 1):
        grads.before(i)
        tl.events.clear()
        loss = full(tok[:, :-1], tok[:, 1:])
        sync()
        c1, t1 = time.thread_time(), time.perf_counter()
        loss.backward()
        sync()
        c2, t2 = time.thread_time(), time.perf_counter()
        ends = _ends(tl.events, "B", t1, t2)
        if i and ends is not None and t2 > t1:
            r = min((c2 - c1) / (t2 - t1), 1.0)
            last.append(ends[0] * r)
            first.append(ends[1] * r)
    return {"B_last": statistics.median(last), "B_first": statistics.median(first)} if last else None


def _update_context(st, moe: dict, hid, reps: int, sync, win, grad_sync=None) -> tuple[float | None, dict | None]:
    """The optimizer's and the gradient all-reduce's context: each timed where the run calls it, after the stage's
    forward and backward (the all-reduce, then the optimizer: the step's activations and fresh gradients have
    evicted the optimizer's state and the all-reduce's buffers, and a rank that computed wakes its communication
    thread), and again as its profile times it: the optimizer back to back (CPU seconds), the all-reduce after
    GAP_S of compute (``grad_sync``: ``calibrate._SyncAfter``, wall from the group's latest entry; None without
    one: a single replica). Returns (the optimizer's median ratio, the all-reduce's samples: ``_pairs``). In
    process on ``tiny``, the whole model: the optimizer 5.33 ms after a forward and backward, 3.58 ms back to back;
    two gloo ranks: 5.71 ms after the backward and the all-reduce, 4.45 ms after the backward and a barrier,
    5.18 ms back to back."""
    ps = [p for p in st.parameters() if p.requires_grad]
    if not ps:  # every rank's glue stage holds the same layers: all return here together, before any collective
        return None, None
    ex = {id(p) for m in moe.values() for p in m.experts.parameters()}
    dense, experts = [p for p in ps if id(p) not in ex], [p for p in ps if id(p) in ex]
    for p in ps:
        p.grad = None
    opt = torch.optim.AdamW(ps, lr=1e-4)  # as train.py on a CPU
    after, again = [], []
    for i in range(reps + 1):
        y = st(hid().requires_grad_(), None)
        y.backward(torch.ones_like(y))
        if grad_sync is not None:
            grad_sync(dense, experts)
        grads = [p.grad for p in ps]
        t1 = win.timed(opt.step, sync, cpu=True, keep=False)
        for p, g in zip(ps, grads):
            p.grad = g
        t2 = win.timed(opt.step, sync, cpu=True, keep=False)
        if grad_sync is not None:
            grad_sync(dense, experts, gap=True)
        opt.zero_grad(set_to_none=True)
        if i:  # the first step also creates the optimizer's state
            after.append(t1)
            again.append(t2)
    return _ratio(after, again), (_pairs(grad_sync.times()) if grad_sync is not None else None)


def _pairs(ts: list[float]) -> dict[str, list[float]]:
    """The all-reduce's samples of ``_update_context``, {after: right after the backward, again: after the gap}
    (the warm-up's pair dropped; its calls alternate). Three samples a quick probe scatter by 2x and more on a
    loaded box, so the table pools them over the probes before taking the ratio."""
    return {"after": ts[2::2], "again": ts[3::2]}


def _ratio(a: list[float], b: list[float]) -> float | None:
    ma, mb = (statistics.median(a), statistics.median(b)) if a and b else (0.0, 0.0)
    return ma / mb if ma > 0 and mb > 0 else None


def _stage_pass(st, tl, x: torch.Tensor, sync, win, around: dict | None):
    """One forward and backward of the stage: ({F|B: (wall, CPU)}, {head(F)|embed after F|embed(F): CPU} of
    ``around``'s calls, run outside the stage's timed passes: the head after the forward, then the embedding (as a
    first stage's next forward follows its forward), the embedding after the backward,
    {F|B_head|tail: wall from the pass's call to its first span and from its last span to the return, B_release:
    wall of dropping the backward's graph after the return})."""
    tl.events.clear()
    sync()
    c0, t0 = time.thread_time(), time.perf_counter()
    y = st(x, None)
    sync()
    c1, t1 = time.thread_time(), time.perf_counter()
    fwd, f_end = (t1 - t0, c1 - c0), t1
    outside = {}
    if around:
        yd = y.detach()
        outside["head(F)"] = win.timed(lambda: around["head"](yd), sync, cpu=True, keep=False)
        outside["embed after F"] = win.timed(lambda: around["embed"](yd), sync, cpu=True, keep=False)
        c1, t1 = time.thread_time(), time.perf_counter()
    y.backward(torch.ones_like(y))
    sync()
    c2, t2 = time.thread_time(), time.perf_counter()
    # drop the pass's output: its autograd graph (nodes and what they still hold) is freed here, as a run's step
    # frees it after each backward call returns (tiny dp2: 0.42-0.45 ms per step, the whole gap from the backward's
    # return to the all-reduce); charged with the backward's per-layer glue
    y = None
    release = time.perf_counter() - t2
    if around:
        outside["embed(F)"] = win.timed(lambda: around["embed"](yd), sync, cpu=True, keep=False)
    ends = {}
    for d, (a, b) in (("F", (t0, f_end)), ("B", (t1, t2))):
        ends[f"{d}_head"], ends[f"{d}_tail"] = _ends(tl.events, d, a, b) or (0.0, 0.0)
    ends["B_release"] = release
    return {"F": fwd, "B": (t2 - t1, c2 - c1)}, outside, ends


def _ends(events, d: str, start: float, end: float) -> tuple[float, float] | None:
    """(from ``start`` to the first span of direction ``d``, from its last span to ``end``) seconds of a pass
    timed from ``start`` to ``end``; None without spans of that direction."""
    ev = [e for e in events if e.name.endswith(f"({d})")]
    if not ev:
        return None
    return max(min(e.t0 for e in ev) - start, 0.0), max(end - max(e.t1 for e in ev), 0.0)
