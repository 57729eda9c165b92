"""What a simulated training step reports beyond its time: the per-action breakdown on PP rank 0, the timeline
events, the all-to-all bytes each MoE layer puts on the NIC and NVLink and their utilisation over the step, the
constants' sources, and the non-causal MFU count (ISCA'25 Table 4). ``training.training_result`` assembles them.
``sp``, ``ep`` and ``chunks`` are ``training``'s StepPlan, EpTimes and ChunkTimes (not imported: ``training`` imports
this module)."""

from __future__ import annotations

import numpy as np

from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.flops import causal_mean_context, forward_flops_per_token, train_flops_per_token
from dsv3sim.parallel import ExecResult, Schedule
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload import optimizer_step as OS
from dsv3sim.workload.layer_ops import training_layer


def _moe_layers_per_stage(sp) -> dict[int, int]:
    cfg = sp.cfg
    return {s: sum(1 for i in sp.layers_of[s] if cfg.is_moe and cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1)))
            for s in range(sp.scn.parallel.pp)}


def a2a_bytes_per_layer(sp, ep) -> dict[str, dict[str, float]]:
    """Per-GPU NIC / NVLink bytes of one MoE layer's all-to-all, forward and backward: routing 0's simulated
    bytes, scaled for the other routings by their (exact) link bytes."""
    p, H = sp.scn.parallel, sp.cfg.hidden_size
    per_class = {"nic": {"F": 0.0, "B": 0.0}, "nvlink": {"F": 0.0, "B": 0.0}}
    mix: dict[tuple[str, str], float] = {}
    lr = ep.lr
    if lr and len(lr) > 1:
        lb = LR.link_bytes(sp.topo, lr, ep.lspecs, H)
        wts = LR.weights(lr)
        mix = {(n, c): sum(w_ * lb[r][n].get(c, 0.0) for r, w_ in enumerate(wts)) / lb[0][n][c]
               for n in lb[0] for c in ("nic_tx", "nvlink_rx") if lb[0][n].get(c)}
    for name, r in ep.comm_res.items():
        d = "F" if name.endswith("(F)") else "B"
        f_nic, f_nvl = mix.get((name, "nic_tx"), 1.0), mix.get((name, "nvlink_rx"), 1.0)
        per_class["nic"][d] += f_nic * r["bytes_by_class"].get("nic_tx", 0.0) / p.ep
        per_class["nvlink"][d] += f_nvl * r["bytes_by_class"].get("nvlink_rx", 0.0) / p.ep
    return per_class


def _moe_passes(sched: Schedule, moe_layers: dict[int, int]) -> tuple[dict[int, int], dict[int, int]]:
    """(forward, backward) MoE-layer passes per PP rank over the step."""
    n_f = dict.fromkeys(range(sched.pp), 0)
    n_b = dict.fromkeys(range(sched.pp), 0)
    for r, acts_ in sched.actions.items():
        for a in acts_:
            for o in a.ops:
                st = sched.stage_of(r, o.chunk)
                if o.kind == "F":
                    n_f[r] += moe_layers[st]
                elif o.kind in ("B", "BW"):
                    n_b[r] += moe_layers[st]
    return n_f, n_b


def breakdown(ex: ExecResult, end: OS.RankEnd, pipe_end: float, r0: int) -> dict[str, float]:
    cats: dict[str, float] = {}
    for s in ex.spans[r0]:
        cats[s.category] = cats.get(s.category, 0.0) + (s.end - s.start)
    return {"forward_s": cats.get("F", 0.0), "backward_input_s": cats.get("B", 0.0),
            "weight_grad_s": cats.get("W", 0.0), "backward_full_s": cats.get("BW", 0.0),
            "overlapped_forward_backward_s": cats.get("F&B", 0.0), "bubble_s": ex.bubble[r0],
            "dp_comm_exposed_s": pipe_end - ex.makespan + end.ag_exposed_s, "optimizer_s": end.optimizer_s}


