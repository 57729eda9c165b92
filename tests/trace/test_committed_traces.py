"""Every committed trace under traces/ loads, goes through stats, and honours its node limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsv3sim.trace import load_trace, trace_stats

TRACES = Path(__file__).resolve().parents[2] / "traces"
FILES = sorted(p for p in TRACES.glob("*") if p.suffix in (".npz", ".json", ".pt"))


def test_there_are_example_traces():
    kinds = {load_trace(p).meta.get("source") for p in FILES if p.suffix != ".json" or "weight" in p.read_text()[:20]}
    assert {"synth", "eplb"} <= kinds


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_committed_trace(path):
    assert path.stat().st_size < 2 * 1024 * 1024
    if path.suffix == ".json" and '"weight"' not in path.read_text()[:50]:
        pytest.skip("not a load file (e.g. an imbalance series)")
    tr = load_trace(path)
    st = trace_stats(tr)
    assert st["expert_load_max_over_mean"] >= 1.0
    assert np.isclose(tr.loads().sum(axis=1), tr.loads().sum(axis=1)[0]).all()  # every layer routes all tokens
    if tr.has_tokens and tr.node_limit is not None:
        # node-limited routing: no token in any layer reaches more than M nodes
        assert st["max_nodes_per_token"] <= tr.node_limit, path
        assert tr.node_ids().max() < tr.layout.n_nodes
        per_token = [len(set(row)) for row in tr.node_ids().reshape(-1, tr.topk).tolist()]
        assert max(per_token) <= tr.node_limit
