"""The search on a real local Ray cluster started by the test (~20 s to start Ray on 2 cores: slow)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_training_search_on_local_ray_matches_process_pool():
    from dsv3sim.plan.train import TrainQuery, plan_training

    q = TrainQuery(pp=(8, 16), ep=(32, 64), schedules=("dualpipe",), dtypes=("fp8",), recompute=(True,),
                   node_limits=(4,), refine=0)
    try:
        on_ray = plan_training(q, workers=2, ray_address="local")
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    local = plan_training(q, workers=1)
    assert [(r["key"], r.get("step_time_s")) for r in on_ray.candidates] == \
        [(r["key"], r.get("step_time_s")) for r in local.candidates]
    assert on_ray.counts["simulated_bound"] == 2
