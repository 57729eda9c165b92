"""The engine inside a caller's simpy Environment (the NOTES.md recipe): EP + p2p + compute share one network."""

from __future__ import annotations

import pytest
import simpy

from dsv3sim.sim import FlowNetwork, Gpu, ep_counts, simulate_ep, start_collective, start_ep, uniform_routing
from dsv3sim.topology import load_topology


def test_ep_inside_callers_env_matches_one_shot_and_slows_compute():
    topo = load_topology("h800-deepseek")
    routing = uniform_routing(ep=16, tokens_per_rank=128, n_experts=256, topk=8, gpus_per_node=8, max_nodes=2)
    alone = simulate_ep(topo, kind="dispatch", ep=16, routing=routing, n_experts=256, hidden=7168, n_groups=1)

    env = simpy.Environment()
    net = FlowNetwork(env, [lk.capacity for lk in topo.links])
    gpus = [Gpu(env, rank=g, n_sms=132, comm_sms=topo.cfg.comm_sms) for g in range(16)]
    counts = ep_counts(topo, tuple(range(16)), routing, 256)
    marks = {}

    def layer():
        attn = [g.compute(alone.time_s, "attn(F)") for g in gpus]
        disp = start_ep(env, net, topo, counts, kind="dispatch", hidden=7168)
        for g in gpus:
            g.comm_kernel(disp, "dispatch(F)")
        yield disp
        marks["dispatch"] = env.now
        yield env.all_of(attn)
        marks["attn"] = env.now
        yield start_collective(env, net, topo, "p2p", [0, 16], 1e6)
        marks["p2p"] = env.now

    env.process(layer())
    env.run()
    net.check_conservation()
    assert marks["dispatch"] == pytest.approx(alone.time_s, rel=1e-12)  # same flows, same network
    # compute as long as the dispatch, run beside it on 112 of 132 SMs: finishes later by 20/132 of it
    assert marks["attn"] == pytest.approx(alone.time_s * (1 + 20 / 132), rel=1e-9)
    p = topo.path(0, 16)
    assert marks["p2p"] - marks["attn"] == pytest.approx(topo.path_latency(p) + 1e6 / topo.bottleneck(0, 16),
                                                         rel=1e-12)
    assert all(g.comm_busy == pytest.approx(alone.time_s, rel=1e-12) for g in gpus)
