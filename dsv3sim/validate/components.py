"""Kernel times profiled on this machine: forward and backward of each model component, standalone.

Run in the calibration phase (same processes as the validation run, so the same cores and contention), on
synthetic inputs at the run's shapes, with the modules the run executes (``nn_adapter.build``). The components
are timed without communication; the glue profile runs a whole stage, with EP on CPU the run's EP path and its
real all-to-alls (``stage_pass.glue``).
These times, the calibrated transport and the run's routing are all the prediction uses (``component_table.py``).

Per component: the forward and backward samples (``F_s``/``B_s``; routed experts: the fit and the samples'
spread ``F_rel``/``B_rel``), which the predictor pools over probes and resamples: on a shared CPU the ranks
are preempted at random, and each EP all-to-all waits for the slowest rank, so the expected step is E[max] of
noisy segments, not the sum of means. Backward times exclude the autograd engine's per-call start-up
(measured on an identity graph), which a real backward pays once per microbatch, not once per component.

Components: attention block (norm + MLA) at [B, S, D]; dense FFN; this rank's routed-expert module (its
E/ep experts, the same call as the run) at several row counts (forward and backward, t = c + e * experts +
b * pairs when the rank holds more experts than fit in memory, else t = a + b * pairs: ``_experts``); shared
experts; the gate's routing and permutation work; head + loss; embedding; AdamW step over exactly the parameter
shapes this rank holds.
"""

from __future__ import annotations

import statistics
import time
import weakref

import torch
import torch.nn.functional as F

from dsv3sim.validate.alpha_beta import fit, line_through
from dsv3sim.validate.layout import coord, stage_layers
from dsv3sim.validate.nn_adapter import build
from dsv3sim.validate.parts import materialize
from dsv3sim.validate.requant import fp8_operands, profile_requant
from dsv3sim.validate.robust import expected
from dsv3sim.validate.schedule import plan
from dsv3sim.validate.stage_pass import glue

REPS = 8
# A rank that just woke from a blocking wait runs differently from one that computed back to back: on a loaded
# CPU the scheduler (Linux CFS) runs the woken task ahead of the CPU-bound ones for a few ms (measured: an MLA
# forward of `tiny` took 11 ms back to back but 5 ms after a 3 ms sleep at load ~13); on an idle one its core
# comes back from a sleep state with cold caches (measured on 16 idle cores: the short shared-expert and gate
# spans of EP runs 20-50 % faster in the run than profiled after a sleep). So a component is profiled after
# such a wait only where the run has one before it: with EP the routed experts follow the dispatch and the
# payload encoding the layout exchange; attention, gate, shared experts, head and embedding follow compute.
# The optimizer always follows a wait (the gradient all-reduce) when there are several ranks; on CPU it is
# profiled after a barrier of every rank instead (``_optim``: the ranks step together, as in the run).
WAIT_S = 3e-3
LARGE = 1 << 24  # optimizer: tensors above this many elements are timed as flat stand-ins (_optim)
MAX_PROFILED_EXPERTS = 16  # at least (on CPU: exactly) this many experts are profiled at once (_experts_that_fit)


class _Window:
    """CPU and wall seconds of every sample of one profile: the share of a core this rank got (CPU / wall) and
    how much of the profile's time it computed (busy, the rest asleep in WAIT_S); see ``robust.py``."""

    def __init__(self) -> None:
        self.cpu = self.wall = self.slept = 0.0
        self.t0 = time.perf_counter()

    def sleep(self, s: float) -> None:
        t = time.perf_counter()
        time.sleep(s)
        self.slept += time.perf_counter() - t

    def timed(self, fn, sync, cpu: bool, keep: bool = True) -> float:
        """Seconds of one sample of ``fn`` between device syncs (CPU seconds with ``cpu``, else wall); kept
        samples count towards the window's share."""
        sync()
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        sync()
        c1, t1 = time.thread_time(), time.perf_counter()
        if keep:
            self.cpu += c1 - c0
            self.wall += t1 - t0
        return c1 - c0 if cpu else t1 - t0

    def samples(self, fn, sync, cpu: bool, reps: int, wait_s: float = 0.0, before=None) -> list[float]:
        """``reps`` samples of ``fn`` (``timed``) after one warm-up, each after ``before()`` (untimed) and, with
        ``wait_s``, that long asleep (WAIT_S)."""
        ts = []
        for i in range(reps + 1):
            if before is not None:
                before()
            if wait_s:
                self.sleep(wait_s)
            t = self.timed(fn, sync, cpu, keep=i > 0)
            if i:
                ts.append(t)
        return ts

    def summary(self) -> dict:
        el = max(time.perf_counter() - self.t0, 1e-9)
        return {"cpu_s": self.cpu, "wall_s": self.wall, "share": self.cpu / self.wall if self.wall else 1.0,
                "busy": max(el - self.slept, 0.0) / el}


