"""Serving layout search: SLA filtering, Pareto frontier, unmeetable SLA, fleet sizing."""

from __future__ import annotations

import pytest

from dsv3sim.plan.serve import AGGREGATED_NOTE, ServeQuery, pareto, plan_serving

SMALL = {"instance_sizes": (8, 16), "attn_tp": (1,), "prefill_tokens_per_gpu": (4096, 16384),
         "decode_batches": (8, 32, 64, 128), "mtp": (True,)}


@pytest.fixture(scope="module")
def res():
    return plan_serving(ServeQuery(gpus=32, **SMALL), workers=1, daily=(608e9, 168e9))


def test_best_meets_sla_and_is_priced(res):
    b = res["best"]
    assert b["meets_sla"] and b["ttft_s"] <= 2.0 and b["tpot_s"] <= 0.05
    assert b["gpus_used"] <= 32 and b["prefill_comm_model"] == "sim"  # refined with the event simulation
    assert b["tokens_per_s_per_gpu"] == max(c["tokens_per_s_per_gpu"] for c in res["ranked"])
    assert b["cost_usd_per_million_output_tokens"] > 0 and b["cost_usd_per_million_input_tokens"] > 0
    assert AGGREGATED_NOTE in res["notes"] and res["mode"] == "disaggregated"
    agg = res["aggregated"]  # aggregated (chunked-prefill) instances searched beside the disaggregated ones
    assert agg["feasible"] > 0 and all(r["meets_sla"] for r in agg["ranked"])
    if agg["best"]:
        assert agg["best"]["tokens_per_s_per_gpu"] == max(r["tokens_per_s_per_gpu"] for r in agg["ranked"])


def test_pareto_is_non_dominated(res):
    front = res["pareto"]
    assert len(front) >= 2
    for a in front:
        assert not any(b["tokens_per_s_per_user"] >= a["tokens_per_s_per_user"] and
                       b["tokens_per_s_per_gpu"] > a["tokens_per_s_per_gpu"] for b in front if b is not a)
    assert pareto(front) == front


def test_fleet_from_search(res):
    f = res["fleet"]
    assert f["nodes"] == pytest.approx(f["prefill_nodes"] + f["decode_nodes"])
    assert f["cost_usd_per_day"] == pytest.approx(f["nodes"] * 8 * 24 * 2.0)
    # the load model sizes above the flat-load capacity arithmetic, and its peak is above its average
    lm = f["load_model"]
    assert f["nodes"] >= f["capacity"]["nodes"] and lm["peak_nodes"] >= f["nodes"]
    assert f["output_tokens_per_s_per_node"] <= f["capacity"]["output_tokens_per_s_per_node"] * (1 + 1e-9)
    assert lm["decode"]["sla_batch_per_gpu"] > 0 and lm["decode"]["mean_batch_per_gpu"] <= lm["decode"]["sla_batch_per_gpu"]


def test_fleet_needs_more_nodes_at_a_higher_peak(res):
    from dsv3sim.plan.serve import FleetQuery, _fleet

    q = ServeQuery(gpus=32, **SMALL)
    rows = res["instances"]
    pre = [r for r in rows if r["phase"] == "prefill" and "infeasible" not in r]
    pre = [next((x for x in rows if x.get("key") == r["key"] and x.get("comm_model") == "sim"), r) for r in pre]
    dec = [r for r in rows if r["phase"] == "decode" and "infeasible" not in r]
    nodes = [_fleet(q, 8, pre, dec, res["ranked"], (608e9, 168e9), None, FleetQuery(peak_to_mean=r))["nodes"]
             for r in (1.0, 1.5, 2.0)]
    assert nodes[0] < nodes[1] < nodes[2]


def test_fleet_flat_load_equals_the_capacity_arithmetic(res):
    from dsv3sim.plan.serve import FleetQuery, _fleet

    q = ServeQuery(gpus=32, **SMALL)
    rows = res["instances"]
    pre = [r for r in rows if r["phase"] == "prefill" and "infeasible" not in r]
    dec = [r for r in rows if r["phase"] == "decode" and "infeasible" not in r]
    flat = FleetQuery(load_shape="flat", peak_to_mean=1.0, burst_quantile=0.5, whole_units=False,
                      min_prefill_units=0, min_decode_units=0)
    f = _fleet(q, 8, pre, dec, res["ranked"], (608e9, 168e9), None, flat)
    # same decode instance at its SLA batch: the load model reduces to tokens / (86400 x capacity)
    lm = f["load_model"]
    assert f["decode_nodes"] == pytest.approx(168e9 / 86400 / lm["decode"]["capacity_tokens_per_s_per_node"], rel=1e-6)
    assert f["prefill_nodes"] == pytest.approx(608e9 / 86400 / lm["prefill"]["capacity_tokens_per_s_per_node"],
                                               rel=1e-6)
    assert lm["peak_to_average_nodes"] == pytest.approx(1.0)


def test_aggregated_rows_respect_tpot_and_the_tail_itl_limit():
    r = plan_serving(ServeQuery(gpus=16, max_itl_ms=100.0, **dict(SMALL, instance_sizes=(16,))), workers=1)
    agg = r["aggregated"]
    assert agg["ranked"], "an aggregated layout meets TPOT 50 ms and a 100 ms tail inter-token limit"
    for a in agg["ranked"]:
        assert a["tpot_s"] <= 0.05 and a["tpot_chunk_s"] <= 0.1 and a["ttft_s"] <= 2.0
        assert a["chunk_tokens"] in (512, 1024, 2048)
    with pytest.raises(ValueError, match="max-itl-ms"):
        ServeQuery(max_itl_ms=0)


def test_unmeetable_sla_lists_closest():
    r = plan_serving(ServeQuery(gpus=16, tpot_ms=1.0, **SMALL), workers=1)
    assert r["best"] is None
    close = r["sla_unmet"]["closest"]
    assert close and all("TPOT" in c["misses"] for c in close)
    assert close == sorted(close, key=lambda c: (c["miss"], -c["tokens_per_s_per_gpu"]))


def test_bad_query():
    with pytest.raises(ValueError, match="prefix-cache-hit"):
        ServeQuery(prefix_cache_hit=1.0)


def test_report_shows_the_load_model(res):
    from dsv3sim.report import build_page

    (_, secs), = build_page(res).blocks
    body = secs[0].body
    lm = res["fleet"]["load_model"]
    assert f"Peak {lm['peak_nodes']:.0f} nodes" in body and "burst headroom" in body
    assert f"{lm['decode']['utilisation']:.0%} of capacity" in body
