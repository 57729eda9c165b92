"""Section data: each number the report shows, recomputed a second way."""

from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.cost.kvcache import kv_comparison
from dsv3sim.report import section
from dsv3sim.report.experts import load_maps, max_over_mean
from dsv3sim.report.page import RenderContext
from dsv3sim.results import split_results
from dsv3sim.results.reading import (
    as_matrix,
    gpu_hours_per_trillion,
    link_series,
    memory_rows,
    node_counts,
    node_spread,
    validation_rows,
)
from dsv3sim.results.trace_events import slices_from_result


def test_split_by_scenario():
    r = {"scenario": "x", "step_time_s": 2.0}
    assert split_results({"a": {"step_time_s": 1}, "b": {"mfu": 0.2}}) == [("a", {"step_time_s": 1}),
                                                                            ("b", {"mfu": 0.2})]
    assert split_results(r) == [("", r)]


def test_gpu_hours_deepseek_v3_published():
    # DeepSeek-V3 report §1: 2048 H800, 180K GPU-hours per trillion tokens = 3.7 days per trillion tokens.
    # Route 1: n_gpus x 1e12 / tokens_per_s / 3600; route 2: the report's own statement of 3.7 days on 2048 GPUs.
    tps = 1e12 / (3.7 * 86400)
    gph, _ = gpu_hours_per_trillion({"n_gpus": 2048, "tokens_per_s": tps})
    assert gph == pytest.approx(2048 * 3.7 * 24, rel=1e-12)
    assert gph == pytest.approx(180e3, rel=0.02)
    assert gpu_hours_per_trillion({"gpu_hours_per_trillion_tokens": 5.0})[0] == 5.0


def test_summary_states_price_and_cost(train_result):
    body = section("summary", train_result, RenderContext(price_per_gpu_hour=2.0)).body
    gph = 2048 * 1e12 / (15360 * 4096 / 20.0) / 3600
    assert f"{gph / 1e3:,.1f} K" in body
    assert f"${gph * 2 / 1e6:,.3f} M" in body  # cost per trillion tokens at $2
    assert "$2 per GPU-hour" in body
    body3 = section("summary", train_result, RenderContext(price_per_gpu_hour=3.0)).body
    assert f"${gph * 3 / 1e6:,.3f} M" in body3


def test_heatmap_max_over_mean_matches_numpy(train_result):
    m = as_matrix(train_result["expert_load_before"])
    a = np.asarray(m, dtype=float)
    assert max_over_mean(m) == pytest.approx(list(a.max(1) / a.mean(1)))
    assert as_matrix([[1, 2], [3]]) is None  # ragged


def test_nodes_histogram_as_written():
    assert node_counts({"hist": [0, 5, 7], "node_limit": 4}) == {1: 0, 2: 5, 3: 7}  # results.NodesPerToken: 1..n nodes
    assert node_counts({"hist": []}) is None and node_counts(None) is None
    mean, over, most = node_spread({1: 2, 2: 6, 3: 0, 4: 2}, 2)
    assert mean == pytest.approx((2 + 12 + 8) / 10) and over == pytest.approx(0.2) and most == 4
    assert node_spread({1: 5, 2: 5}, None) == (1.5, 0.0, 2)  # no limit: nothing is over it


def test_link_utilisation_as_written():
    t = [0.0, 1e-3, 2e-3]
    lu = {"t_s": t, "by_class": {"ib": [0.1, 0.5, 0.9]}, "by_node": {"0": {"ib": [0.2, 0.4, 0.6]}},
          "average": {"ib": 0.5, "nvlink": None}}
    by_class, by_node, avg = link_series(lu)
    assert by_class == {"ib": (t, [0.1, 0.5, 0.9])} and by_node == {"node 0 ib": (t, [0.2, 0.4, 0.6])}
    assert avg == {"ib": 0.5}
    assert link_series(None) == link_series({"ib": 0.7}) == ({}, {}, {})  # not the written shape: no series


def test_memory_rows_as_written():
    per = memory_rows({"memory_per_gpu": [{"rank": 0, "weights_bytes": 1.0, "total_bytes": 1.0, "hbm_bytes": 8.0,
                                           "activation_microbatch_stages": 17}, {"rank": 1, "weights_bytes": 2.0}]})
    assert [(r.rank, r.components()) for r in per] == [(0, {"weights": 1.0}), (1, {"weights": 2.0})]  # counts: not bytes
    assert memory_rows({"memory_per_gpu": [{"rank": 3, "kv_bytes": 1.0}]}) == []  # not a MemoryRow key
    assert memory_rows({"memory_per_gpu": {"rank": 3}}) == []


def test_kv_comparison_agrees_with_published_v3():
    rows, skipped = kv_comparison(["deepseek-v3", "qwen2.5-72b", "no-such-model"], free_bytes=70_272 * 131072 * 3)
    assert [r["model"] for r in rows][:1] and skipped and "no-such-model" in skipped[0]
    v3 = rows[0]
    assert v3["attention"] == "mla" and v3["bytes_per_token"] == 70_272  # "Insights into DeepSeek-V3", Table 1
    assert v3["batch"][131072] == 3  # budget chosen to hold exactly three 128K sequences
    q = rows[1]
    assert q["attention"] == "gqa" and q["bytes_per_token"] == 2 * 8 * 128 * 80 * 2  # K,V x 8 kv heads x 128 x 80 L
    assert q["batch"][131072] < v3["batch"][131072]


