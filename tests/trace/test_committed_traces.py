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


def test_captured_trace_stats_equal_bruteforce():
    """The committed capture from the trained tiny model: stats by numpy == stats by plain loops (first 1500 tokens)."""
    import sys

    from dsv3sim.trace.routing_trace import RoutingTrace

    sys.path.insert(0, str(Path(__file__).parent))
    import _trace_bruteforce as bf

    full = load_trace(TRACES / "tiny_aux-free_ep8_nl2.npz")
    assert full.meta["source"] == "capture" and full.meta["checkpoint"]
    tr = RoutingTrace(n_experts=full.n_experts, layers=full.layers, expert_ids=full.expert_ids[:, :1500],
                      seq_ids=full.seq_ids[:1500], n_group=full.n_group, layout=full.layout,
                      node_limit=full.node_limit, meta=full.meta)
    st = trace_stats(tr)
    ids, E, lay = tr.expert_ids.tolist(), tr.n_experts, tr.layout
    loads = bf.loads(ids, E)
    assert st["expert_load"] == [[float(x) for x in r] for r in loads]
    assert st["expert_load_max_over_mean"] == pytest.approx(max(bf.max_over_mean(r) for r in loads))
    hist, counts, per_node = bf.nodes_per_token(ids, E, lay.ep, lay.gpus_per_node)
    assert st["nodes_per_token_hist"] == {str(n): hist.get(n, 0) for n in range(1, lay.n_nodes + 1)}
    assert st["max_nodes_per_token"] == max(counts) <= tr.node_limit
    assert st["experts_per_node_per_token_mean"] == pytest.approx(sum(per_node) / len(per_node))
    sends = [bf.deepep_sends_every_source(t, E, lay.ep, lay.gpus_per_node) for layer in ids for t in layer]
    assert st["comm"]["ib_sends_per_token_layer"] == pytest.approx(sum(s[0] for s in sends) / len(sends))
    assert st["comm"]["nvlink_sends_per_token_layer"] == pytest.approx(sum(s[1] for s in sends) / len(sends))


def test_committed_training_imbalance_series():
    """The committed series comes from three real tiny-model runs; without balancing the load ends worst."""
    import json

    d = json.loads((TRACES / "train_imbalance_tiny.json").read_text())
    runs = {r["balance"]: r for r in d["runs"]}
    assert set(runs) == {"aux-free", "aux-loss", "none"}
    assert all(r["config"] == "tiny" and len(r["step"]) == 250 for r in runs.values())
    end = {b: r["final_max_over_mean_worst_windowed"] for b, r in runs.items()}
    assert end["none"] > 2 * end["aux-free"] and end["none"] > 2 * end["aux-loss"]
