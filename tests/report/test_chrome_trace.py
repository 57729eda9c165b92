"""Reading Chrome traces: dsv3sim's own layout, torch.profiler's layout (hand-made and a real CPU export)."""

from __future__ import annotations

import gzip
import json

import pytest

from dsv3sim.report import build_page
from dsv3sim.results.trace_events import category, read_slices

from .conftest import torch_like_trace


def test_torch_profiler_layout_keeps_gpu_lanes():
    ss, info = read_slices(torch_like_trace())
    assert info["kind"] == "torch.profiler (GPU)"
    assert {s.lane for s in ss} == {"GPU 0 / stream 7 (annotations)", "GPU 0 / stream 7", "GPU 0 / stream 20"}
    assert [s.lane for s in ss if s.name == "attn(F)"] == ["GPU 0 / stream 7 (annotations)"]
    order = sorted({(s.lane_key, s.lane) for s in ss})
    assert [lane for _, lane in order] == ["GPU 0 / stream 7 (annotations)", "GPU 0 / stream 7", "GPU 0 / stream 20"]
    assert min(s.start_s for s in ss) == 0.0  # rebased to the first kept event (ts 1010 us)
    nccl = next(s for s in ss if s.name.startswith("nccl"))
    assert nccl.start_s == pytest.approx(90e-6) and nccl.dur_s == pytest.approx(400e-6)


def test_begin_end_pairs_and_gzip(tmp_path):
    ev = [{"ph": "B", "name": "mlp(F)", "pid": 0, "tid": 0, "ts": 5},
          {"ph": "B", "name": "gemm", "pid": 0, "tid": 0, "ts": 6},
          {"ph": "E", "pid": 0, "tid": 0, "ts": 9}, {"ph": "E", "pid": 0, "tid": 0, "ts": 15}]
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(json.dumps(ev).encode()))
    ss, _ = read_slices(p)
    d = {s.name: (s.start_s, s.dur_s) for s in ss}
    assert d == {"mlp(F)": (0.0, pytest.approx(10e-6)), "gemm": (pytest.approx(1e-6), pytest.approx(3e-6))}


def test_bad_traces(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_slices(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="traceEvents"):
        read_slices({"events": []})


@pytest.mark.parametrize(("name", "cat"), [
    ("attn(F)", "attn"), ("combine(B)", "combine"), ("dispatch(F)", "dispatch"), ("mlp(W)", "mlp"),
    ("ncclDevKernel_AllToAll", "comm"), ("flash_fwd_kernel", "attn"), ("sm90_xmma_gemm_bf16", "mlp"),
    ("F", "pipeline"), ("F&B", "pipeline"), ("optimizer", "optimizer"), ("memcpy", "other"),
])
def test_category(name, cat):
    assert category(name) == cat


def test_real_torch_profiler_export_side_by_side(tmp_path, train_result):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    a = torch.randn(64, 64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            with torch.profiler.record_function("attn(F)"):
                a = torch.tanh(a @ a)
            with torch.profiler.record_function("mlp(F)"):
                a = torch.relu(a @ a)
    p = tmp_path / "real.json"
    prof.export_chrome_trace(str(p))
    ss, info = read_slices(p)
    assert info["kind"] == "torch.profiler (CPU)"
    names = [s.name for s in ss]
    assert names.count("attn(F)") == 2 and names.count("mlp(F)") == 2
    assert any(n.startswith("aten::") for n in names)
    page = build_page(train_result, chrome_trace=p)
    sec = next(s for _, secs in page.blocks for s in secs if s.key == "compare")
    assert sec.n_figures == 1 and "ui.perfetto.dev" in sec.body and "attn(F)" in sec.body


def test_merged_trace_round_trips(tmp_path, train_json):
    from dsv3sim.cli import main
    from dsv3sim.results.trace_events import slices_from_result

    real = tmp_path / "real.json"
    real.write_text(json.dumps(torch_like_trace()))
    out = tmp_path / "r.html"
    assert main(["report", str(train_json), "--out", str(out), "--chrome-trace", str(real)]) == 0
    merged = tmp_path / "r.sim+real.trace.json"
    assert merged.exists() and merged.name in out.read_text()
    back, _ = read_slices(merged)
    sim, _ = slices_from_result(json.loads(train_json.read_text()))
    real_ss, _ = read_slices(real)
    assert len(back) == len(sim) + len(real_ss)
    # every simulated slice comes back with its name, lane and times (us round trip)
    def key(s):
        return s.name, round(s.start_s, 9), round(s.dur_s, 9)

    back_sim = sorted(key(s) for s in back if s.lane.startswith("simulated"))
    assert back_sim == sorted(key(s) for s in sim)
    assert {s.lane for s in back if s.lane.startswith("real")} == {f"real: {ln}" for ln in {s.lane for s in real_ss}}


def test_a_bare_chrome_trace_renders_as_the_timeline(tmp_path, train_result):
    from dsv3sim.results.trace_events import save_chrome_trace

    p = save_chrome_trace(train_result, tmp_path / "t.json")
    page = build_page(p)
    tl = next(s for _, secs in page.blocks for s in secs if s.key == "timeline")
    assert tl.present and tl.n_figures == 1 and "from Chrome trace" in tl.body
