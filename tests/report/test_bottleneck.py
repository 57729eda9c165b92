"""The bottleneck sentence follows the numbers of the result (two ways agree: shares sum to the step), and the
serving texts say what the node limit bounds and what placement did."""

from __future__ import annotations

import pytest

from dsv3sim.report import section
from dsv3sim.report.experts import placement_text
from dsv3sim.report.page import RenderContext
from dsv3sim.workload.limits import bottleneck, limiter, ranked_shares


def _train(**bd) -> dict:
    base = {"forward_s": 1.0, "backward_input_s": 1.0, "weight_grad_s": 0.5, "backward_full_s": 0.5,
            "overlapped_forward_backward_s": 10.0, "bubble_s": 1.5, "dp_comm_exposed_s": 0.5, "optimizer_s": 0.01}
    base.update(bd)
    return {"kind": "training", "step_time_s": sum(base.values()), "breakdown_s": base,
            "exposed_communication_s": 2.5,
            "comm": {"dispatch(F)": {"time_s": 1e-3, "busiest_link_class": "nic_rx"},
                     "combine(F)": {"time_s": 2e-3, "busiest_link_class": "nvlink_tx"}}}


def test_training_shares_sum_to_the_step_and_name_the_largest():
    r = _train()
    shares = dict(ranked_shares(r))
    assert sum(shares.values()) == pytest.approx(r["step_time_s"])
    assert shares["GPU compute"] == pytest.approx(13.0 - 2.0)  # chunks minus the EP wait inside them
    s = bottleneck(r)
    assert s.startswith("GPU compute limits the step: 11 s of 15.01 s (73%)")
    assert "except 2 s (busiest links: NVLink)" in s  # the slowest all-to-all's busiest link class
    assert "next is the pipeline bubble at 1.5 s" in s
    r = _train(bubble_s=20.0)
    assert bottleneck(r).startswith("The pipeline bubble limits the step") and limiter(r) == "pipeline bubble"


def test_serving_names_the_larger_of_compute_and_all_to_all():
    r = {"kind": "decode", "layer_time_s": {"attn(F)": 2e-4, "mlp(F)": 1e-4, "dispatch(F)": 2e-4,
                                             "combine(F)": 3e-4}, "exposed_communication_s": 0.01, "n_nodes": 40,
         "batch_per_gpu": 20, "max_batch_per_gpu_kv": 20}
    s = bottleneck(r)
    assert s.startswith("The EP all-to-all over InfiniBand and NVLink limits the decode step")
    assert "500 µs per layer and micro-batch against 300 µs of compute" in s and "caps the batch at 20" in s
    r["layer_time_s"]["mlp(F)"] = 1e-3
    assert bottleneck(r).startswith("GPU compute limits the decode step")
    assert bottleneck({"infeasible": "does not fit in HBM"}) == "Infeasible: does not fit in HBM."


def test_node_limit_text_says_it_limits_groups():
    hist = [0, 0, 0, 5, 100, 195, 420, 280] + [0] * 32  # an EP group over 40 nodes; 995 of 1000 tokens past M=4
    t = section("nodes", {"nodes_per_token": {"hist": hist, "node_limit": 4, "n_group": 8}}, RenderContext()).body
    assert "M=4 limits the expert groups" in t and "spans 40 nodes but the gate has 8 expert groups" in t
    assert "99.5% of tokens reach more than 4 nodes (mean 6.87, at most 8)" in t


def test_placement_text_explains_a_rise_with_whole_expert_slots():
    logical = [[1.0] * 256]
    maps = [("routed load per logical expert", logical, "logical expert"),
            ("before placement", [[0.8] * 320], "GPU"), ("after placement", [[1.0] * 256 + [0.5] * 64], "GPU")]
    t = placement_text({"parallel": {"redundant_experts": 64}}, maps)
    assert "'before' row is no placement: 256 experts do not divide over 320 GPUs" in t
    assert "raises the worst layer's per-GPU max/mean from 1.000 to 1.111" in t and "320/256 = 1.250x" in t
    maps[1] = ("before placement", [[2.0] + [1.0] * 319], "GPU")
    maps[2] = ("after placement", [[1.0] * 320], "GPU")
    assert "lowers the worst layer's per-GPU max/mean from 1.994 to 1.000" in placement_text({}, maps)


def test_a_real_run_names_its_largest_measured_part():
    comps = [{"name": "attn(F)", "measured_s": 0.02}, {"name": "dispatch(F)", "measured_s": 0.03},
             {"name": "combine(B)", "measured_s": 0.03}, {"name": "layout(F)", "measured_s": 0.01},
             {"name": "allreduce", "measured_s": 0.01}, {"name": "other", "measured_s": 0.0}]
    s = bottleneck({"kind": "validation", "measured_step_s": 0.1, "components": comps})
    assert s == ("EP all-to-all (layout, dispatch, combine) limits the measured step: 70 ms of 100 ms (70%); "
                 "next is GPU compute at 20 ms (20%).")
