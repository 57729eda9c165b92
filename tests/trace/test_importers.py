"""Format round trips: .npz trace, EPLB JSON, SGLang .pt; loaders used by other subpackages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dsv3sim.trace import load_loads, load_trace, save_trace
from dsv3sim.trace.importers import read_sglang_pt, write_eplb_json, write_sglang_pt
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import read_npz_trace
from dsv3sim.trace.stats import trace_stats
from dsv3sim.trace.synth import SynthSpec, synthesize


def test_npz_round_trip(tmp_path):
    tr = synthesize(SynthSpec(n_tokens=300, seed=1), EpLayout(n_experts=16, ep=8, gpus_per_node=2), node_limit=2)
    p = save_trace(tr, tmp_path / "t.npz")
    back = load_trace(p)
    assert np.array_equal(back.expert_ids, tr.expert_ids) and np.array_equal(back.weights, tr.weights)
    assert np.array_equal(back.seq_ids, tr.seq_ids) and back.layout == tr.layout and back.node_limit == 2
    with np.load(p) as z:   # the columns other tools read without dsv3sim
        assert set(z.files) >= {"meta", "layers", "expert_ids", "weights", "group_ids", "gpu_ids", "node_ids",
                                "seq_ids", "positions"}
        assert np.array_equal(z["node_ids"], tr.expert_ids // 4)
        meta = json.loads(str(z["meta"]))
    assert meta["layout"]["n_nodes"] == 4 and meta["node_limit"] == 2
    assert np.array_equal(load_loads(p), tr.loads())


def test_tampered_columns_are_caught(tmp_path):
    tr = synthesize(SynthSpec(n_tokens=50, seed=1), EpLayout(n_experts=16, ep=8, gpus_per_node=2), node_limit=2)
    p = save_trace(tr, tmp_path / "t.npz")
    with np.load(p) as z:
        cols = {k: z[k] for k in z.files}
    cols["node_ids"] = cols["node_ids"] * 0
    np.savez(tmp_path / "bad.npz", **cols)
    with pytest.raises(ValueError, match="node_ids"):
        read_npz_trace(tmp_path / "bad.npz")


def test_eplb_round_trip(tmp_path):
    w = np.random.default_rng(0).integers(0, 1000, size=(5, 64))
    p = write_eplb_json(w, tmp_path / "w.json")
    assert json.loads(p.read_text())["weight"] == w.tolist()
    tr = load_trace(p)
    assert tr.n_experts == 64 and np.array_equal(tr.loads(), w)
    p2 = write_eplb_json(tr.loads(), tmp_path / "w2.json")
    assert p2.read_text() == p.read_text()
    st = trace_stats(tr)
    assert st["expert_load_max_over_mean_by_layer"] == pytest.approx(list(w.max(1) / w.mean(1)))


def test_sglang_round_trip_and_export(tmp_path):
    steps = np.random.default_rng(1).integers(0, 50, size=(7, 4, 32))
    p = write_sglang_pt(steps, tmp_path / "dump.pt")
    tr = read_sglang_pt(p)
    assert np.array_equal(tr.loads(), steps.sum(0)) and np.array_equal(tr.step_counts, steps)
    e = write_eplb_json(tr.loads(), tmp_path / "e.json")
    assert np.array_equal(load_loads(e), steps.sum(0))
    # a 2-D logical_count is accepted as [layers, experts]
    torch.save({"logical_count": torch.tensor(steps[0])}, tmp_path / "two_d.pt")
    assert np.array_equal(load_loads(tmp_path / "two_d.pt"), steps[0])


def test_bad_files(tmp_path):
    (tmp_path / "x.json").write_text('{"phy2log": []}')
    with pytest.raises(ValueError, match="weight"):
        load_trace(tmp_path / "x.json")
    torch.save({"counts": torch.zeros(2, 2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="logical_count"):
        load_trace(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="unknown trace format"):
        (tmp_path / "x.csv").write_text("1")
        load_trace(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "missing.npz")
