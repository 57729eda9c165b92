"""trace_stats (vectorised numpy) equals plain-Python loops (tests/trace/bruteforce.py) on random traces."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dsv3sim.trace.comm_bytes import combine_message_bytes, dispatch_message_bytes
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import RoutingTrace
from dsv3sim.trace.stats import trace_stats
from dsv3sim.trace.synth import SynthSpec, synthesize

sys.path.insert(0, str(Path(__file__).parent))
import _trace_bruteforce as bf


def _random_trace(E=32, ep=8, gpn=4, L=3, T=300, k=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.stack([np.stack([rng.choice(E, size=k, replace=False, p=None) for _ in range(T)]) for _ in range(L)])
    return RoutingTrace(n_experts=E, layers=np.arange(2, 2 + L), expert_ids=ids, seq_ids=np.arange(T) // 50,
                        positions=np.arange(T) % 50, n_group=4, layout=EpLayout(n_experts=E, ep=ep, gpus_per_node=gpn))


@pytest.mark.parametrize("ep,gpn", [(8, 4), (16, 2), (4, 4), (32, 1)])
def test_stats_equal_bruteforce(ep, gpn):
    tr = _random_trace(ep=ep, gpn=gpn, seed=ep + gpn)
    st = trace_stats(tr, hidden=7168)
    ids = tr.expert_ids.tolist()
    E = tr.n_experts
    loads = bf.loads(ids, E)
    assert st["expert_load"] == [[float(x) for x in r] for r in loads]
    moms = [bf.max_over_mean(r) for r in loads]
    assert st["expert_load_max_over_mean_by_layer"] == pytest.approx(moms, rel=1e-12)
    assert st["expert_load_max_over_mean"] == pytest.approx(max(moms), rel=1e-12)
    hist, counts, per_node = bf.nodes_per_token(ids, E, ep, gpn)
    assert st["nodes_per_token_hist"] == {str(n): hist.get(n, 0) for n in range(1, ep // gpn + 1)}
    assert st["max_nodes_per_token"] == max(counts)
    assert st["nodes_per_token_mean"] == pytest.approx(sum(counts) / len(counts), rel=1e-12)
    assert st["experts_per_node_per_token_mean"] == pytest.approx(sum(per_node) / len(per_node), rel=1e-12)
    assert st["experts_per_node_per_token_max"] == max(per_node)
    for l, layer in enumerate(ids):
        recv = [0] * ep
        for tok in layer:
            for g in {bf.gpu_of(e, E, ep) for e in tok}:
                recv[g] += 1
        assert st["gpu_recv_tokens"][l] == recv
        assert st["gpu_recv_max_over_mean_by_layer"][l] == pytest.approx(bf.max_over_mean(recv), rel=1e-12)
        nrecv = [0] * (ep // gpn)
        for tok in layer:
            for nd in {bf.node_of(e, E, ep, gpn) for e in tok}:
                nrecv[nd] += 1
        assert st["node_recv_max_over_mean_by_layer"][l] == pytest.approx(bf.max_over_mean(nrecv), rel=1e-12)
    ib = nvl = 0.0
    n = 0
    for layer in ids:
        for tok in layer:
            a, b = bf.deepep_sends_every_source(tok, E, ep, gpn)
            ib, nvl, n = ib + a, nvl + b, n + 1
    c = st["comm"]
    assert c["ib_sends_per_token_layer"] == pytest.approx(ib / n, rel=1e-12)
    assert c["nvlink_sends_per_token_layer"] == pytest.approx(nvl / n, rel=1e-12)
    msg = dispatch_message_bytes(7168, "fp8") + combine_message_bytes(7168)
    assert c["ib_bytes_per_token"] == pytest.approx(ib / n * msg * tr.n_layers, rel=1e-12)
    # MI: adjacent layers, every pair of the k x k selections of a token
    cross = []
    for l in range(len(ids) - 1):
        cross.append(bf.mutual_information_bits([(a, b) for t in range(len(ids[l])) for a in ids[l][t]
                                                 for b in ids[l + 1][t]]))
    assert st["cross_layer_mi_bits"] == pytest.approx(sum(cross) / len(cross), rel=1e-9)
    seq = tr.seq_ids.tolist()
    within = []
    for l in range(len(ids)):
        within.append(bf.mutual_information_bits([(a, b) for t in range(len(seq) - 1) if seq[t] == seq[t + 1]
                                                  for a in ids[l][t] for b in ids[l][t + 1]]))
    assert st["within_seq_mi_bits"] == pytest.approx(sum(within) / len(within), rel=1e-9)


def test_message_sizes_deepep_accounting():
    # V3: hidden 7168 -> FP8 7168 + 56 scales x 4 B = 7392 B; BF16 combine 14336 B (DeepEP README sizes)
    assert dispatch_message_bytes(7168, "fp8") == 7392
    assert dispatch_message_bytes(7168, "bf16") == 14336
    assert combine_message_bytes(7168) == 14336
    with pytest.raises(ValueError, match="fp16"):
        dispatch_message_bytes(7168, "fp16")


def test_single_node_has_no_ib_and_one_gpu_per_node_has_no_nvlink():
    tr = _random_trace(ep=4, gpn=4)
    c = trace_stats(tr, hidden=128)["comm"]
    assert c["ib_bytes_per_token"] == 0.0
    tr = _random_trace(ep=32, gpn=1)
    c = trace_stats(tr, hidden=128)["comm"]
    assert c["nvlink_bytes_per_token"] == 0.0


def test_layout_override_and_loads_only_trace():
    tr = synthesize(SynthSpec(n_experts=16, n_tokens=500, seed=3))
    assert "max_nodes_per_token" not in trace_stats(tr)
    st = trace_stats(tr, layout=EpLayout(n_experts=16, ep=16, gpus_per_node=4))
    assert 1 <= st["max_nodes_per_token"] <= 4
    lo = RoutingTrace(n_experts=16, layers=np.arange(3), load_counts=tr.loads())
    s2 = trace_stats(lo)
    assert s2["expert_load_max_over_mean"] == trace_stats(tr)["expert_load_max_over_mean"]
    assert not s2["has_tokens"] and "cross_layer_mi_bits" not in s2
