"""The planner section of the HTML report: ranked table with the best highlighted, its bottleneck, Pareto plot."""

from __future__ import annotations

from dsv3sim.plan.network import plan_network
from dsv3sim.plan.serve import ServeQuery, plan_serving
from dsv3sim.plan.train import TrainQuery, plan_training
from dsv3sim.report import build_page
from dsv3sim.report.page import BEST_STYLE


def _section(result: dict):
    page = build_page(result)
    (_, secs), = page.blocks
    assert [s.key for s in secs] == ["planner"]  # a plan gets its own section only
    return secs[0]


def test_train_section():
    p = plan_training(TrainQuery(pp=(16,), ep=(32, 64), schedules=("dualpipe",), dtypes=("fp8",),
                                 recompute=(True,), node_limits=(4,), refine=1), workers=1).to_dict()
    s = _section(p)
    assert "Its bottleneck is <b>compute</b>" in s.body and BEST_STYLE in s.body
    assert p["best"]["key"] in s.body and "cost $" in s.body and s.n_figures == 1


def test_serve_section_has_pareto_plot():
    r = plan_serving(ServeQuery(gpus=24, instance_sizes=(8, 16), attn_tp=(1,), prefill_tokens_per_gpu=(8192,),
                                decode_batches=(16, 48), mtp=(True,)), workers=1)
    s = _section(r)
    assert s.n_figures == 1 and "Pareto" in s.body and "$/M out" in s.body
    assert "aggregated" in s.body  # aggregated serving compared, said plainly


def test_network_section_marks_chosen():
    s = _section(plan_network(radix=64, endpoints=16384))
    assert "<b>MPFT</b>" in s.body and BEST_STYLE in s.body
