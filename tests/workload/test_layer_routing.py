"""Per-MoE-layer routing: each layer's loads come from its own trace layer, its all-to-all from its own bound,
and one routing reproduces the single-layer behaviour."""
from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import save_trace
from dsv3sim.trace.synth import SynthSpec, synthesize
from dsv3sim.workload import comm as C
from dsv3sim.workload import layer_routing as LR
from dsv3sim.workload import simulate


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    """3 MoE layers of V2-Lite shape (64 experts, top-6), Zipf-skewed with a different hot set per layer."""
    spec = SynthSpec(n_layers=3, n_experts=64, topk=6, n_tokens=2048, seq_len=256, zipf_s=1.1, seed=3)
    tr = synthesize(spec, EpLayout(n_experts=64, ep=16, gpus_per_node=8), node_limit=2)
    return str(save_trace(tr, tmp_path_factory.mktemp("tr") / "v2lite_3layers.npz"))


def _scn(small, trace, routing_layers=None, placement="contiguous"):
    return small.with_(workload={"routing_trace": trace, "routing_layers": routing_layers, "placement": placement})


def test_each_moe_layer_gets_its_trace_layer(small_training, trace_path):
    r = simulate(_scn(small_training, trace_path))
    logical = np.array(r.expert_load_logical)
    assert logical.shape == (3, 64) and r.nodes_per_token.routing_layers == 3
    # second route: the selections of trace layer l, tiled to the EP group's tokens, counted directly
    ids = np.load(trace_path)["expert_ids"]
    n_tok = 16 * r.parallel["micro_batch_tokens"]
    for layer in range(3):
        rows = ids[layer][np.arange(n_tok) % ids.shape[1]]
        assert logical[layer].tolist() == np.bincount(rows.ravel(), minlength=64).tolist()
    assert len({tuple(x) for x in logical.tolist()}) == 3  # the layers really differ
    before = np.array(r.expert_load_before)
    assert before.shape == (3, 16) and np.allclose(before.sum(axis=1), logical.sum(axis=1))


def test_layer_all_to_all_is_its_own_bound(small_training, trace_path, monkeypatch):
    """comm_model='bound': every dispatch(F) slice in the timeline lasts its own layer's busiest-link bound (the
    transfer alone: DeepEP's notify/layout and the co-run slowdown, tested in test_production_step, switched off)."""
    from dsv3sim.topology import load_topology
    from dsv3sim.workload import deepep_overheads as DO

    monkeypatch.setattr(DO, "comm_slices", lambda transfer, compute, **kw: dict(transfer))

    s = _scn(small_training, trace_path)
    r = simulate(s)
    lr = LR.layer_routing(tuple(sorted(C_key(s).items())), {i: i for i in range(3)}, None)
    topo = load_topology(s.topology)
    lat = topo.cfg.kernel_latency
    want = {round(C.ep_link_bound(topo, k, kind="dispatch", mode="normal", dtype="fp8", hidden=2048)[0] + lat, 12)
            for k in lr.keys}
    got = {round(e["end_s"] - e["start_s"], 12) for e in r.timeline["events"] if e["name"] == "dispatch(F)"}
    assert len(want) == 3 and got == want


def C_key(s):
    w = s.workload
    from dsv3sim.config.model import load_model_config
    from dsv3sim.topology import load_topology

    cfg = load_model_config(s.model)
    T = w.micro_batch_sequences * w.seq_len
    return {"n_experts": cfg.n_routed_experts, "topk": cfg.num_experts_per_tok, "ep": s.parallel.ep,
            "gpus_per_node": load_topology(s.topology).cfg.gpus_per_node, "tokens_per_rank": T,
            "node_limit": w.node_limit, "trace": w.routing_trace, "placement": w.placement,
            "redundant": w.redundant_experts, "seed": s.seed, "n_group": cfg.n_group}


def test_one_routing_is_layer_zero_everywhere(small_training, trace_path):
    one = simulate(_scn(small_training, trace_path, routing_layers=1))
    per = simulate(_scn(small_training, trace_path))
    assert len(np.array(one.expert_load_logical).shape) == 1
    assert one.expert_load_logical == per.expert_load_logical[0]
    # the skewed layers 1-2 have their own (busier or not) expert rows: the step changes
    assert one.step_time_s != pytest.approx(per.step_time_s, rel=1e-9)


def test_uniform_routing_keeps_one_routing_unless_asked(small_training):
    r = simulate(small_training)
    assert np.array(r.expert_load_logical).ndim == 1
    r2 = simulate(small_training.with_(workload={"routing_layers": 2}))
    assert np.array(r2.expert_load_logical).shape == (2, 64)


def test_routing_layers_is_validated(small_training):
    with pytest.raises(ValueError, match="routing_layers must be >= 1"):
        small_training.with_(workload={"routing_layers": 0})


def test_identical_layers_reduce_to_one_routing(small_training, trace_path, tmp_path):
    """A trace whose 3 layers are the same routing: per-layer machinery == one routing (step, links, loads)."""
    one_layer = np.load(trace_path)["expert_ids"][0]
    same = tmp_path / "same3.npy"
    np.save(same, np.stack([one_layer] * 3))
    per = simulate(_scn(small_training, str(same)))
    one = simulate(_scn(small_training, str(same), routing_layers=1))
    assert np.array(per.expert_load_logical).shape == (3, 64)
    assert per.step_time_s == pytest.approx(one.step_time_s, rel=1e-12)
    assert per.ib_utilisation == pytest.approx(one.ib_utilisation, rel=1e-12)
    assert per.nvlink_utilisation == pytest.approx(one.nvlink_utilisation, rel=1e-12)
