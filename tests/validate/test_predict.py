"""The predictor's replay against closed forms (no jitter: every profiled sample equals its mean)."""

from __future__ import annotations

import pytest

from dsv3sim.validate.predict import Costs, predict
from dsv3sim.validate.schedule import plan
from dsv3sim.validate.spec import RunSpec

MS = 1e-3


def _comp(F, B):
    return {"F": F, "B": B, "F_s": [F, F], "B_s": [B, B]}


def _calib(rank, *, attn=(1, 2), mlp=(1, 2), a2a_alpha=0.0, grad_sync=0.0, experts=None):
    comps = {"attn": _comp(attn[0] * MS, attn[1] * MS), "mlp_dense": _comp(mlp[0] * MS, mlp[1] * MS),
             "embed": _comp(0, 0), "head": _comp(0, 0), "optim": _comp(0, 0), "grad_sync": _comp(grad_sync, 0),
             "gate": _comp(0, 0), "shared": _comp(0, 0)}
    if experts:
        comps["expert"] = {"fwd": {"a_s": 0.0, "b_s_per_row": experts[0]}, "bwd": {"a_s": 0.0,
                           "b_s_per_row": experts[1]}, "F_rel": [1.0], "B_rel": [1.0]}
    n = [1, 1 << 20]
    pts = {"p2p": [(x, 1e-15 * x) for x in n], "all_to_all": [(x, a2a_alpha + 1e-15 * x) for x in n],
           "all_reduce": [(x, 1e-15 * x) for x in n]}
    return {"rank": rank, "probes": [{"points": pts, "rel": {}, "components": comps}]}


def _meas(spec, rank, routing=None, layers=4):
    pl = plan(spec.schedule, spec.pp, spec.n_microbatches)
    from dsv3sim.validate.layout import coord, stage_layers
    me = coord(rank, spec.ep, spec.pp)
    st = stage_layers(layers, pl.n_stages)
    return {"rank": rank, "actions": pl.actions[me.pp], "stages": {str(s): list(st[s]) for s in pl.stages_of(me.pp)},
            "routing": routing or {}, "microbatches": spec.n_microbatches, "tokens_per_mb": 8, "hidden": 16,
            "elt_bytes": 4, "replica_size": spec.ep * spec.dp, "dp_size": spec.dp, "n_params": 0, "n_tensors": 0}


def test_1f1b_bubble_closed_form():
    """P stages of equal F, B and free p2p: 1F1B step = (M + P - 1) (F + B) (Narayanan et al. 2021 §2.2)."""
    spec = RunSpec(job="train", nproc=2, ep=1, pp=2, dp=1, microbatches=4)
    meas = [_meas(spec, r) for r in range(2)]
    calib = [_calib(r) for r in range(2)]
    p = predict(spec, meas, calib, samples=2)
    F, B = 2 * (1 + 1) * MS, 2 * (2 + 2) * MS  # two dense layers per stage
    assert p["predicted_step_s"] == pytest.approx((4 + 2 - 1) * (F + B), rel=1e-9)
    assert p["predicted_step_s_no_jitter"] == pytest.approx(p["predicted_step_s"], rel=1e-12)


def test_ep_lockstep_waits_for_the_slowest_rank():
    """EP=2, one MoE layer: rank 1's experts take longer; both ranks leave the combine together, and rank 0's
    combine time is its wait plus the all-to-all latency."""
    spec = RunSpec(job="train", nproc=2, ep=2, pp=1, dp=1)
    rt = {r: {"1": [{"step": 0, "mb": 0, "send_rows": [4, 4], "expert_rows": [8 * (r + 1)], "tokens": 8}]}
          for r in range(2)}
    meas = [_meas(spec, r, rt[r], layers=2) for r in range(2)]
    alpha = 0.5 * MS
    calib = [_calib(r, a2a_alpha=alpha, experts=(0.1 * MS, 0.2 * MS)) for r in range(2)]
    p = predict(spec, meas, calib, samples=1)
    ev = p["events_last_step"]
    comb0 = next(e for e in ev[0] if e["name"] == "combine(F)")
    comb1 = next(e for e in ev[1] if e["name"] == "combine(F)")
    assert comb0["t1"] == pytest.approx(comb1["t1"])
    # experts: rank 0 0.8 ms, rank 1 1.6 ms -> rank 0 waits 0.8 ms + alpha
    assert comb0["t1"] - comb0["t0"] == pytest.approx(0.8 * MS + alpha, rel=1e-6)
    assert comb1["t1"] - comb1["t0"] == pytest.approx(alpha, rel=1e-6)
    # the step: F (attn 1 + dense mlp 1 + layout 2 alpha + dispatch + experts 1.6 + combine) + B ...; both equal
    assert p["predicted_step_s"] == pytest.approx(max(ev[0][-1]["t1"], ev[1][-1]["t1"]))


def test_costs_pool_probes():
    c = _calib(0)
    c["probes"].append({"points": {}, "rel": {}, "components": {"attn": _comp(3 * MS, 4 * MS)}})
    costs = Costs([c], 0)
    assert costs.fb("attn", 0) == pytest.approx(2 * MS)  # mean of samples [1, 1, 3, 3] ms
    assert costs.fit["p2p"].alpha_s == pytest.approx(0.0, abs=1e-12)
