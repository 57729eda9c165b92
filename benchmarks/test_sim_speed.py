"""Speed of the discrete-event network simulator (``dsv3sim.sim``): the EP64 all-to-all of DeepSeek-V3's
pre-training on the 2048-GPU H800 topology (32 EP64 groups that share no link, simulated once: exact,
``sim/ep_run.py``), and the same reduction against the unreduced run on a 512-GPU slice."""

from __future__ import annotations

import pytest

from dsv3sim.sim.ep_run import simulate_ep
from dsv3sim.sim.routing import uniform_routing
from dsv3sim.topology import load_topology


@pytest.fixture(scope="module")
def topo():
    return load_topology("h800-deepseek")


def test_load_topology_2048_gpus(cold):
    t = cold(lambda: load_topology("h800-deepseek"), rounds=3)
    assert t.n_gpus == 2048


def test_ep64_dispatch_combine_4096_tokens_2048_gpus(cold, topo):
    """V3 pre-training's all-to-all of one micro-batch: 4096 tokens per rank, top-8 of 256 experts, M = 4."""

    def ep64():
        r = uniform_routing(ep=64, tokens_per_rank=4096, n_experts=256, topk=8, gpus_per_node=8, max_nodes=4, seed=0)
        return [simulate_ep(topo, kind=k, ep=64, routing=r, n_experts=256, chunks=8) for k in ("dispatch", "combine")]

    d, c = cold(ep64, rounds=3)
    assert 0 < d.time_s < c.time_s  # combine moves BF16, dispatch FP8


@pytest.mark.slow
def test_ep64_unreduced_512_gpus(cold, topo):
    """Eight EP64 groups simulated flow by flow (no group reduction): the simulator's raw event rate."""
    r = uniform_routing(ep=64, tokens_per_rank=1024, n_experts=256, topk=8, gpus_per_node=8, max_nodes=4, seed=1)
    full = cold(lambda: simulate_ep(topo, kind="dispatch", ep=64, routing=r, n_experts=256, n_groups=8, chunks=8,
                                    reduce=False), rounds=1)
    red = simulate_ep(topo, kind="dispatch", ep=64, routing=r, n_experts=256, n_groups=8, chunks=8)
    assert red.time_s == pytest.approx(full.time_s, rel=1e-12)
