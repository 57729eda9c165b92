"""FlowNetwork: exact closed forms for uncontended, shared, incast and max-min cases; milestones; GPU SMs."""

from __future__ import annotations

import pytest
import simpy

from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.sim.gpu import Gpu

B = 50e9  # B/s
S = 7_000_000.0  # bytes
L = 3.7e-6  # s


def _run(caps, specs):
    """specs: (path, nbytes, latency, start) -> finish times."""
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    ends = {}

    def go(i, path, nb, lat, t0):
        if t0:
            yield env.timeout(t0)
        yield net.transfer(path, nb, lat)
        ends[i] = env.now

    for i, sp in enumerate(specs):
        env.process(go(i, *sp))
    env.run()
    net.check_conservation()
    return [ends[i] for i in range(len(specs))], net


def test_uncontended_is_latency_plus_bytes_over_bandwidth_exactly():
    (t,), _ = _run([B, 2 * B], [((0, 1), S, L, 0.0)])
    assert t == L + S / B


def test_two_flows_on_one_link_take_twice_as_long():
    (t1,), _ = _run([B], [((0,), S, 0.0, 0.0)])
    (a, b), _ = _run([B], [((0,), S, 0.0, 0.0), ((0,), S, 0.0, 0.0)])
    assert a == b == pytest.approx(2 * t1, rel=1e-12)


def test_incast_shares_the_receiver_link():
    # n senders, each on its own uplink (0..n-1), into one receiver downlink (n)
    n = 4
    ends, net = _run([B] * (n + 1), [((i, n), S, L, 0.0) for i in range(n)])
    for t in ends:
        assert t == pytest.approx(L + n * S / B, rel=1e-12)
    assert net.link_bytes[n] == pytest.approx(n * S)


def test_max_min_gives_leftover_to_the_unconstrained_flow():
    # A: s1->r, B: s2->r share r's link (B/2 each); C: s1->r2 gets the rest of s1's link (B/2), not B/3.
    caps = [B, B, B, B]  # 0 = s1 up, 1 = s2 up, 2 = r down, 3 = r2 down
    (ta, tb, tc), _ = _run(caps, [((0, 2), S, 0.0, 0.0), ((1, 2), S, 0.0, 0.0), ((0, 3), S, 0.0, 0.0)])
    assert ta == tb == tc == pytest.approx(2 * S / B, rel=1e-12)
    # with C alone on a separate uplink, A and B still halve and C runs at full speed
    (ta, tb, tc), _ = _run([B] * 5, [((0, 2), S, 0.0, 0.0), ((1, 2), S, 0.0, 0.0), ((4, 3), S, 0.0, 0.0)])
    assert tc == pytest.approx(S / B, rel=1e-12) and ta == pytest.approx(2 * S / B, rel=1e-12)


def test_late_arrival_slows_the_first_flow_from_then_on():
    # flow 1 alone for S/(2B) (half done), then shares: remaining S/2 at B/2 -> ends at S/(2B) + S/B
    (t1, t2), _ = _run([B], [((0,), S, 0.0, 0.0), ((0,), S, 0.0, S / (2 * B))])
    assert t1 == pytest.approx(S / (2 * B) + S / B, rel=1e-12)
    # flow 2 sent S/2 while sharing, then S/2 alone at B
    assert t2 == pytest.approx(t1 + S / (2 * B), rel=1e-12)


def test_milestones_fire_when_bytes_are_in():
    env = simpy.Environment()
    net = FlowNetwork(env, [B])
    end, marks = net.transfer((0,), S, L, milestones=[S / 4, S / 2])
    seen = []
    for m in marks:
        m.callbacks.append(lambda _e: seen.append(env.now))
    env.run()
    assert seen == pytest.approx([L + S / 4 / B, L + S / 2 / B], rel=1e-12)
    assert end.processed and net.n_recomputes == 2  # start and end only: milestones never recompute rates


def test_gpu_comm_partition_slows_overlapping_compute():
    env = simpy.Environment()
    g = Gpu(env, rank=0, n_sms=132, comm_sms=20)
    done = []

    def main():
        comm = env.timeout(0.5)  # a 0.5 s comm kernel from t=0
        g.comm_kernel(comm)
        yield g.compute(1.0)
        done.append(env.now)

    env.process(main())
    env.run()
    # first 0.5 s at 112/132 of full speed, the rest at full speed
    assert done[0] == pytest.approx(0.5 + (1.0 - 0.5 * 112 / 132), rel=1e-12)
    assert g.comm_busy == pytest.approx(0.5)


def test_compute_stream_is_fifo():
    env = simpy.Environment()
    g = Gpu(env, rank=0, n_sms=132, comm_sms=20)
    a, b = g.compute(1.0, "a"), g.compute(2.0, "b")
    env.run()
    assert [(s, tag, t0, t1) for s, tag, t0, t1 in g.timeline] == [("compute", "a", 0.0, 1.0),
                                                                   ("compute", "b", 1.0, 3.0)]
    assert a.processed and b.processed
