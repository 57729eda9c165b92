"""The chunk model against closed forms: a lone chain is the sum of its slices; an overlapped pair whose
communication is shorter than the other chunk's compute hides it completely."""
from __future__ import annotations

import itertools
import signal

import pytest

from dsv3sim.workload.overlap import run_chunks

LAYER = {"attn(F)": 1.0, "dispatch(F)": 0.3, "mlp(F)": 2.0, "combine(F)": 0.4, "combine(B)": 0.4, "mlp(B)": 2.0,
         "mlp(W)": 2.0, "dispatch(B)": 0.3, "attn(B)": 1.5, "attn(W)": 1.0}
FWD = ("attn(F)", "dispatch(F)", "mlp(F)", "combine(F)")
BWD = ("combine(B)", "mlp(B)", "dispatch(B)", "attn(B)")


def test_lone_forward_is_sum_of_slices():
    r = run_chunks([("F", [LAYER] * 3)])
    assert r.time_s == pytest.approx(3 * sum(LAYER[k] for k in FWD))
    assert r.exposed_comm_s == pytest.approx(3 * (0.3 + 0.4))


def test_lone_backward_and_w():
    b = run_chunks([("B", [LAYER] * 2)])
    assert b.time_s == pytest.approx(2 * sum(LAYER[k] for k in BWD))
    w = run_chunks([("W", [LAYER] * 2)])
    assert w.time_s == pytest.approx(2 * (2.0 + 1.0))
    bw = run_chunks([("BW", [LAYER] * 2)])
    # W slices run beside the chain: never longer than B + W, never shorter than the compute alone
    assert sum(LAYER[k] for k in BWD) * 2 < bw.time_s <= b.time_s + w.time_s + 1e-12


def test_pair_hides_communication_under_compute():
    r = run_chunks([("F", [LAYER] * 4), ("BW", [LAYER] * 4)])
    compute = 4 * sum(v for k, v in LAYER.items() if not k.startswith(("dispatch", "combine")))
    assert r.compute_busy_s == pytest.approx(compute)
    # first backward combine cannot be hidden (nothing else is ready at t=0 except attn(F)) -> time == compute
    assert r.time_s == pytest.approx(compute)
    names = {s.name for s in r.slices}
    assert names == set(LAYER)
    for s in r.slices:
        assert (s.stream == "comm") == s.name.startswith(("dispatch", "combine"))


def test_pair_streams_never_overlap_themselves():
    r = run_chunks([("F", [LAYER] * 3), ("BW", [LAYER] * 3)])
    for stream in ("compute", "comm"):
        sl = sorted((s.start, s.end) for s in r.slices if s.stream == stream)
        assert all(a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(sl))


def test_shared_slice_slows_only_while_the_other_stream_runs():
    """A compute slice (alone 2, beside 3) next to a comm slice of 1: it does 1/1.5 of a second's work while
    the transfer runs, the rest at full speed -> ends at 1 + (2 - 2/3) = 7/3. With the transfer as long as the
    slice it is the beside time (3); with no transfer, the alone time (2)."""
    d = {"mlp(F)": (2.0, 3.0)}
    r = run_chunks([("F", [{"mlp(F)": (2.0, 3.0)}]), ("F", [{"dispatch(F)": 1.0}])])
    mlp = next(s for s in r.slices if s.name == "mlp(F)")
    assert mlp.end - mlp.start == pytest.approx(7 / 3, rel=1e-6)
    long = run_chunks([("F", [{"mlp(F)": (2.0, 3.0)}]), ("F", [{"dispatch(F)": 10.0}])])
    assert next(s for s in long.slices if s.name == "mlp(F)").end == pytest.approx(3.0, rel=1e-6)
    assert run_chunks([("F", [d])]).time_s == pytest.approx(2.0, rel=1e-6)


def test_shared_slice_ends_at_a_clock_too_large_to_move():
    """After a 2e17 s slice (a 1e12-token prompt's attention) a 16 ms shared slice does not move the float clock
    (its spacing there is 32 s); it still ends, when its own timeout fires, and the run finishes."""
    def hang(*_):
        raise TimeoutError("run_chunks did not end: a slice waited for the clock to move")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        r = run_chunks([("F", [{"attn(F)": 2e17, "mlp(F)": (0.016, 0.02)}]), ("F", [{"dispatch(F)": 1.0}])])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert r.time_s == pytest.approx(2e17, rel=1e-12)
    assert [s.name for s in r.slices].count("mlp(F)") == 1