def events(sp, chunks, ex: ExecResult, r0: int, pipe_end: float, optimizer_s: float,
            step: float) -> list[dict]:
    """Timeline: pipeline spans of every PP rank, the slices of rank ``r0``, its optimizer and its exposed DP
    communication (the reduce-scatter still running after the drain, the ZeRO-1 all-gather after the optimizer)."""
    events = []
    for r, spans in ex.spans.items():
        for s in spans:
            events.append({"rank": r, "stream": "pipeline", "name": s.category, "action": s.action,
                           "start_s": s.start, "end_s": s.end})
    for a, s in zip(sp.sched.actions[r0], ex.spans[r0]):
        for sl in chunks(r0, a).slices:
            events.append({"rank": r0, "stream": sl.stream, "name": sl.name, "start_s": s.start + sl.start,
                           "end_s": s.start + sl.end, "layer": sl.layer, "action": s.action})
    events.append({"rank": r0, "stream": "compute", "name": "optimizer", "start_s": pipe_end,
                   "end_s": pipe_end + optimizer_s})
    for what, t0_, t1_ in (("reduce-scatter", ex.makespan, pipe_end), ("all-gather", pipe_end + optimizer_s, step)):
        if t1_ > t0_:
            events.append({"rank": r0, "stream": "comm", "name": "dp_comm(exposed)", "collective": what,
                           "start_s": t0_, "end_s": t1_})
    return events


def sources(sp, ep, chunks) -> list[str]:
    cfg, w = sp.cfg, sp.scn.workload
    last = training_layer(cfg, cfg.num_hidden_layers - 1, gpu=sp.gpu, tokens=sp.tokens, seq_len=w.seq_len,
                          expert_rows=ep.rows, local_experts=ep.local_experts(sp.scn.parallel.ep),
                          gemm_dtype=w.gemm_dtype, sm_fraction=sp.sm_fraction)
    topo = sp.topo.cfg
    return sorted(set(chunks.heads.sources) | set(last.sources)) + [
        f"GPU {sp.gpu}: {sp.perf.source}", f"topology {topo.name}: " + "; ".join(topo.sources)]


def link_utilisation(sp, ep, ex: ExecResult, step: float, r0: int) -> tuple[dict, dict]:
    """(average IB / NVLink utilisation of rank ``r0`` over the step, the per-bin series of it)."""
    topo, sched = sp.topo, sp.sched
    moe_layers = _moe_layers_per_stage(sp)
    per_class = a2a_bytes_per_layer(sp, ep)
    n_f, n_b = _moe_passes(sched, moe_layers)
    nic_cap = topo.cfg.nic.effective_bandwidth if topo.cfg.nic else float("inf")
    nvl_cap = topo.cfg.scale_up.effective_bandwidth
    ib_bytes = n_f[r0] * per_class["nic"]["F"] + n_b[r0] * per_class["nic"]["B"]
    nvl_bytes = n_f[r0] * per_class["nvlink"]["F"] + n_b[r0] * per_class["nvlink"]["B"]
    util = {"ib": ib_bytes / (step * nic_cap), "nvlink": nvl_bytes / (step * nvl_cap)}
    series_t, ib_u, nvl_u = _link_series(sched, ex, r0, per_class, moe_layers, nic_cap, nvl_cap, step)
    return util, {"t_s": series_t, "by_class": {"ib": ib_u, "nvlink": nvl_u},
                  "by_node": {"0": {"ib": ib_u, "nvlink": nvl_u}}, "average": util}


def noncausal_train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token counting the full S x S attention (DeepSeek's "non-causal" TFLOPS, ISCA'25 Table 4):
    the causal count with the attention core at context S instead of (S+1)/2."""
    core = forward_flops_per_token(cfg, seq_len).by_component.get("attention_core", 0.0)
    return train_flops_per_token(cfg, seq_len) + 3.0 * core * (seq_len / causal_mean_context(seq_len) - 1.0)


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
