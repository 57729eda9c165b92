"""DualPipe's send/receive batches (parallel/dualpipe_p2p.py): the replay of the reference's step() computes the
schedule's own action list, every send has exactly one matching receive, and the executor's rendezvous rule
is deadlock-free, never earlier than the data dependencies alone, and binds when a receiver is slow."""
from __future__ import annotations

from collections import Counter

import pytest

from dsv3sim.parallel import ChunkTimes, execute, generate
from dsv3sim.parallel.dualpipe_p2p import batches


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 10), (8, 16), (8, 20), (16, 120)])
def test_replay_matches_schedule_and_every_send_meets_one_receive(pp, m):
    s = generate("dualpipe", pp, m)
    b = batches(s)
    for r, bs in b.items():
        assert len(bs) == len(s.actions[r]) + 1  # one before each action, one at the end of the step
    sends = Counter((r, peer, key) for r, bs in b.items() for bt in bs for k, key, peer in bt if k == "send")
    recvs = Counter((peer, r, key) for r, bs in b.items() for bt in bs for k, key, peer in bt if k == "recv")
    assert sends == recvs and all(v == 1 for v in sends.values())
    # per direction, (pp - 1) activations and (pp - 1) gradients cross the pipeline per micro-batch
    assert len(sends) == 2 * (pp - 1) * m


def test_batches_need_a_dualpipe_schedule():
    with pytest.raises(ValueError, match="DualPipe"):
        batches(generate("1f1b", 4, 8))


@pytest.mark.parametrize("pp,m", [(4, 8), (8, 20)])
def test_rendezvous_executes_and_is_never_faster(pp, m):
    s = generate("dualpipe", pp, m)
    t = ChunkTimes(f=1.0, b=2.0, w=0.5, fb=2.5)
    plain = execute(s, t, p2p_latency=0.01)
    rv = execute(s, t, p2p_latency=0.01, p2p_batches=batches(s))
    assert rv.makespan >= plain.makespan - 1e-9
    for r in s.actions:
        assert all(a.start >= b.start - 1e-9 for a, b in zip(rv.spans[r], plain.spans[r]))


def test_slow_receiver_holds_its_sender():
    """Rank 1 is 3x slower: under the rendezvous rank 0 waits for rank 1 to post its receives, so rank 0's
    actions start no earlier, and some strictly later, than with data dependencies alone."""
    s = generate("dualpipe", 4, 8)

    def times(rank, a):
        base = {"F": 1.0, "B": 1.5, "W": 0.5, "BW": 2.0}
        d = sum(base[o.kind] for o in a.ops) * (0.8 if a.is_pair else 1.0)
        return d * (3.0 if rank == 1 else 1.0)

    plain = execute(s, times, p2p_latency=0.0)
    rv = execute(s, times, p2p_latency=0.0, p2p_batches=batches(s))
    later = [a.start - b.start for a, b in zip(rv.spans[0], plain.spans[0])]
    assert min(later) >= -1e-9 and max(later) > 0.1
