"""The calibration's in-stage context factor and the gradient pattern of the component profile."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.config import load_model_config
from dsv3sim.parallel.linear import one_f_one_b
from dsv3sim.validate.component_table import _apply_context, _context
from dsv3sim.validate.components import _Grads
from dsv3sim.workload.measured_step import _after, _embed


def _probe(k_f: float, k_b: float, *, ep_glue: bool = True, dedicated: bool = True) -> dict:
    """A CPU probe whose glue stage (4 layers: 1 dense, 3 MoE) ran its compute k times the standalone sum."""
    attn, dense, shared, gate = (2e-3, 3e-3), (1e-3, 2e-3), (3e-4, 4e-4), 1e-3
    ex = {"fwd": {"a_s": 5e-4, "b_s_per_row": 1e-6}, "bwd": {"a_s": 6e-4, "b_s_per_row": 2e-6}}
    pairs = 256.0
    std = {"F": 4 * attn[0] + dense[0] + 3 * (shared[0] + 5e-4 + 1e-6 * pairs + gate),
           "B": 4 * attn[1] + dense[1] + 3 * (shared[1] + 6e-4 + 2e-6 * pairs)}
    comm = {"F": 4e-3, "B": 5e-3}
    glue = {"layers": [0, 1, 2, 3], "stage_all_to_all_s": comm,
            "stage_spans_s": {"F": std["F"] * k_f + comm["F"], "B": std["B"] * k_b + comm["B"]},
            "stage_wall_s": {"F": std["F"] * k_f + comm["F"] + 2e-3, "B": std["B"] * k_b + comm["B"] + 2e-3}}
    # the rank computed at full speed outside the all-to-alls: CPU = wall - all-to-all time
    glue["stage_cpu_s"] = {d: glue["stage_wall_s"][d] - comm[d] for d in comm}
    if ep_glue:
        glue.update(n_moe=3, pairs_per_moe_layer=pairs)
        glue["stage_compute_cpu_s"] = {"F": std["F"] * k_f, "B": std["B"] * k_b}
    return {"dedicated": dedicated, "tokens_per_microbatch": 64, "attn": {"F": attn[0], "B": attn[1]},
            "mlp_dense": {"F": dense[0], "B": dense[1]}, "shared": {"F": shared[0], "B": shared[1]},
            "gate": {"F": gate, "B": 5e-4}, "expert": ex, "glue": glue}


def test_context_is_the_stage_over_the_standalone_sum():
    k = _context(_probe(1.1, 1.2), None)
    assert k["F"] == pytest.approx(1.1) and k["B"] == pytest.approx(1.2)
    assert _context(_probe(1.1, 1.2, dedicated=False), None) is None  # GPU: wall times, no MoE stage
    woken = _probe(1.1, 1.2)
    woken["glue"]["stage_cpu_s"] = {"F": 1e-3, "B": 1e-3}  # a low average share: the spans' own CPU decides
    assert _context(woken, None)["B"] == pytest.approx(1.2)
    assert _context({"dedicated": True, "attn": {"F": 1.0, "B": 1.0}}, None) is None  # no glue profile


def test_components_with_their_own_spans_take_their_own_factor_and_the_stage_total_is_kept():
    """attn 1.2x and shared 1.5x their standalone times in the stage pass: their own factors; the rest (dense FFN,
    experts, the gate's backward) takes what remains of the stage's CPU, so the scaled sum equals the stage."""
    p = _probe(1.1, 1.2)
    g = p["glue"]
    attn, shared, gate = p["attn"], p["shared"], p["gate"]
    g["stage_span_cpu_s"] = {"attn(F)": 4 * 1.2 * attn["F"], "attn(B)": 4 * 1.2 * attn["B"],
                             "shared(F)": 3 * 1.5 * shared["F"], "shared(B)": 3 * 1.5 * shared["B"],
                             "gate(F)": 3 * gate["F"], "mlp(F)": 1.0, "mlp(B)": 1.0}
    rest_only = _context(p, None)
    p["head"], p["embed"] = {"F": 1e-4, "B": 2e-4}, {"F": 1e-5, "B": 1e-5}
    g["stage_span_cpu_s"].update({"head(F)": 1.3e-4, "embed(F)": 4e-5})  # timed around the stage, not in it
    k = _context(p, None)
    assert k["by"]["head"] == pytest.approx({"F": 1.3}) and k["by"]["embed"] == pytest.approx({"F": 4.0})
    assert (k["F"], k["B"]) == (rest_only["F"], rest_only["B"])
    assert k["by"]["attn"] == pytest.approx({"F": 1.2, "B": 1.2})
    assert k["by"]["shared"] == pytest.approx({"F": 1.5, "B": 1.5})
    assert k["by"]["gate"] == pytest.approx({"F": 1.0})
    e = {"components": {"attn": [attn["F"], attn["B"]], "mlp_dense": [1e-3, 2e-3],
                        "shared": [shared["F"], shared["B"]], "gate": [gate["F"], gate["B"]], "glue": [1.0, 1.0]},
         "expert": {"fwd": [5e-4, 1e-6], "bwd": [6e-4, 2e-6]}}
    _apply_context(e, k)
    c, ex = e["components"], e["expert"]
    for d, i, key in (("F", 0, "fwd"), ("B", 1, "bwd")):
        total = 4 * c["attn"][i] + c["mlp_dense"][i] + 3 * (c["shared"][i] + ex[key][0] + ex[key][1] * 256.0)
        total += 3 * c["gate"][i] if d == "F" else 0.0
        assert total == pytest.approx(g["stage_compute_cpu_s"][d])
    assert c["glue"] == [1.0, 1.0]


def test_embedding_lookup_takes_its_time_by_the_pass_before_it():
    """The lookup timed after the stage pass's forward (20 us) and after its backward (40 us), 10 us back to back:
    factors 2 and 4 by position; the table's entry keeps them as times per position, the component the B one."""
    p = _probe(1.1, 1.2)
    attn = p["attn"]
    p["glue"]["stage_span_cpu_s"] = {"attn(F)": 4 * attn["F"], "attn(B)": 4 * attn["B"],
                                     "embed(F)": 4e-5, "embed after F": 2e-5}
    p["embed"] = {"F": 1e-5, "B": 1e-5}
    k = _context(p, None)
    assert k["by"]["embed_after"] == pytest.approx({"F": 2.0, "B": 4.0})
    e = {"components": {"embed": [1e-5, 1e-5], "glue": [1.0, 1.0]}, "expert": {"fwd": [0.0, 0.0], "bwd": [0.0, 0.0]}}
    _apply_context(e, k)
    assert e["embed_after_s"] == pytest.approx({"F": 2e-5, "B": 4e-5})
    assert e["components"]["embed"][0] == pytest.approx(4e-5)


def test_step_model_charges_the_lookup_by_the_pass_before_it():
    """1F1B, first of 2 stages, 4 micro-batches: F0 follows the step's start (priced as after a backward: the
    previous step's optimizer), F1 a forward, F2 and F3 a backward; a table without positions keeps its one
    in-stage time."""
    acts = one_f_one_b(2, 4).actions[0]
    assert [_after(acts, a) for a in acts if a.ops[0].kind == "F"] == ["start", "F", "B", "B"]
    rank = {"components": {"embed": [3e-5, 1e-5]}, "embed_after_s": {"F": 2e-5, "B": 4e-5}}
    assert (_embed(rank, "F"), _embed(rank, "B"), _embed(rank, "start")) == (2e-5, 4e-5, 4e-5)
    assert _embed({"components": {"embed": [3e-5, 1e-5]}}, "F") == 3e-5


def test_context_of_older_profiles_needs_the_model_and_no_ep():
    cfg = load_model_config("model/tiny.json")  # 4 layers, the first dense: 3 MoE layers
    old = _probe(1.1, 1.2, ep_glue=False)
    old["glue"]["stage_all_to_all_s"] = {"F": 0.0, "B": 0.0}
    for d in ("F", "B"):  # no all-to-alls in a one-rank glue
        old["glue"]["stage_spans_s"][d] -= {"F": 4e-3, "B": 5e-3}[d]
        old["glue"]["stage_wall_s"][d] -= {"F": 4e-3, "B": 5e-3}[d]
    old["tokens_per_microbatch"] = 64  # x 4 experts per token = the 256 pairs above
    k = _context(old, cfg)
    assert k["F"] == pytest.approx(1.1, rel=1e-3) and k["B"] == pytest.approx(1.2, rel=1e-3)
    assert _context(dict(old, codec={}), cfg) is None  # an EP run's one-rank glue held other experts


def test_apply_context_scales_compute_but_not_the_glue():
    e = {"components": {"attn": [1.0, 2.0], "glue": [0.5, 0.5]}, "expert": {"fwd": [1.0, 2.0], "bwd": [3.0, 4.0]}}
    _apply_context(e, {"F": 1.1, "B": 1.2})
    assert e["components"]["attn"] == pytest.approx([1.1, 2.4])
    assert e["components"]["glue"] == [0.5, 0.5]
    assert e["expert"]["fwd"] == pytest.approx([1.1, 2.2]) and e["expert"]["bwd"] == pytest.approx([3.6, 4.8])


def test_profile_gradients_follow_the_runs_micro_batches():
    g = _Grads(every=2)
    lin = g.track(torch.nn.Linear(2, 2))
    seen = []
    for i in range(4):
        g.before(i)
        seen.append(lin.weight.grad is None)
        lin(torch.ones(1, 2)).sum().backward()
    assert seen == [True, False, True, False]  # the first micro-batch of each step assigns, the next accumulates
    del lin
    assert len(g.held) == 0  # a profiled module is not kept alive by the pattern


def test_optimizer_time_takes_its_context_factor_where_the_stage_measured_one():
    from dsv3sim.validate.component_table import _optim

    comps = [{"optim": {"F_s": [2e-3, 2e-3]}, "glue": {"optim_context": 1.2}},
             {"optim": {"F_s": [2e-3]}, "glue": {"optim_context": 1.4}}, {"optim": {"F_s": [2e-3]}}]
    out = _optim(comps, share=0.5)
    assert out["optim_context"] == pytest.approx(1.3) and out["optim_s"] == pytest.approx(4e-3 * 1.3)
    assert _optim([{"optim": {"F_s": [1e-3]}}], share=1.0) == {"optim_s": 1e-3}  # GPU / older profiles


def test_gradient_sync_takes_its_context_factor_where_the_stage_measured_one():
    """The all-reduce's samples after the backward and after the gap pool over the probes before the ratio."""
    from dsv3sim.validate.component_table import _grad_sync

    comps = [{"grad_sync": {"F": 4e-3, "F_rel": [1.0, 1.0]}, "glue": {"allreduce_pair_s": {"after": [3.0, 9.0],
                                                                                           "again": [2.0, 2.0]}}},
             {"grad_sync": {"F": 4e-3}, "glue": {"allreduce_pair_s": {"after": [4.0], "again": [2.0]}}},
             {"glue": {"allreduce_pair_s": None}}]
    out = _grad_sync(comps)
    assert out["allreduce_context"] == pytest.approx(2.0) and out["grad_sync_s"] == pytest.approx(4e-3 * 2.0)
    assert _grad_sync([{"grad_sync": {"F": 2e-3}}]) == {"grad_sync_s": 2e-3}  # GPU / older profiles
    assert _grad_sync([{"glue": {"allreduce_pair_s": {"after": [1.0], "again": [1.0]}}}]) == {"grad_sync_s": 0.0}


def test_update_context_pairs_the_all_reduce_calls_after_the_backward_and_after_the_gap():
    """The stage pass calls the all-reduce twice a sample (after the backward, then after the gap), the first
    sample a warm-up."""
    from dsv3sim.validate.stage_pass import _pairs, _ratio

    assert _pairs([9.0, 9.0, 3.0, 2.0, 5.0, 4.0, 4.0, 2.0]) == {"after": [3.0, 5.0, 4.0], "again": [2.0, 4.0, 2.0]}
    assert _ratio([3.0, 5.0], [2.0, 2.0]) == pytest.approx(2.0)
    assert _ratio([], []) is None and _ratio([1.0], [0.0]) is None


def test_stage_pace_is_the_compute_spans_wall_over_their_cpu():
    """``in_stage_wall_per_cpu``: per direction the EP glue stage's compute spans (all spans less the
    all-to-alls) wall over CPU, median over the probes, never below 1; nothing without an EP glue profile."""
    from dsv3sim.validate.component_table import _compute_in_stage

    def glue(k):
        return {"glue": {"ep": 2, "stage_spans_s": {"F": 10 + 2 * k, "B": 7}, "stage_all_to_all_s": {"F": 4, "B": 4},
                         "stage_compute_cpu_s": {"F": 4, "B": 4}}}

    pace = _compute_in_stage([glue(0), glue(1), glue(2)])
    assert pace == {"F": pytest.approx((6 + 2) / 4), "B": 1.0}  # B: 3 / 4 floored, a span never beats its CPU
    assert _compute_in_stage([{"glue": dict(glue(0)["glue"], ep=1)}]) == {}
