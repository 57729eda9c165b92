"""1F1B and ZB1P (ZB-H1) on a linear pipeline: one chunk per rank, stage = rank.

1F1B (PipeDream-flush; Narayanan et al., SC'21 §2.2): stage s runs min(P-1-s, M) warm-up forwards, then
alternates one forward and one unsplit backward (BW), then drains the remaining backwards. At most P
micro-batches are live on stage 0. Bubble (P-1)(F+B) with B the full backward (DualPipe README table).

ZB1P = ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, §3.1, Fig. 3 top): the backward is
split into B (input gradients, on the critical path) and W (weight gradients, movable). Same warm-up and
the same 1F1B order of F and B (so the same activation memory as 1F1B), but stage s runs its first s
steady cycles as F,B without W; the s deferred W's are run after its last B (s+1 trailing W's in all). The
later stages thereby send B's upstream early, and the earliest stages, whose tails wait on those B's,
finish sooner. Bubble (P-1)(F+B-2W) with B the full backward = (P-1)(F+B_in-W) in the paper's notation.
"""

from __future__ import annotations

from collections import deque

from dsv3sim.config.errors import ConfigError
from dsv3sim.parallel.actions import Action, Op, act
from dsv3sim.parallel.schedule import Schedule


def _check(name: str, pp: int, microbatches: int) -> None:
    if pp < 1 or microbatches < 1:
        raise ConfigError(f"{name}: needs pp >= 1 and microbatches >= 1, got pp={pp} microbatches={microbatches}")


def one_f_one_b(pp: int, microbatches: int) -> Schedule:
    _check("1f1b", pp, microbatches)
    acts: dict[int, tuple[Action, ...]] = {}
    for s in range(pp):
        warm = min(pp - 1 - s, microbatches)
        out = [act(Op("F", 0, m)) for m in range(warm)]
        f, b = warm, 0
        while f < microbatches:                          # steady state: one forward, one backward
            out += [act(Op("F", 0, f)), act(Op("BW", 0, b))]
            f, b = f + 1, b + 1
        out += [act(Op("BW", 0, m)) for m in range(b, microbatches)]   # cool-down
        acts[s] = tuple(out)
    return Schedule(name="1f1b", pp=pp, microbatches=microbatches, layout="linear", actions=acts)


def zb1p(pp: int, microbatches: int) -> Schedule:
    _check("zb1p", pp, microbatches)
    acts: dict[int, tuple[Action, ...]] = {}
    for s in range(pp):
        warm = min(pp - 1 - s, microbatches)
        steady = microbatches - warm
        defer = min(s, steady)                            # W's held back on stage s (ZB-H1)
        out = [act(Op("F", 0, m)) for m in range(warm)]
        pending: deque[int] = deque()
        for i in range(steady):
            out += [act(Op("F", 0, warm + i)), act(Op("B", 0, i))]
            pending.append(i)
            if i >= defer:
                out.append(act(Op("W", 0, pending.popleft())))
        for m in range(steady, microbatches):             # cool-down: each B followed by one W
            out.append(act(Op("B", 0, m)))
            pending.append(m)
            out.append(act(Op("W", 0, pending.popleft())))
        out += [act(Op("W", 0, m)) for m in pending]      # the deferred W's fill the tail
        acts[s] = tuple(out)
    return Schedule(name="zb1p", pp=pp, microbatches=microbatches, layout="linear", actions=acts)