def test_transfer_slowed_only_beside_compute():
    """A comm slice (alone 1, beside 2) with compute 0.5 beside it: 0.25 of work in the first 0.5 s, then 0.75
    alone -> 1.25."""
    r = run_chunks([("F", [{"dispatch(F)": (1.0, 2.0)}]), ("F", [{"attn(F)": 0.5}])])
    disp = next(s for s in r.slices if s.name == "dispatch(F)")
    assert disp.end - disp.start == pytest.approx(1.25, rel=1e-4)


def test_issue_order_follows_deepseeks_launch_order():
    """In-order streams (DeepSeek's launch order of an overlapped pair, profile-data): each stream's slices run in
    pair_issue_order's order; on equal chains the first-ready rule finds the same schedule, so both agree."""
    from dsv3sim.workload.overlap import pair_issue_order

    parts = [("F", [LAYER] * 4), ("BW", [LAYER] * 4)]
    fixed = run_chunks(parts, issue_order=True)
    greedy = run_chunks(parts)
    assert fixed.time_s == pytest.approx(greedy.time_s)
    order = pair_issue_order(4, 4, with_w=True)
    for stream in ("compute", "comm"):
        want = [(c, n, i) for c, n, i in order if (n.startswith(("dispatch", "combine"))) == (stream == "comm")]
        got = [(s.chunk, s.name, s.layer) for s in sorted(fixed.slices, key=lambda s: s.start) if s.stream == stream]
        assert got == want


def test_issue_order_uneven_chains_run_every_slice_once():
    dense = {"attn(F)": 1.0, "mlp(F)": 2.0, "mlp(B)": 2.0, "mlp(W)": 2.0, "attn(B)": 1.5, "attn(W)": 1.0}
    r = run_chunks([("F", [dense] * 3), ("BW", [LAYER] * 5)], issue_order=True)
    names = [(s.chunk, s.name, s.layer) for s in r.slices]
    # the F chain runs its forward slices (2 per dense layer), the BW chain its 4 backward + 2 W slices per layer
    assert len(names) == len(set(names)) == 3 * 2 + 5 * 6
    compute = 3 * (1.0 + 2.0) + 5 * sum(v for k, v in LAYER.items() if k in ("mlp(B)", "mlp(W)", "attn(B)", "attn(W)"))
    assert r.compute_busy_s == pytest.approx(compute)
    assert r.time_s >= compute - 1e-9


def test_in_order_pair_without_simpy_gives_the_same_floats(monkeypatch):
    """The in-order pair's direct event loop (``_fast_in_order``) against the simpy model, float for float, on
    random (alone, beside) slices, equal durations (same-instant toggles) and plain floats; where it declines
    (None), run_chunks falls back to simpy."""
    import random

    from dsv3sim.workload import overlap as OV

    rng = random.Random(7)

    def layer(tie: bool, plain: bool) -> dict:
        d = {}
        for nm in OV.FWD + OV.BWD + ("mlp(W)", "attn(W)"):
            a = 1e-3 if tie else rng.uniform(2e-4, 6e-3)
            d[nm] = a if plain else (a, a * (1.0 if tie else rng.uniform(1.0, 1.6)))
        return d

    fast_used = 0
    for case in range(40):
        tie, plain = case % 5 == 0, case % 7 == 0
        nf, nb = rng.randint(1, 4), rng.randint(1, 4)
        parts = [("F", [layer(tie, plain) for _ in range(nf)]),
                 (rng.choice(("B", "BW")), [layer(tie, plain) for _ in range(nb)])]
        fast = OV._fast_in_order(*OV._issue_queues(parts, None), True)
        fast_used += fast is not None
        got = run_chunks(parts, issue_order=True)
        monkeypatch.setattr(OV, "_fast_in_order", lambda *a: None)
        ref = run_chunks(parts, issue_order=True)
        monkeypatch.undo()
        assert got == ref
        if fast is not None:
            assert fast == ref
    assert fast_used >= 30
