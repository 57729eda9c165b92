"""DualPipe's pipeline sends and receives as its reference posts them: which batch each transfer is in.

Source: deepseek-ai/DualPipe ``dualpipe/dualpipe.py``, ``DualPipe.step()``. Every chunk function queues its
receives (``_recv_forward`` / ``_recv_backward``) and, after computing, its sends (``_send_forward`` /
``_send_backward``) in ``comm_ops``; ``_commit_and_wait_comm`` (called before every compute and every W, and
once at the end of the step) posts the queued ops as one ``dist.batch_isend_irecv`` and waits for all of them.
Some receives are queued one compute early and some sends deferred (phases 2-4), which is what keeps the
blocking batches deadlock-free.

A batch completes only when every op in it has been matched: NCCL transfers a large message only once both
ends have posted it, so a rank waits not only for the data it needs but also for each receiver of its sends
to reach the batch holding the matching receive. ``batches(schedule)`` replays ``step()`` for every rank and
returns, per rank, the batch committed before each of its actions (index i) and the final one (index n):
lists of (``"send"`` | ``"recv"``, tensor key, peer rank); a key names one activation or gradient of one
micro-batch between two stages, so a send and its receive carry the same key. The replay's compute order is
checked against the schedule's action list.
"""

from __future__ import annotations

from dsv3sim.parallel.schedule import Schedule

Key = tuple[str, int, int, int]  # (F | B, direction (= chunk), micro-batch, sending stage)
CommOp = tuple[str, Key, int]  # (send | recv, key, peer rank)


class _Replay:
    """One rank's ``DualPipe.step()``: queued comm ops, batches before each compute, compute kinds in order."""

    def __init__(self, s: Schedule, rank: int) -> None:
        self.s, self.r, self.pp = s, rank, s.pp
        self.flip = int(rank >= s.pp // 2)
        self.ops: list[CommOp] = []
        self.batches: list[list[CommOp]] = [[]]
        self.kinds: list[str] = []
        self.n = {k: [0, 0] for k in ("rf", "sf", "rb", "sb")}  # per direction: receives / sends of F / B so far

    def _stage(self, c: int) -> int:
        return self.s.stage_of(self.r, c)

    def _peer(self, c: int, toward_end: bool) -> int:
        # direction 0 flows rank 0 -> pp-1, direction 1 flows pp-1 -> 0
        step = 1 if (c == 0) == toward_end else -1
        return self.r + step

    def _next(self, counter: str, c: int) -> int:
        v = self.n[counter][c]
        self.n[counter][c] += 1
        return v

    def recv_f(self, phase: int) -> None:
        c = phase ^ self.flip
        if self._stage(c) == 0:
            return
        self.ops.append(("recv", ("F", c, self._next("rf", c), self._stage(c) - 1), self._peer(c, False)))

    def send_f(self, phase: int) -> None:
        c = phase ^ self.flip
        if self._stage(c) == self.pp - 1:
            return
        self.ops.append(("send", ("F", c, self._next("sf", c), self._stage(c)), self._peer(c, True)))

    def recv_b(self, phase: int) -> None:
        c = phase ^ self.flip
        if self._stage(c) == self.pp - 1:
            return
        self.ops.append(("recv", ("B", c, self._next("rb", c), self._stage(c) + 1), self._peer(c, True)))

    def send_b(self, phase: int) -> None:
        c = phase ^ self.flip
        if self._stage(c) == 0:
            return
        self.ops.append(("send", ("B", c, self._next("sb", c), self._stage(c)), self._peer(c, False)))

    def commit(self) -> None:
        self.batches[-1].extend(self.ops)
        self.ops = []

    def compute(self, kind: str) -> None:
        self.kinds.append(kind)
        self.batches.append([])

    # the reference's chunk functions
    def forward_chunk(self, phase: int, recv: bool = True, send: bool = True) -> None:
        if recv:
            self.recv_f(phase)
        self.commit()
        self.compute("F")
        if send:
            self.send_f(phase)

    def backward_chunk(self, phase: int, recv: bool = True, send: bool = True) -> None:
        if recv:
            self.recv_b(phase)
        self.commit()
        self.compute("B")
        if send:
            self.send_b(phase)

    def forward_backward_chunk(self, p0: int, p1: int, recv0: bool = True) -> None:
        if recv0:
            self.recv_f(p0)
        self.recv_b(p1)
        self.commit()
        self.compute("F&B")
        self.send_f(p0)
        self.send_b(p1)

    def weight_chunk(self) -> None:
        self.commit()
        self.compute("W")

    def step(self) -> None:
        """``DualPipe.step()`` phases 1-8 (module docstring source), communication and compute order only."""
        half = self.pp // 2
        h = min(self.r, self.pp - 1 - self.r)
        middle = self.r in (half - 1, half)
        half_chunks = self.s.microbatches // 2
        for _ in range((half - h - 1) * 2):
            self.forward_chunk(0)
        self.recv_f(0)
        for i in range(h + 1):
            self.forward_chunk(0, recv=False, send=middle)
            self.recv_f(0)
            self.forward_chunk(1, send=(not middle) or (i < h))
            if not middle:
                self.send_f(0)
        for _ in range(half - h - 1):
            self.backward_chunk(1)
            self.recv_f(1)
            self.weight_chunk()
            self.forward_chunk(1, recv=False)
        for i in range(half_chunks - self.pp + h + 1):
            if i == 0:
                if middle:
                    self.forward_chunk(0, recv=False, send=False)
                    self.send_f(1)
                    self.backward_chunk(1, send=False)
                    self.send_f(0)
                    self.send_b(1)
                else:
                    self.forward_backward_chunk(0, 1, recv0=False)
            else:
                self.forward_backward_chunk(0, 1)
            self.forward_backward_chunk(1, 0)
        for _ in range(half - h - 1):
            self.backward_chunk(1)
            self.forward_backward_chunk(1, 0)
        for _ in range(h + 1):
            self.backward_chunk(1)
            self.backward_chunk(0)
        for _ in range(half - h - 1):
            self.weight_chunk()
            self.backward_chunk(0)
        for _ in range(h + 1):
            self.weight_chunk()
        self.commit()


def batches(s: Schedule) -> dict[int, list[list[CommOp]]]:
    """Per rank: the comm batch committed before each action (index i) and at the end (index n). DualPipe only
    (``layout == "bidirectional"``); ValueError if the replay and the action list disagree."""
    if s.layout != "bidirectional":
        raise ValueError(f"DualPipe's send/receive batches need a DualPipe schedule, got {s.name} ({s.layout})")
    out = {}
    for r, acts in s.actions.items():
        rp = _Replay(s, r)
        rp.step()
        mine = ["F&B" if a.is_pair else ("B" if a.ops[0].kind in ("B", "BW") else a.ops[0].kind) for a in acts]
        if rp.kinds != mine:
            raise ValueError(f"rank {r}: DualPipe replay computes {len(rp.kinds)} chunks that differ from the "
                             f"schedule's {len(mine)} actions")
        out[r] = rp.batches
    return out