_WIN = _Window()


class _Grads:
    """Parameter gradients as the run has them when a backward starts: a step begins with none
    (``zero_grad(set_to_none=True)``), so a stage's first micro-batch assigns every weight gradient and each later
    one of the step accumulates into it (reads and writes the whole gradient: at DeepSeek-V3 width 256 experts'
    gradients are 22 GB, ~10 ms of HBM traffic per backward on an H200). Sample i of a profile (0 = warm-up)
    starts with no gradients when i is a multiple of the run's micro-batches per step, else accumulates."""

    def __init__(self, every: int = 1) -> None:
        self.every, self.held = max(every, 1), weakref.WeakSet()  # weak: a profiled module is freed after use

    def track(self, m):
        """``m`` (a module or a parameter) takes part; returned as is."""
        self.held.add(m)
        return m

    def before(self, i: int) -> None:
        if i % self.every == 0:
            for m in list(self.held):
                for p in m.parameters() if isinstance(m, torch.nn.Module) else [m]:
                    p.grad = None


_GRADS = _Grads()


def _samples(fn, make_input, reps: int, sync, wait_s: float = 0.0) -> tuple[list[float], ...]:
    """Wall and CPU seconds of forward and backward, ``reps`` samples after one warm-up: (F, B, F_cpu, B_cpu).
    CPU seconds (``time.thread_time``) are the work a sample needed whatever share of a core the scheduler gave
    it (on CPU the autograd engine runs backward on this thread). Parameter gradients follow the run (``_GRADS``)."""
    fs, bs, cf, cb = [], [], [], []
    for i in range(reps + 1):
        _GRADS.before(i)
        x = make_input().requires_grad_()
        if wait_s:
            _WIN.sleep(wait_s)  # block like a rank waiting in an all-to-all (see WAIT_S)
        sync()
        c0, t0 = time.thread_time(), time.perf_counter()
        y = fn(x)
        sync()
        c1, t1 = time.thread_time(), time.perf_counter()
        y.backward(torch.ones_like(y))
        sync()
        c2, t2 = time.thread_time(), time.perf_counter()
        if i:  # first is warm-up
            fs.append(t1 - t0)
            bs.append(t2 - t1)
            cf.append(c1 - c0)
            cb.append(c2 - c1)
            _WIN.cpu += c2 - c0
            _WIN.wall += t2 - t0
    return fs, bs, cf, cb


def _summary(fs: list[float], bs: list[float], cf: list[float], cb: list[float], bwd_start: float,
             dedicated: bool) -> dict:
    """F/B: the expected time per call (``robust.expected``) of the CPU samples with ``dedicated`` (a CPU run: the
    time on a core of its own; the table divides by the window's share), else of the wall samples; the samples
    are kept."""
    bs = [max(b - bwd_start, 0.0) for b in bs]
    cb = [max(b - bwd_start, 0.0) for b in cb]
    F, B = (cf, cb) if dedicated else (fs, bs)
    return {"F": expected(F), "B": expected(B), "F_s": fs, "B_s": bs, "F_cpu_s": cf,
            "B_cpu_s": cb}