def test_sweep_infeasible_kept(sweep_result):
    sec = section("sweep", sweep_result, RenderContext())
    assert sec.n_figures == 2  # ep and ib_GBps vary
    assert "does not fit in HBM: 92 &gt; 80 GB" in sec.body and "1 infeasible" in sec.body


def test_validation_error_computed():
    rows = validation_rows({"validation": {"rows": [{"name": "gph", "predicted": 198.0, "published": 180.0}]}})
    assert rows[0]["name"] == "gph" and rows[0]["error"] == pytest.approx(0.1)
    assert validation_rows({"validation": [{"name": "s", "predicted": 1.0, "measured": 2.0}]})[0]["error"] == -0.5
    assert validation_rows({"validation": [{"name": "x", "predicted": 1.0}]}) == []  # no reference: skipped


def test_timeline_from_events_rebased(train_result):
    ss, src = slices_from_result(train_result)
    assert src == "timeline" and min(s.start_s for s in ss) == 0.0
    assert {s.name for s in ss} >= {"F", "B", "W", "send", "attn(F)", "dispatch(F)"}
    assert len({s.lane for s in ss}) == 8  # 4 ranks x (compute, comm)
    per_rank = slices_from_result({"timeline": {"per_rank": {"3": [{"name": "F", "t0": 1e-5, "t1": 1.5e-5}]}}})[0]
    assert per_rank[0].dur_s == pytest.approx(5e-6) and per_rank[0].start_s == 0.0  # dsv3sim validate's shape
    assert per_rank[0].lane == "rank 3 / compute"


def test_load_maps_as_written():
    r = {"expert_load_logical": [[1, 2, 3, 4]], "expert_load_before": [[3, 7]], "expert_load_after": [5, 5]}
    maps = load_maps(r)
    assert [(lab, xl) for lab, _, xl in maps] == [("routed load per logical expert", "logical expert"),
                                                  ("before placement", "GPU"), ("after placement", "GPU")]
    assert maps[2][1] == [[5.0, 5.0]] and max_over_mean(maps[1][1]) == [pytest.approx(1.4)]


def test_kv_section_uses_the_result_budget():
    budget = 70_272 * 131072 * 5  # five 128K sequences of DeepSeek-V3 (BF16)
    r = {"model": "deepseek-v3", "kv": {"kv_budget_bytes_per_gpu": budget, "kv_bytes_per_token": 70_272}}
    body = section("kvcache", r, RenderContext()).body
    assert "kv_budget_bytes_per_gpu" in body and "kv_bytes_per_token" in body  # the simulator's own fields listed
    row = next(tr for tr in body.split("<tr>") if tr.startswith("<td>deepseek-v3</td>"))
    assert row.split("</tr>")[0].endswith('<td class="num">5</td>')  # max batch @ 128K = the budget's 5


def test_imbalance_found_under_traces_dir(tmp_path):
    import json

    d = tmp_path / "traces"
    d.mkdir()
    (d / "other.json").write_text(json.dumps({"weight": [[1, 2]]}))  # an EPLB load file: not a series
    (d / "imb.json").write_text(json.dumps({"quantity": "expert_load_max_over_mean", "runs": [
        {"label": "aux-free", "step": [0, 1], "max_over_mean_worst": [2.0, 1.5]}]}))
    sec = section("imbalance", {"type": "training"}, RenderContext(traces_dir=d))
    assert sec.present and sec.n_figures == 1 and "imb.json" in sec.body and "aux-free: 1.50" in sec.body
    assert not section("imbalance", {"type": "serving"}, RenderContext(traces_dir=d)).present


def test_timeline_caps_lanes():
    from dsv3sim.report.timeline import MAX_LANES, timeline_figure
    from dsv3sim.results.trace_events import first_lanes

    ev = [{"rank": r, "name": "F", "start_s": 0.0, "end_s": 1.0} for r in range(MAX_LANES + 10)]
    ss, _ = slices_from_result({"timeline": {"events": ev}})
    kept, order, dropped = first_lanes(ss, MAX_LANES)
    assert dropped == 10 and order == [f"rank {r} / compute" for r in range(MAX_LANES)] and {s.lane for s in kept} == {f"rank {r} / compute" for r in range(MAX_LANES)}
    fig = timeline_figure([("sim", ss)], "t")
    assert len(set(fig.layout.yaxis.categoryarray)) == MAX_LANES


def test_validation_rows_are_not_a_sweep():
    r = {"step_time_s": 1.0, "validation": {"rows": [{"name": "x", "predicted": 1.0, "published": 2.0}]}}
    assert not section("sweep", r, RenderContext()).present
    assert len(validation_rows(r)) == 1


def test_expert_notes_are_escaped_once(train_result):
    """The nodes-per-token and placement notes are prose from ``say``, which escapes the values it fills in and
    keeps the template as written: the note paragraphs carry no entity of a second escape (a node limit that
    tokens exceed: "a token's gate" stays as written, not ``&#x27;``)."""
    r = dict(train_result, nodes_per_token={"hist": [10, 30, 40, 20], "node_limit": 2, "n_group": 8})
    for key in ("nodes", "experts"):
        notes = [p.split("</p>")[0] for p in section(key, r, RenderContext()).body.split('<p class="note"')[1:]]
        assert notes and not any("&#x27;" in p or "&amp;" in p for p in notes), key
    assert "a token's gate" in section("nodes", r, RenderContext()).body
