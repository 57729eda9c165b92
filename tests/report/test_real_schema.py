"""A real (trimmed) `simulate_training` result of DeepSeek-V3 pre-training: every section finds its data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsv3sim.report import build_page
from dsv3sim.report.experts import load_maps
from dsv3sim.results.reading import gpu_hours_per_trillion, hbm_bytes, link_series, memory_rows, node_counts
from dsv3sim.results.trace_events import slices_from_result

DATA = Path(__file__).with_name("data") / "v3_pretrain_result.json"


@pytest.fixture(scope="module")
def real() -> dict:
    return json.loads(DATA.read_text())


def test_sections_present(real):
    page = build_page(real)
    present = {s.key: s.present for _, secs in page.blocks for s in secs}
    for k in ("summary", "timeline", "links", "experts", "nodes", "memory", "kvcache", "fields"):
        assert present[k], k
    assert not present["sweep"] and not present["validation"]  # validation is {} in this result


def test_numbers_two_ways(real):
    # GPU-hours per trillion tokens: the simulator's field vs n_gpus x 1e12 / tokens_per_s / 3600
    recomputed, _ = gpu_hours_per_trillion({k: v for k, v in real.items() if k != "gpu_hours_per_trillion_tokens"})
    assert recomputed == pytest.approx(real["gpu_hours_per_trillion_tokens"], rel=1e-9)
    # node histogram: entry i counts tokens reaching i+1 nodes; none beyond the node limit
    h = node_counts(real["nodes_per_token"])
    assert sum(h.values()) == sum(real["nodes_per_token"]["hist"])
    assert all(c == 0 for n, c in h.items() if n > real["nodes_per_token"]["node_limit"])
    # memory: one row per PP rank, components sum to the simulator's total
    rows = memory_rows(real)
    assert len(rows) == real["parallel"]["pp"]
    for row, raw in zip(rows, real["memory_per_gpu"]):
        assert sum(row.components().values()) == pytest.approx(raw["total_bytes"], rel=1e-9)
    assert hbm_bytes(real) == real["memory_per_gpu"][0]["hbm_bytes"]
    # link averages as written; per-class series present
    by_class, _, avg = link_series(real["link_utilisation"])
    assert set(by_class) == {"ib", "nvlink"} and avg["ib"] == pytest.approx(real["ib_utilisation"])
    assert [lab for lab, _, _ in load_maps(real)] == ["routed load per logical expert", "before placement",
                                                      "after placement"]


def test_timeline_lanes(real):
    ss, src = slices_from_result(real)
    lanes = sorted({s.lane for s in ss})
    assert src == "timeline"
    assert "rank 0 / comm" in lanes and "rank 0 / compute" in lanes and "rank 3 / pipeline" in lanes
    names = {s.name for s in ss}
    assert {"attn(F)", "mlp(F)", "dispatch(F)", "combine(F)", "F&B"} <= names


def test_results_chrome_export_reads_back_as_the_timeline(real):
    """Two routes: dsv3sim.results.chrome_trace -> read_slices, and the result's timeline events directly."""
    from dsv3sim.results.trace_events import chrome_trace, read_slices

    via_trace, info = read_slices(chrome_trace(real))
    direct, _ = slices_from_result(real)
    assert info["kind"] == "chrome" and len(via_trace) == len(direct)

    def key(s):
        return s.lane, s.name, round(s.start_s, 9), round(s.dur_s, 9)

    assert sorted(map(key, via_trace)) == sorted(map(key, direct))


def test_comm_table(real):
    from html import escape

    from dsv3sim.report.network import comm_table

    html = comm_table(real)
    d = real["comm"]["dispatch(F)"]
    assert "dispatch(F)" in html and f"{d['time_s'] * 1e6:,.1f} µs" in html
    assert f"{d['busiest_link_utilisation'] * 100:,.1f} %" in html and escape(d["busiest_link"]) in html
    assert comm_table({"comm": {}}) == ""