def profile_components(cfg, spec, device: torch.device, sync, rank: int = 0, *, parts=None,
                       reps: int = REPS, ep=None, grad_sync=None, meet=None) -> dict:
    """Every component's profile on this rank (module docstring); ``ep`` = (EP process group, EP rank) lets the
    glue profile run the run's EP path with real all-to-alls, ``grad_sync`` (``calibrate._SyncAfter``) the run's
    gradient all-reduce after the stage's backward (``stage_pass.glue``), ``meet`` (a barrier of every rank) the
    ranks' optimizer steps at once (``_optim``)."""
    parts = parts if parts is not None else build(cfg, spec.seed, fp8=spec.fp8_compute)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    B, S, D = spec.micro_batch, spec.seq_len, cfg.hidden_size
    T = B * S
    hid = lambda: torch.randn(B, S, D, dtype=dtype, device=device)
    wait = WAIT_S if spec.ep > 1 else 0.0  # before the routed experts and the payload encoding only (WAIT_S)
    global _WIN, _GRADS
    _WIN = _Window()
    _GRADS = _Grads(spec.n_microbatches)
    ded = device.type == "cpu"
    _, b0, _, c0 = _samples(lambda x: x * 1.0, hid, reps, sync)
    bwd_start = statistics.median(c0 if ded else b0)
    out: dict = {"tokens_per_microbatch": T, "bwd_call_overhead_s": bwd_start, "wait_before_sample_s": wait,
                 "dedicated": ded}

    def prof(name, fn, make=hid):
        out[name] = _summary(*_samples(fn, make, reps, sync), bwd_start, ded)

    dense = next((b for b in parts.blocks if b.ffn is not None), None)
    moe = next((b for b in parts.blocks if b.is_moe), None)
    blk = parts.blocks[0]
    mat = lambda m: _GRADS.track(materialize(m, device, dtype, spec.seed))
    an, at = mat(blk.attn_norm), mat(blk.attn)
    prof("attn", lambda x: at(an(x)))
    if dense is not None:
        fn_, ff = mat(dense.ffn_norm), mat(dense.ffn)
        prof("mlp_dense", lambda x: ff(fn_(x)))
    if moe is not None:
        out["expert"] = _profile_experts(cfg, spec, moe, mat, T, dtype, device, reps, sync, wait, bwd_start)
        if spec.ep > 1:
            out["codec"] = _profile_codec(cfg, spec, T, dtype, device, reps, sync, wait)
        _profile_shared_and_gate(cfg, spec, moe, mat, prof, T, dtype, device)
    head = mat(parts.head)
    labels = torch.randint(0, cfg.vocab_size, (B, S), device=device)
    around = {"head": lambda x: F.cross_entropy(head(x).float().flatten(0, 1), labels.flatten())}
    prof("head", around["head"])
    emb = mat(parts.embed)
    tok = torch.randint(0, cfg.vocab_size, (B, S), device=device)
    # the lookup alone, as the run's embed(F) span has it: its output needs no path from the sample's input (the
    # backward reaches the table's weight), and an added ``0 * x`` costs two element-wise passes over the
    # activations, more than the lookup itself at the run's widths
    around["embed"] = lambda _x: emb(tok)
    prof("embed", around["embed"])
    if dense is not None or (moe is not None and device.type == "cpu"):
        out["glue"] = glue(cfg, spec, parts, mat, hid, reps, sync, out, bwd_start, _WIN, _GRADS, ep, around,
                           grad_sync)
    dense_p, expert_p = rank_params(parts, cfg, spec, rank)
    out["optim"] = _optim(dense_p + expert_p, device, dtype, sync, reps, wait_s=WAIT_S if spec.world_size > 1 else 0,
                          meet=meet)
    if spec.fp8_compute:  # the FP8 weight copies re-quantised after each optimizer step (requant.py)
        out["requant"] = profile_requant(rank_fp8_operands(parts, cfg, spec, rank), device, dtype,
                                         lambda fn: _WIN.samples(fn, sync, ded, reps), reps)
    out["window"] = _WIN.summary()
    return out


