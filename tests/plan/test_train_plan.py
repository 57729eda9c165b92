"""Training layout search: small spaces through the real step model."""

from __future__ import annotations

import pytest

from dsv3sim.cost.pricing import cost_usd, gpu_hours
from dsv3sim.plan.train import TrainLayout, TrainQuery, count_layouts, plan_training

SMALL = {"pp": (8, 16), "ep": (8, 32, 64), "schedules": ("dualpipe", "1f1b"), "dtypes": ("fp8",),
         "recompute": (True,), "node_limits": (2, 4)}


@pytest.fixture(scope="module")
def plan():
    user = TrainLayout(n_gpus=2048, pp=16, ep=8)  # 119 GiB per GPU: does not fit an 80 GB H800
    return plan_training(TrainQuery(refine=1, user_layout=user, **SMALL), workers=1)


def test_ranked_priced_and_explained(plan):
    ok = [r for r in plan.candidates if "infeasible" not in r]
    assert plan.best is ok[0] and plan.best["comm_model"] == "sim"
    for r in ok:
        assert r["gpu_hours"] == pytest.approx(r["n_gpus"] * r["days"] * 24)
        # the planner prices with cost.pricing, to the bit (no GPU-hour arithmetic of its own)
        assert r["gpu_hours"] == gpu_hours(r["n_gpus"], plan.query["tokens"] / r["tokens_per_s"])
        assert r["cost_usd_run"] == cost_usd(r["gpu_hours"], 2.0)
        assert 0 < r["memory_headroom"] < 1 and r["limits"] in ("compute", "IB", "NVLink", "bubble")
    bound = [r for r in ok if r["comm_model"] == "bound"]
    assert bound == sorted(bound, key=lambda r: r["days"])
    assert plan.counts["pruned_before_simulation"] > 0


def test_best_no_slower_than_published_layout(plan):
    published = next(r for r in plan.candidates if r["key"] == TrainLayout(n_gpus=2048, pp=16, ep=64).key)
    assert plan.best["step_time_s"] <= published["step_time_s"] * 1.0001 or published["comm_model"] == "bound"


def test_infeasible_keep_reasons_and_user_gets_nearest(plan):
    bad = [r for r in plan.candidates if "infeasible" in r]
    assert bad and all(r["infeasible"] for r in bad)
    assert any(r["infeasible"].startswith("memory: needs") for r in bad)
    u = plan.user
    assert u["feasible"] is False and "memory" in u["reason"]
    nf = u["nearest_feasible"]
    assert nf["changed"] == ["ep"] and nf["layout"]["pp"] == 16


def test_space_over_limit_refused_before_start():
    q = TrainQuery(max_layouts=10)
    assert count_layouts(q) > 10
    with pytest.raises(ValueError, match="search space has .* > --max-layouts 10"):
        plan_training(q, workers=1)


def test_unmeetable_deadline_is_a_result():
    p = plan_training(TrainQuery(refine=0, deadline_days=1.0, pp=(16,), ep=(64,), schedules=("dualpipe",),
                                 dtypes=("fp8",), recompute=(True,), node_limits=(4,)), workers=1)
    assert p.best["meets_deadline"] is False and p.best["misses_deadline_by_days"] > 40
    assert any("no layout meets" in n for n in p.notes)


def test_run_totals_add_extension_and_post_training():
    q = TrainQuery(pp=(16,), ep=(64,), schedules=("dualpipe",), dtypes=("fp8",), recompute=(True,),
                   node_limits=(4,), refine=0, extension_phases=((1000 * 1920 * 32768, 32768, 1920),),
                   post_training_gpu_hours=5e3)
    t = plan_training(q, workers=1).totals
    pre, ext, post = t["phases"]
    assert post["gpu_hours"] == 5e3 and ext["tokens"] == 1000 * 1920 * 32768
    # the 32K phase costs more per token than 4K pre-training (attention FLOPs grow with the context)
    assert ext["gpu_hours"] / ext["tokens"] > pre["gpu_hours"] / pre["tokens"]
    assert t["gpu_hours_total"] == pytest.approx(sum(p["gpu_hours"] for p in t["phases"]))
    assert t["cost_usd_total"] == pytest.approx(2.0 * t["gpu_hours_total"])
