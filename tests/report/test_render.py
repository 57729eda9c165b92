"""The HTML file: self-contained, plotly.js once, one div per figure, every section tolerant of absent data."""

from __future__ import annotations

import json
import re

import pytest

from dsv3sim.report import SECTIONS, STUDY_FULL, build_page, render, render_html, write_index


def test_self_contained_plotly_once(tmp_path, train_result):
    out = render(train_result, tmp_path / "r.html")
    html = out.read_text()
    assert html.count("* plotly.js v") == 1  # the library, inlined once
    assert not re.search(r"<script[^>]+src=", html)  # no CDN, no external script
    import plotly.offline

    ours = html.replace(plotly.offline.get_plotlyjs(), "")
    assert len(ours) < len(html) - 4_000_000
    assert "cdn.plot.ly" not in ours and "https://cdn" not in ours
    n = int(re.search(r'name="dsv3sim:figures" content="(\d+)"', html).group(1))
    assert html.count("Plotly.newPlot(") == n == html.count("data-dsv3sim-figure=")
    assert (tmp_path / "index.html").exists()


def test_full_fixture_every_section_present(train_result):
    page = build_page(train_result)
    (_, secs), = page.blocks
    present = {s.key: s.present for s in secs}
    # the fixture carries data for all of them except a sweep; no real trace given -> no comparison section
    assert set(present) == set(SECTIONS) - {"compare"}
    assert [k for k, v in present.items() if not v] == ["sweep"]
    assert page.n_figures == sum(s.n_figures for s in secs) >= 11


def test_empty_result_renders_with_absent_sections(tmp_path):
    html, page = render_html({"scenario": "nothing"}, traces_dir=tmp_path)  # no imbalance series under traces/
    assert page.n_figures == 0
    # every section but the (not requested) comparison and the all-fields table (it lists "scenario")
    assert html.count('class="absent"') == len(SECTIONS) - 2
    assert "not in this result" in html or "no " in html


def test_multi_scenario_file_renders_one_block_each(train_result, sweep_result):
    page = build_page({"pretrain": train_result, "ep_sweep": sweep_result})
    assert [h for h, _ in page.blocks] == ["Study", "pretrain", "ep_sweep"]  # a comparison first, then each
    ids = re.findall(r'data-dsv3sim-figure="([^"]+)"', page.html(""))
    assert len(ids) == len(set(ids)) == page.n_figures  # figure ids unique across blocks


def test_bad_inputs(tmp_path, train_result):
    with pytest.raises(ValueError, match="must end in .html"):
        render(train_result, tmp_path / "r.txt")
    for bad in (-1, 0, float("inf"), float("nan")):  # cost.pricing.check_price, as the commands that price
        with pytest.raises(ValueError, match=f"price-per-gpu-hour must be a positive number of dollars, got {bad}"):
            build_page(train_result, price_per_gpu_hour=bad)
    with pytest.raises(FileNotFoundError):
        build_page(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        build_page(tmp_path / "bad.json")


def test_index_lists_reports_with_summary(tmp_path, train_result, sweep_result):
    render(train_result, tmp_path / "a.html", update_index=False)
    render(sweep_result, tmp_path / "b.html", update_index=False)
    (tmp_path / "a.trace.json").write_text(json.dumps({"traceEvents": []}))
    idx = write_index(tmp_path).read_text()
    assert 'href="a.html"' in idx and 'href="b.html"' in idx and 'href="a.trace.json"' in idx
    assert "dsv3sim: fixture_pretrain" in idx and "dsv3sim: fixture_sweep" in idx
    assert "step 20 s" in idx and "MFU 40.0%" in idx  # the summary line read back from the report's meta tag


def test_result_objects_and_infeasible(tmp_path):
    from dsv3sim.results import Infeasible

    bad = Infeasible(scenario="too-big", kind="training", reason="does not fit in HBM: 92.0 GiB > 74.5 GiB")
    html, page = render_html(bad)
    assert "does not fit in HBM: 92.0 GiB &gt; 74.5 GiB" in html and page.title == "dsv3sim: too-big"
    html, page = render_html([bad, {"params": {"ep": 8}, "step_time_s": 1.0}])  # a list renders as a sweep
    sweep = next(s for _, secs in page.blocks for s in secs if s.key == "sweep")
    assert sweep.present and "does not fit in HBM" in sweep.body


def test_study_comparison_block(train_result):
    slow = dict(train_result, scenario="slow", step_time_s=40.0, tokens_per_s=train_result["tokens_per_s"] / 2)
    page = build_page({"fast": train_result, "slow": slow})
    (_, (cmp,)) = page.blocks[0]
    assert cmp.key == "study" and cmp.n_figures == 1
    rows = re.findall(r"<tr>(.*?)</tr>", cmp.body.split("data-study-table")[1])
    assert rows[1].startswith("<td>fast</td><td>training</td><td>step 20 s</td>") and "baseline" in rows[1]
    # half the tokens/s of the baseline: -50 %, and what limits each step is named
    assert rows[2].startswith("<td>slow</td><td>training</td><td>step 40 s</td>") and "-50.0%" in rows[2]
    assert all("GPU compute" in r or "bubble" in r or "all-to-all" in r for r in rows[1:])
    # per-scenario blocks stay light in a study of more than STUDY_FULL scenarios: no timeline, links or fields
    assert "timeline" in {s.key for h, secs in page.blocks[1:] for s in secs}
    many = build_page({f"s{i}": dict(train_result, scenario=f"s{i}") for i in range(STUDY_FULL + 1)})
    keys = {s.key for h, secs in many.blocks[1:] for s in secs}
    assert "summary" in keys and not keys & {"timeline", "links", "fields"}
    one = build_page({"fast": train_result, "slow": slow}, scenario="slow")  # one scenario in full
    assert [h for h, _ in one.blocks] == ["slow"] and "timeline" in {s.key for s in one.blocks[0][1]}
    with pytest.raises(ValueError, match="scenario 'nope' is not in this result"):
        build_page({"fast": train_result, "slow": slow}, scenario="nope")


def test_decode_result_sections():
    from .conftest import fixtures

    page = build_page(fixtures.decode_result())
    secs = {s.key: s for _, ss in page.blocks for s in ss}
    assert {k for k, s in secs.items() if s.present} >= {"summary", "timeline", "experts", "nodes", "memory",
                                                         "kvcache"}
    assert not secs["imbalance"].present and not secs["links"].present
    kv = secs["kvcache"].body
    assert "max_requests_per_node" in kv and "1,200" in kv  # the simulator's node-level comparison
    # the analytic table uses the result's budget: exactly 160 requests of 4K context for V3
    row = next(tr for tr in kv.split("<tr>") if tr.startswith("<td>deepseek-v3</td><td>MLA"))
    assert '<td class="num">160</td>' in row
    assert "14 k" in secs["summary"].body and "One layer of one micro-batch" in secs["summary"].body
