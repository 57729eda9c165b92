"""Routing inputs: dsv3sim.trace's .npz traces and plain expert-id arrays both load into [ep, N, k]."""

from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.sim.routing import load_routing


def test_dsv3sim_trace_npz_loads(tmp_path):
    from dsv3sim.trace.routing_trace import save_trace
    from dsv3sim.trace.synth import SynthSpec, synthesize

    tr = synthesize(SynthSpec(n_layers=2, n_experts=32, topk=4, n_tokens=40, seed=0))
    p = save_trace(tr, tmp_path / "t.npz")
    r = load_routing(p, ep=4, tokens_per_rank=20, layer=1)
    assert r.shape == (4, 20, 4)
    ids = np.asarray(tr.expert_ids[1])
    assert np.array_equal(r.reshape(-1, 4)[:40], ids)  # rank s takes rows s*N.. (80 rows wrap the 40)
    assert np.array_equal(r.reshape(-1, 4)[40:], ids)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".txt", ".csv"])
def test_plain_arrays_load(tmp_path, suffix):
    ids = np.arange(24).reshape(6, 4) % 16
    p = tmp_path / f"ids{suffix}"
    if suffix == ".npy":
        np.save(p, ids)
    elif suffix == ".npz":
        np.savez(p, topk_idx=ids)
    else:
        np.savetxt(p, ids, fmt="%d", delimiter="," if suffix == ".csv" else " ")
    r = load_routing(p, ep=2, tokens_per_rank=3)
    assert np.array_equal(r.reshape(6, 4), ids)


def test_missing_trace_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_routing(tmp_path / "nope.npy", ep=2, tokens_per_rank=3)
