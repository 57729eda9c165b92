"""Node-limited dispatch plan: hand-counted example, agreement with dsv3sim.trace's expectations, replicas."""

from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.parallel import dispatch_plan, gpu_loads_after, rebalance_experts, source_ranks
from dsv3sim.trace.comm_bytes import expected_sends
from dsv3sim.trace.layout import EpLayout


def test_hand_counted_token():
    """16 experts on 8 GPUs (2 per GPU), 4 GPUs per node, 2 nodes. A token on GPU 1 (node 0, local 1) picks
    experts 2 (GPU 1, itself), 3 (GPU 1 again), 6 (GPU 3, node 0), 9 (GPU 4, node 1), 11 (GPU 5, node 1).
    IB: one message, to node 1's relay GPU 5 (local index 1). NVLink: source -> GPU 3 on node 0; relay 5 ->
    GPU 4 on node 1 (GPU 5 is the relay itself). So 1 IB send and 2 NVLink sends."""
    p = dispatch_plan([[2, 3, 6, 9, 11]], [1], np.arange(16), n_gpus=8, gpus_per_node=4, hidden=7168)
    assert p.target_gpu.tolist() == [[1, 1, 3, 4, 5]]
    assert p.target_nodes.tolist() == [[True, True]]
    assert p.ib_sends.tolist() == [1] and p.nvlink_sends.tolist() == [2]
    assert p.ib_send_matrix.tolist() == [[0, 1], [0, 0]]
    assert p.dispatch_bytes == 7168 + 56 * 4 and p.combine_bytes == 2 * 7168     # V3 §3.3.4 FP8 / BF16
    assert p.ib_bytes["total"] == 7168 + 224 + 14336
    assert p.tokens_per_gpu.tolist() == [0, 1, 0, 1, 1, 1, 0, 0]
    assert p.slots_per_gpu.tolist() == [0, 2, 0, 1, 1, 1, 0, 0]


def test_exact_counts_average_to_the_trace_expectation():
    """Two routes: exact per-source counts, averaged over every source GPU, equal dsv3sim.trace.comm_bytes'
    closed-form expectations (source uniform over the EP group)."""
    rng = np.random.default_rng(0)
    E, k, U, gpn, T = 64, 8, 16, 4, 300
    ids = np.stack([rng.choice(E, k, replace=False) for _ in range(T)])
    ib_e, nvl_e, _ = expected_sends(ids[None], EpLayout(n_experts=E, ep=U, gpus_per_node=gpn))
    ib, nvl = np.zeros(T), np.zeros(T)
    for s in range(U):
        p = dispatch_plan(ids, np.full(T, s), np.arange(E), n_gpus=U, gpus_per_node=gpn)
        ib += p.ib_sends
        nvl += p.nvlink_sends
    assert np.allclose(ib / U, ib_e[0]) and np.allclose(nvl / U, nvl_e[0])


def test_spread_splits_load_evenly_over_replicas_and_nearest_stays_local():
    rng = np.random.default_rng(1)
    E, U, gpn, T, k = 16, 8, 4, 4000, 4
    load = np.r_[np.full(4, 10.0), np.ones(E - 4)]
    ids = np.stack([rng.choice(E, k, replace=False, p=load / load.sum()) for _ in range(T)])
    w = np.bincount(ids.reshape(-1), minlength=E)[None].astype(float)
    phy2log, _, logcnt = rebalance_experts(w, 24, 1, 1, U)
    src = source_ranks(T, U)
    spread = dispatch_plan(ids, src, phy2log[0], n_gpus=U, gpus_per_node=gpn, choice="spread")
    per_phy = np.bincount(spread.target_phy.reshape(-1), minlength=24)
    for e in range(E):
        got = per_phy[phy2log[0] == e]
        assert got.max() - got.min() <= 1                     # round-robin over replicas
    near = dispatch_plan(ids, src, phy2log[0], n_gpus=U, gpus_per_node=gpn, choice="nearest")
    assert near.ib_sends.sum() <= spread.ib_sends.sum()
    # the (token, expert) work per GPU is what EPLB predicts from load / logcnt, up to rounding per replica
    predicted = gpu_loads_after(w, phy2log, logcnt, U)[0]
    assert np.abs(spread.slots_per_gpu - predicted).max() <= 3


def test_source_ranks_and_errors():
    assert source_ranks(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source_ranks(5, 2, "cyclic").tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="expert ids must lie in 0..15"):
        dispatch_plan([[16]], [0], np.arange(16), n_gpus=8, gpus_per_node=4)
    with pytest.raises(ValueError, match="replicas \\(16\\) % gpus \\(6\\)"):
        dispatch_plan([[1]], [0], np.arange(16), n_gpus=6, gpus_per_node=3)
