"""Kernel times profiled on this machine: forward and backward of each model component, standalone.

Run in the calibration phase (same processes as the validation run, so the same cores and contention), on
synthetic inputs at the run's shapes, with the modules the run executes (``nn_adapter.build``); no communication.
These times, the calibrated transport and the run's routing are all the prediction uses (``component_table.py``).

Per component: the forward and backward samples (``F_s``/``B_s``; routed experts: the fit and the samples'
spread ``F_rel``/``B_rel``), which the predictor pools over probes and resamples: on a shared CPU the ranks
are preempted at random, and each EP all-to-all waits for the slowest rank, so the expected step is E[max] of
noisy segments, not the sum of means. Backward times exclude the autograd engine's per-call start-up
(measured on an identity graph), which a real backward pays once per microbatch, not once per component.

Components: attention block (norm + MLA) at [B, S, D]; dense FFN; this rank's routed-expert module (its
E/ep experts, the same call as the run) at several balanced row counts (fit t = a + b * total rows, forward
and backward; a holds the per-expert overheads); shared experts; the gate's routing and permutation work; head +
loss; embedding; AdamW step over exactly the parameter shapes this rank holds.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from dsv3sim.validate.alpha_beta import fit
from dsv3sim.validate.ep import route
from dsv3sim.validate.layout import coord, stage_layers
from dsv3sim.validate.nn_adapter import build
from dsv3sim.validate.parts import materialize
from dsv3sim.validate.schedule import plan

REPS = 8
# On a CPU shared with other processes the scheduler (Linux CFS) runs a task that just woke from a blocking
# wait ahead of the CPU-bound ones for a few ms; a task that computes back to back gets its fair share only.
# Measured here: an MLA forward of `tiny` takes 11 ms back to back but 5 ms after a 3 ms sleep at load ~13.
# With EP every component runs between blocking all-to-alls, so it is profiled after such a wait; without EP
# a stage computes for long stretches and is profiled back to back. The optimizer always follows a wait.
WAIT_S = 3e-3
MAX_PROFILED_EXPERTS = 16  # GPU memory: a V3-width expert is 88 MB of BF16 weights (+ grads)


def _samples(fn, make_input, reps: int, sync, wait_s: float = 0.0) -> tuple[list[float], list[float]]:
    fs, bs = [], []
    for i in range(reps + 1):
        x = make_input().requires_grad_()
        if wait_s:
            time.sleep(wait_s)  # block like a rank waiting in an all-to-all (see WAIT_S)
        sync()
        t0 = time.perf_counter()
        y = fn(x)
        sync()
        t1 = time.perf_counter()
        y.backward(torch.ones_like(y))
        sync()
        t2 = time.perf_counter()
        if i:  # first is warm-up
            fs.append(t1 - t0)
            bs.append(t2 - t1)
    return fs, bs


def _summary(fs: list[float], bs: list[float], bwd_start: float) -> dict:
    bs = [max(b - bwd_start, 0.0) for b in bs]
    return {"F": statistics.fmean(fs), "B": statistics.fmean(bs), "F_s": fs, "B_s": bs}


def profile_components(cfg, spec, device: torch.device, sync, rank: int = 0, *, parts=None,
                       reps: int = REPS) -> dict:
    parts = parts if parts is not None else build(cfg, spec.seed, fp8=spec.fp8_compute)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    B, S, D = spec.micro_batch, spec.seq_len, cfg.hidden_size
    T = B * S
    hid = lambda: torch.randn(B, S, D, dtype=dtype, device=device)
    wait = WAIT_S if spec.ep > 1 else 0.0
    _, b0 = _samples(lambda x: x * 1.0, hid, reps, sync, wait)
    bwd_start = statistics.fmean(b0)
    out: dict = {"tokens_per_microbatch": T, "bwd_call_overhead_s": bwd_start, "wait_before_sample_s": wait}

    def prof(name, fn, make=hid):
        out[name] = _summary(*_samples(fn, make, reps, sync, wait), bwd_start)

    dense = next((b for b in parts.blocks if b.ffn is not None), None)
    moe = next((b for b in parts.blocks if b.is_moe), None)
    blk = parts.blocks[0]
    mat = lambda m: materialize(m, device, dtype, spec.seed)
    an, at = mat(blk.attn_norm), mat(blk.attn)
    prof("attn", lambda x: at(an(x)))
    if dense is not None:
        fn_, ff = mat(dense.ffn_norm), mat(dense.ffn)
        prof("mlp_dense", lambda x: ff(fn_(x)))
    if moe is not None:
        out["expert"] = _profile_experts(cfg, spec, moe, mat, T, dtype, device, reps, sync, wait, bwd_start)
        _profile_shared_and_gate(cfg, spec, moe, mat, prof, T, dtype, device)
    head = mat(parts.head)
    labels = torch.randint(0, cfg.vocab_size, (B, S), device=device)
    prof("head", lambda x: F.cross_entropy(head(x).float().flatten(0, 1), labels.flatten()))
    emb = mat(parts.embed)
    tok = torch.randint(0, cfg.vocab_size, (B, S), device=device)
    prof("embed", lambda _x: emb(tok) + 0 * _x)
    if dense is not None:
        out["glue"] = _glue(cfg, spec, parts, mat, hid, reps, sync, wait, out, bwd_start)
    dense_p, expert_p = rank_params(parts, cfg, spec, rank)
    out["optim"] = _optim(dense_p + expert_p, device, dtype, sync, reps, wait_s=WAIT_S if spec.world_size > 1 else 0)
    return out


def _profile_experts(cfg, spec, moe, mat, T: int, dtype, device, reps: int, sync, wait: float,
                     bwd_start: float) -> dict:
    """This rank's expert module exactly as the run calls it, at three rows-per-expert points around balanced
    routing, fitted to a + b * rows (forward and backward); above MAX_PROFILED_EXPERTS a slice of that many is
    timed and scaled by Er / n (a grouped GEMM's time is a sum over its experts at equal rows)."""
    K, E, D = cfg.num_experts_per_tok, cfg.n_routed_experts, cfg.hidden_size
    Er = E // spec.ep
    n_prof = min(Er, MAX_PROFILED_EXPERTS)
    exs = mat(moe.expert_slice(0, n_prof))
    scale = Er / n_prof
    mean_rows = max(T * K // E, 1)  # rows per expert with balanced routing
    per = sorted({mean_rows // 4 or 1, mean_rows, 4 * mean_rows})
    pts, rel_f, rel_b = [], [], []
    for r in per:
        s = _summary(*_samples(lambda x, r=r: exs(x, [r] * n_prof),
                               lambda r=r: torch.randn(r * n_prof, D, dtype=dtype, device=device), reps, sync,
                               wait),
                     bwd_start)
        s["F"], s["B"] = s["F"] * scale, s["B"] * scale
        s["F_s"], s["B_s"] = [x * scale for x in s["F_s"]], [x * scale for x in s["B_s"]]
        pts.append((r * Er, s["F"], s["B"]))
        rel_f += [x / s["F"] for x in s["F_s"]] if s["F"] else []
        rel_b += [x / s["B"] for x in s["B_s"]] if s["B"] else []
    fF, fB = fit([p[0] for p in pts], [p[1] for p in pts]), fit([p[0] for p in pts], [p[2] for p in pts])
    return {"fwd": {"a_s": fF.alpha_s, "b_s_per_row": 1.0 / fF.beta_Bps},
            "bwd": {"a_s": fB.alpha_s, "b_s_per_row": 1.0 / fB.beta_Bps},
            "F_rel": rel_f, "B_rel": rel_b, "points": pts, "local_experts": Er}


def _profile_shared_and_gate(cfg, spec, moe, mat, prof, T: int, dtype, device) -> None:
    """The shared expert (when the model has one) and the gate with the run's token permutation around it,
    profiled through ``prof`` (which records them under "shared" and "gate")."""
    K, E, D = cfg.num_experts_per_tok, cfg.n_routed_experts, cfg.hidden_size
    fn_ = mat(moe.ffn_norm)
    if moe.shared is not None:
        sh = mat(moe.shared)
        prof("shared", lambda x: sh(x.view(T, D)))
    gw = torch.nn.Parameter(torch.randn(moe.gate_weight.shape, device=device, dtype=dtype) * 0.02)
    gb = moe.gate_bias.to(device) if moe.gate_bias is not None else None

    def gate_work(x: torch.Tensor) -> torch.Tensor:
        x2 = fn_(x).view(T, D)
        idx, w = route(x2, gw, gb, cfg, n_nodes=1, m_nodes=1)
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        tok = torch.div(order, K, rounding_mode="floor")
        torch.bincount(flat[order] // max(E // spec.ep, 1), minlength=spec.ep).tolist()
        y = x2[tok]
        return torch.zeros_like(x2).index_add(0, tok, y * w.reshape(-1)[order].unsqueeze(1))
    prof("gate", gate_work)


def _glue(cfg, spec, parts, mat, hid, reps: int, sync, wait: float, comps: dict, bwd_start: float) -> dict:
    """Framework time per layer and pass: the model's dense layers run through the run's own stage code
    (``train.Stage``: residual adds, timeline marks and spans, the autograd graph between components), forward
    and backward, minus their components profiled alone (attention block, dense FFN). What is left is what a
    step pays between the kernels the components time; it is charged to every layer (MoE layers add their own
    Python around the all-to-alls, which this does not see, so it is a lower bound there)."""
    from dsv3sim.validate.timeline import Timeline
    from dsv3sim.validate.train import Stage

    layers = [b.layer for b in parts.blocks if b.ffn is not None]
    tl = Timeline(hid().device)
    tl.step = 0
    st = mat(Stage(s=1, n_stages=3, parts=parts, layers=layers, moe={}, tl=tl))  # neither first nor last stage
    s = _summary(*_samples(lambda x: st(x, None), hid, reps, sync, wait), bwd_start)
    n = len(layers)
    per = {d: max((s[d] - n * (comps["attn"][d] + comps["mlp_dense"][d])) / n, 0.0) for d in ("F", "B")}
    return {"F": per["F"], "B": per["B"], "F_s": [per["F"]], "B_s": [per["B"]], "stage_F": s["F"],
            "stage_B": s["B"], "layers": layers}


def rank_params(parts, cfg, spec, rank: int) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(dense, expert) parameters ``train.py`` gives this rank: its stages' blocks, embed/head; its experts."""
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
    ps += [p for m in mods for p in m.parameters()]
    return list({id(p): p for p in ps}.values()), [p for m in ex for p in m.parameters()]


def _optim(params: list[torch.nn.Parameter], device, dtype, sync, reps: int, max_elems: int = 1 << 26,
           wait_s: float = 0.0) -> dict:
    """AdamW step (fused on CUDA, as train.py) over this rank's parameter shapes. Above ``max_elems`` elements
    only the tensors that fit in that budget are stepped (one flat tensor of the budget if none fits) and the
    time scaled by total / stepped elements (AdamW is element-wise: linear in elements for large tensors)."""
    total = sum(p.numel() for p in params)
    take, n = [], 0
    for p in params:
        if n + p.numel() <= max_elems:
            take.append(p)
            n += p.numel()
    if not take:
        take, n = [torch.empty(max_elems, device="meta")], max_elems
    scale = total / n if n else 1.0
    ps = [torch.nn.Parameter(torch.randn(p.shape, dtype=dtype, device=device)) for p in take]
    for p in ps:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(ps, lr=1e-4, fused=device.type == "cuda")
    ts = []
    for i in range(reps + 1):
        if wait_s:
            time.sleep(wait_s)
        sync()
        t0 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=False)
        sync()
        if i:
            ts.append((time.perf_counter() - t0) * scale)
    del opt, ps
    return {"F": statistics.fmean(ts), "B": 0.0, "F_s": ts, "B_s": [0.0], "n_tensors": len(params),
            "n_params": total, "scaled_from_params": n}
