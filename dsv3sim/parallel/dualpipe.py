"""DualPipe and DualPipeV action lists, following the phase structure of DeepSeek's reference schedule.

Source: deepseek-ai/DualPipe ``dualpipe/dualpipe.py`` and ``dualpipe/dualpipev.py``, ``step()``; DeepSeek-V3
technical report §3.2.1 (Fig. 5). Each rank runs eight phases whose lengths depend on its distance from the
pipeline ends. For DualPipe with P ranks, M micro-batches (M/2 per direction), half = P/2,
h = min(r, P-1-r) and "local phase" p (p=0 is the rank's own direction: forward pipeline on the first half
of the ranks, reverse pipeline on the second half; chunk = p xor [r >= P/2]):

  1 nF0        (half-h-1)*2      F(p0)
  2 nF0F1      h+1               F(p0) F(p1)
  3 nB1W1F1    half-h-1          B(p1) W(p1) F(p1)            zero-bubble split backward
  4 nF0B1F1B0  M/2-P+h+1         F(p0)&BW(p1)  F(p1)&BW(p0)   overlapped pairs (first pair of the two
                                                             middle ranks runs unoverlapped: F(p0), BW(p1))
  5 nB1F1B0    half-h-1          BW(p1)  F(p1)&BW(p0)
  6 nB1B0      h+1               B(p1) B(p0); the second half of these run split (B, W later), the first
                                 half unsplit (BW); the switch is at i = (h+1)//2, before B(p1) if h is
                                 odd, between B(p1) and B(p0) if h is even
  7 nWB0       half-h-1          W  B(p0)                     split
  8 nW         h+1               W
W's run in FIFO order of their B's (the reference's WeightGradStore queue).

DualPipeV is the same with P ranks standing for 2P stages: half -> P, h -> r, M/2 -> M, and chunk = p.
The overlapped pair's backward is unsplit (BW): the reference runs it with weight-gradient deferral off.
"""

from __future__ import annotations

from collections import deque

from dsv3sim.config.errors import InfeasibleError
from dsv3sim.parallel.actions import Action, Op, act
from dsv3sim.parallel.schedule import Schedule


class _Rank:
    """Emits one rank's ops with per-chunk forward/backward counters and a FIFO of deferred W's."""

    def __init__(self, flip: int) -> None:
        self.flip = flip
        self.nf = [0, 0]
        self.nb = [0, 0]
        self.w: deque[Op] = deque()
        self.out: list[Action] = []

    def _f(self, p: int) -> Op:
        c = p ^ self.flip
        op = Op("F", c, self.nf[c])
        self.nf[c] += 1
        return op

    def _b(self, p: int, split: bool) -> Op:
        c = p ^ self.flip
        op = Op("B" if split else "BW", c, self.nb[c])
        self.nb[c] += 1
        if split:
            self.w.append(Op("W", c, op.mb))
        return op

    def f(self, p: int) -> None:
        self.out.append(act(self._f(p)))

    def b(self, p: int, split: bool = False) -> None:
        self.out.append(act(self._b(p, split)))

    def fb(self, p_f: int, p_b: int) -> None:
        self.out.append(act(self._f(p_f), self._b(p_b, split=False)))

    def weight(self) -> None:
        self.out.append(act(self.w.popleft()))


def _phases(em: _Rank, half: int, h: int, half_chunks: int, n_ranks_for_step4: int, middle: bool) -> None:
    """The eight phases of DualPipe.step / DualPipeV.step for one rank (see module docstring)."""
    for _ in range((half - h - 1) * 2):                  # 1: nF0
        em.f(0)
    for _ in range(h + 1):                               # 2: nF0F1
        em.f(0)
        em.f(1)
    for _ in range(half - h - 1):                        # 3: nB1W1F1
        em.b(1, split=True)
        em.weight()
        em.f(1)
    for i in range(half_chunks - n_ranks_for_step4 + h + 1):   # 4: nF0B1F1B0
        if i == 0 and middle:                            # the reference does not overlap this first pair
            em.f(0)
            em.b(1)
        else:
            em.fb(0, 1)
        em.fb(1, 0)
    for _ in range(half - h - 1):                        # 5: nB1F1B0
        em.b(1)
        em.fb(1, 0)
    split = False
    n6 = h + 1
    for i in range(n6):                                  # 6: nB1B0, second half split
        if i == n6 // 2 and h % 2 == 1:
            split = True
        em.b(1, split)
        if i == n6 // 2 and h % 2 == 0:
            split = True
        em.b(0, split)
    for _ in range(half - h - 1):                        # 7: nWB0
        em.weight()
        em.b(0, split=True)
    for _ in range(h + 1):                               # 8: nW
        em.weight()
    assert not em.w, f"deferred W's left over: {list(em.w)}"


def dualpipe(pp: int, microbatches: int) -> Schedule:
    if pp < 2 or pp % 2 or microbatches % 2 or microbatches < 2 * pp:
        raise InfeasibleError(f"dualpipe needs an even pp >= 2 and an even microbatches >= 2*pp "
                         f"(deepseek-ai/DualPipe dualpipe.py asserts), got pp={pp} microbatches={microbatches}")
    half = pp // 2
    acts = {}
    for r in range(pp):
        em = _Rank(flip=int(r >= half))
        h = min(r, pp - 1 - r)
        _phases(em, half, h, microbatches // 2, pp, middle=r in (half - 1, half))
        acts[r] = tuple(em.out)
    return Schedule(name="dualpipe", pp=pp, microbatches=microbatches, layout="bidirectional", actions=acts)


def dualpipev(pp: int, microbatches: int) -> Schedule:
    """``pp`` ranks = 2*pp stages (the DualPipe README counts PP in stages: PP/2 devices)."""
    if pp < 1 or microbatches < 2 * pp:
        raise InfeasibleError(f"dualpipev needs pp >= 1 ranks and microbatches >= 2*pp (deepseek-ai/DualPipe "
                         f"dualpipev.py asserts), got pp={pp} microbatches={microbatches}")
    acts = {}
    for r in range(pp):
        em = _Rank(flip=0)
        _phases(em, pp, r, microbatches, 2 * pp, middle=r == pp - 1)
        acts[r] = tuple(em.out)
    return Schedule(name="dualpipev", pp=pp, microbatches=microbatches, layout="v", actions=acts)