def _profile_experts(cfg, spec, moe, mat, T: int, dtype, device, reps: int, sync, wait: float,
                     bwd_start: float) -> dict:
    """This rank's routed experts exactly as the run's ``mlp(F)`` span calls them (``ep.EPMoE.forward``: gather
    the received rows pair by pair in local-expert order, the expert module, scatter back, weighted sum per
    received row) at three rows-per-expert points around balanced routing. Fit (least squares, forward and
    backward) t = c + e * experts + b * pairs: c is the per-call cost (launches, autograd nodes), e the per-expert
    cost (a grouped GEMM reads every expert's weights and, backward, writes every expert's weight gradient even
    at few rows), b the per-row cost. Above MAX_PROFILED_EXPERTS, slices of that many and of a quarter of it are
    timed and the fit gives the Er experts the rank holds (per-call cost counted once, not Er / n times)."""
    import numpy as np

    K, E, D = cfg.num_experts_per_tok, cfg.n_routed_experts, cfg.hidden_size
    Er = E // spec.ep
    n_prof = min(Er, _experts_that_fit(cfg, dtype, device))
    mean_rows = max(T * K // E, 1)  # rows per expert with balanced routing
    per_row = max(K * Er / E, 1.0)  # pairs per received row: the scatter's output rows
    runs = [(n_prof, r) for r in sorted({mean_rows // 4 or 1, mean_rows, 4 * mean_rows})]
    if Er > n_prof:
        runs.append((max(n_prof // 4, 1), mean_rows))
    pts, rel_f, rel_b = [], [], []
    for n, r in runs:
        exs = mat(moe.expert_slice(0, n))
        pairs = n * r
        rows = max(int(pairs / per_row), 1)
        g = torch.Generator().manual_seed(n * 7919 + r)
        prow = torch.randint(0, rows, (pairs,), generator=g).to(device)
        le = torch.arange(n).repeat_interleave(r).to(device)
        order2 = torch.argsort(le[torch.randperm(pairs, generator=g).to(device)], stable=True)
        w = torch.rand(pairs, 1, generator=g).to(device)

        def fn(x, exs=exs, prow=prow, order2=order2, w=w, n=n, r=r):
            y_sorted = exs(x[prow[order2]], [r] * n)
            y_pair = torch.empty_like(y_sorted).index_copy(0, order2, y_sorted)
            return torch.zeros(x.shape[0], D, dtype=y_pair.dtype, device=x.device).index_add(
                0, prow, y_pair * w.to(y_pair.dtype))
        s = _summary(*_samples(fn, lambda rows=rows: torch.randn(rows, D, dtype=dtype, device=device), reps, sync,
                               wait), bwd_start, device.type == "cpu")
        pts.append((n, pairs, s["F"], s["B"]))
        mf, mb = statistics.median(s["F_s"]), statistics.median(s["B_s"])
        rel_f += [x / mf for x in s["F_s"]] if mf else []
        rel_b += [x / mb for x in s["B_s"]] if mb else []
        del exs
    out = {"F_rel": rel_f, "B_rel": rel_b, "points": [list(p) for p in pts], "local_experts": Er,
           "profiled_experts": n_prof}
    for j, d in ((2, "fwd"), (3, "bwd")):
        y = np.array([p[j] for p in pts])
        if Er > n_prof:  # c + e * n + b * pairs
            A = np.array([[1.0, p[0], p[1]] for p in pts])
            c, e, b = np.linalg.lstsq(A, y, rcond=None)[0]
            c, e, b = max(c, 0.0), max(e, 0.0), max(b, 0.0)
            out[d] = {"a_s": float(c + e * Er), "b_s_per_row": float(b), "per_call_s": float(c),
                      "per_expert_s": float(e)}
        else:
            f = fit([p[1] for p in pts], list(y))
            out[d] = {"a_s": f.alpha_s, "b_s_per_row": 1.0 / f.beta_Bps}
    return out


def _profile_codec(cfg, spec, T: int, dtype, device, reps: int, sync, wait: float) -> dict:
    """The payload encoding the run's all-to-all spans hold beside the transfer (``ep.encode`` of the rows sent
    and ``ep.decode`` of the rows received: FP8 1x128-tile quantisation, BF16 cast, or a plain view), per wire
    format the run uses, at three row counts, fitted to t = a + b * rows (CPU seconds on CPU)."""
    from dsv3sim.validate.ep import decode, encode

    D = cfg.hidden_size
    wires = {"fp8", "bf16"} if spec.fp8 else {"native"}
    out = {}
    for wire in sorted(wires):
        pts = []
        for rows in sorted({max(T // 4, 1), T, 4 * T}):
            x = torch.randn(rows, D, dtype=dtype, device=device)
            ts = _WIN.samples(lambda x=x, w=wire: decode(encode(x, w), w, D, dtype), sync, device.type == "cpu", reps,
                              wait)
            pts.append((rows, statistics.median(ts)))
        f = fit([p[0] for p in pts], [p[1] for p in pts])
        out[wire] = [f.alpha_s, 1.0 / f.beta_Bps]
    return out


def _experts_that_fit(cfg, dtype, device) -> int:
    """How many experts to profile at once: MAX_PROFILED_EXPERTS on CPU; on a GPU as many as a quarter of the
    free memory holds (weights, their gradients and the rows: ~2.5x the weights), at least MAX_PROFILED_EXPERTS.
    A grouped GEMM's per-expert cost falls as more experts fill the GPU (at few rows the backward streams every
    expert's weights and weight gradients: memory-bound once enough experts are in flight), so the fit is taken
    as close to the rank's expert count as memory allows."""
    if device.type != "cuda":
        return MAX_PROFILED_EXPERTS
    free, _ = torch.cuda.mem_get_info(device)
    per = 3 * cfg.hidden_size * cfg.moe_intermediate_size * torch.finfo(dtype).bits // 8 * 2.5
    n = int(0.25 * free / per)
    return max(MAX_PROFILED_EXPERTS, 1 << max(n, 1).bit_length() - 1)  # a power of two


def _profile_shared_and_gate(cfg, spec, moe, mat, prof, T: int, dtype, device) -> None:
    """The shared expert (when the model has one) and the gate as the run's ``gate(F)`` spans hold it: the
    MoE norm, the model's routing and the (token, rank) row / pair bookkeeping (``ep.EPMoE._rows_and_pairs``), and
    the final sum of the returned rows into their tokens; profiled through ``prof`` ("shared", "gate")."""
    from dsv3sim.validate.ep import EPMoE
    from dsv3sim.validate.timeline import Timeline

    E, D = cfg.n_routed_experts, cfg.hidden_size
    fn_ = mat(moe.ffn_norm)
    if moe.shared is not None:
        sh = mat(moe.shared)
        prof("shared", lambda x: sh(x.view(T, D)))
    gw = _GRADS.track(torch.nn.Parameter(torch.randn(moe.gate_weight.shape, device=device, dtype=dtype) * 0.02))
    gb = moe.gate_bias.to(device) if moe.gate_bias is not None else None
    m = EPMoE(cfg=cfg, layer=0, gate_weight=gw, gate_bias=gb, experts=torch.nn.Identity(), n_local=E // spec.ep,
              shared=None, group=None, ep_rank=0, ep_size=spec.ep, node_size=spec.node_size, fp8=False,
              tl=Timeline(device))

    def gate_work(x: torch.Tensor) -> torch.Tensor:
        x2 = fn_(x).view(T, D)
        rp = m._rows_and_pairs(x2)
        out = torch.zeros_like(x2).index_add(0, rp.row_tok, x2[rp.row_tok])
        return out + (rp.pair_w.sum() * 0).to(out.dtype)  # the gate weights' backward, as in the run
    prof("gate", gate_work)


def rank_params(parts, cfg, spec, rank: int) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(dense, expert) parameters ``train.py`` gives this rank: its stages' blocks, embed/head; its experts."""
    mods, ps, ex = _rank_modules(parts, cfg, spec, rank)
    ps += [p for m in mods for p in m.parameters()]
    return list({id(p): p for p in ps}.values()), [p for m in ex for p in m.parameters()]


def rank_fp8_operands(parts, cfg, spec, rank: int) -> list[tuple[tuple[int, ...], ...]]:
    """The FP8 weight operands this rank re-quantises after each optimizer step (``requant.fp8_operands``)."""
    mods, _, ex = _rank_modules(parts, cfg, spec, rank)
    er = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
    return fp8_operands(mods, [(er, cfg.moe_intermediate_size, cfg.hidden_size)] * len(ex))


def _rank_modules(parts, cfg, spec, rank: int) -> tuple[list, list, list]:
    """(dense modules, gate weights, expert slices) of this rank."""
    me = coord(rank, spec.ep, spec.pp)
    pl = plan(spec.schedule, spec.pp, spec.n_microbatches)
    stages = set(pl.stages_of(me.pp))
    layers = stage_layers(cfg.num_hidden_layers, pl.n_stages)
    Er = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
    mods: list[torch.nn.Module] = []
    ps: list[torch.nn.Parameter] = []
    ex: list[torch.nn.Module] = []
    for s in sorted(stages):
        for i in layers[s]:
            b = parts.blocks[i]
            mods += [b.attn_norm, b.attn, b.ffn_norm] + ([b.ffn] if b.ffn is not None else [])
            if b.is_moe:
                ex.append(b.expert_slice(me.ep * Er, (me.ep + 1) * Er))
                mods += [b.shared] if b.shared is not None else []
                ps.append(b.gate_weight)
    if 0 in stages:
        mods.append(parts.embed)
    if pl.n_stages - 1 in stages:
        mods.append(parts.head)
    return mods, ps, ex


def _optim(params: list[torch.nn.Parameter], device, dtype, sync, reps: int, max_elems: int = 1 << 26,
           wait_s: float = 0.0, meet=None) -> dict:
    """AdamW step (fused on CUDA, as train.py), gradients dropped after it (``zero_grad(set_to_none=True)``, as the
    run). The rank's tensors up to LARGE elements are stepped as they are (up to ``max_elems`` in all, the time
    scaled by their count beyond that); the larger ones (a V3 expert stack is 3.8 G elements) as one flat tensor
    of n1 and of n1 / 4 elements: AdamW is element-wise, so t = c + b * n for them and their time is
    c + b * (their elements), the per-launch cost c counted once. With ``meet`` (a barrier of every rank) each
    sample of the rank's own tensors starts as every rank's does, in place of the ``wait_s`` sleep: in the run the
    ranks step their optimizers together after the gradient all-reduce or their last backward, and ranks that
    stream their optimizer state at once share the last-level cache and the memory bandwidth (in process, the
    whole of `tiny` on the 2-core box: 4.4-4.7 ms a step alone, 5.0-5.1 ms with a second process stepping)."""
    total = sum(p.numel() for p in params)
    small = [p for p in params if p.numel() <= LARGE]
    n_large = total - sum(p.numel() for p in small)
    take, n = [], 0
    for p in small:
        if n + p.numel() <= max_elems:
            take.append(p)
            n += p.numel()
    scale = sum(p.numel() for p in small) / n if n else 0.0

    def time_step(shapes: list, meet=None) -> list[float]:
        ps = [torch.nn.Parameter(torch.randn(sh, dtype=dtype, device=device)) for sh in shapes]
        gs = [torch.randn_like(p) for p in ps]
        opt = torch.optim.AdamW(ps, lr=1e-4, fused=device.type == "cuda")

        def before(ps=ps, gs=gs) -> None:
            for p, g in zip(ps, gs):
                p.grad = g
            if meet is not None:
                meet()
        ts = _WIN.samples(lambda o=opt: (o.step(), o.zero_grad(set_to_none=True)), sync, device.type == "cpu", reps,
                          0.0 if meet is not None else wait_s, before=before)
        del opt, ps, gs
        return ts

    if take:
        ts = [t * scale for t in time_step([p.shape for p in take], meet)]
    else:  # every rank meets as often
        for _ in range(reps + 1 if meet is not None else 0):
            meet()
        ts = [0.0] * reps
    large = {}
    if n_large:
        n1 = min(n_large, max_elems * 4)
        n2 = max(n1 // 4, 1)
        t1, t2 = statistics.median(time_step([(n1,)])), statistics.median(time_step([(n2,)]))
        c, b = line_through(n1, t1, n2, t2)
        large = {"elements": n_large, "per_call_s": c, "per_element_s": b}
        ts = [t + c + b * n_large for t in ts]
    return {"F": statistics.median(ts), "B": 0.0, "F_s": ts, "B_s": [0.0], "n_tensors": len(params),
            "n_params": total, "scaled_from_params": n, "large": large}
