"""Run a schedule's action lists with per-chunk times: makespan, per-rank bubble, spans, activation memory.

Pure longest-path over the action DAG (no simpy: nothing is shared but the dependencies). Each rank runs its
list in order, one action at a time; an action starts at
    start = max(end of the rank's previous action,  max over its ops' dependencies d of end(d) + lat(d))
with lat(d) = ``p2p_latency`` when d ran on another rank and 0 on the same rank (the DualPipeV turn at the
last rank, a W after its B). Dependencies are those of check.py. Communication is not a resource here: a
send never delays its sender (DeepSeek overlaps PP sends with compute, V3 §3.2.1).

Times (DualPipe README conventions, so the published bubble formulas apply unchanged):
  f   forward of one chunk                      -> F
  b   FULL backward of one chunk (input+weight) -> BW = b;  B (input only) = b - w
  w   weight-gradient part of the backward      -> W  = w
  fb  an overlapped forward+backward pair "F&B" (default f + b: no overlap gain); a pair whose backward
      is split (F&B rather than F&BW) takes fb - w.
Or a callable ``times(rank, action) -> seconds`` for per-rank / per-chunk costs (the training simulator).

Bubble of a rank = makespan - its busy time. Activation memory (DualPipe README units: one micro-batch's
activations of one stage): +1 when a forward starts, -1 when its input backward (B or BW) ends; W holds
nothing extra. A pair counts its forward before its backward frees, so it peaks one above its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsv3sim.config.errors import ConfigError
from dsv3sim.parallel.actions import Action
from dsv3sim.parallel.check import run_order, slot_graph
from dsv3sim.parallel.schedule import Schedule


@dataclass(frozen=True, kw_only=True, slots=True)
class ChunkTimes:
    """Per-chunk pass times in seconds (any consistent unit works): f, full backward b, weight part w, pair fb."""

    f: float
    b: float
    w: float = 0.0
    fb: float | None = None

    def __post_init__(self) -> None:
        if min(self.f, self.b, self.w) < 0 or (self.fb is not None and self.fb < 0):
            raise ConfigError(f"chunk times must be >= 0, got f={self.f} b={self.b} w={self.w} fb={self.fb}")
        if self.w > self.b:
            raise ConfigError(f"w (weight-gradient part, {self.w}) cannot exceed b (full backward, {self.b})")

    @property
    def pair(self) -> float:
        return self.f + self.b if self.fb is None else self.fb

    def of(self, action: Action) -> float:
        d = {"F": self.f, "B": self.b - self.w, "W": self.w, "BW": self.b}
        if action.is_pair:
            split = sum(self.w for o in action.ops if o.kind == "B")
            return self.pair - split
        return d[action.ops[0].kind]


@dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    rank: int
    action: str
    category: str    # F | B | W | BW | F&B
    start: float
    end: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecResult:
    makespan: float
    busy: dict[int, float]
    bubble: dict[int, float]            # makespan - busy, per rank
    spans: dict[int, tuple[Span, ...]]  # per rank, in list order
    activation_memory: dict[int, int]   # peak, micro-batch x stage units
    param_copies: int                   # model chunks per device (stage units)

    @property
    def bubble_max(self) -> float:
        return max(self.bubble.values())

    @property
    def activation_memory_max(self) -> int:
        return max(self.activation_memory.values())

    def to_dict(self) -> dict:
        return {"makespan": self.makespan, "bubble_max": self.bubble_max,
                "bubble_per_rank": [self.bubble[r] for r in sorted(self.bubble)],
                "busy_per_rank": [self.busy[r] for r in sorted(self.busy)],
                "activation_memory": self.activation_memory_max,
                "activation_memory_per_rank": [self.activation_memory[r] for r in sorted(self.activation_memory)],
                "param_copies": self.param_copies}


def activation_peaks(s: Schedule) -> dict[int, int]:
    """Peak live micro-batch-stage activations per rank, from list order alone (see module docstring)."""
    out = {}
    for r, acts in s.actions.items():
        live = peak = 0
        for a in acts:
            live += sum(1 for o in a.ops if o.kind == "F")
            peak = max(peak, live)
            live -= sum(1 for o in a.ops if o.is_backward)
        out[r] = peak
    return out


def _cross_rank_sends(s: Schedule, graph) -> dict[int, list[int]]:
    """sends[rank][i]: how many tensors slot i of ``rank`` sends to other ranks (its cross-rank dependents)."""
    sends = {r: [0] * len(acts) for r, acts in s.actions.items()}
    for r, rows in graph.items():
        for row in rows:
            for dr, di in row:
                if dr != r:
                    sends[dr][di] += 1
    return sends


def _batch_peers(bat: dict[int, list[list]]) -> dict[int, list[list[tuple[int, int]]]]:
    """peers[rank][i]: (peer, j) for each op of rank's batch i, j the peer's batch holding the matching op."""
    where = {(p, kind, key): j for p, bs in bat.items() for j, b in enumerate(bs) for kind, key, _peer in b}
    other = {"send": "recv", "recv": "send"}
    out = {}
    for r, bs in bat.items():
        out[r] = []
        for b in bs:
            row = []
            for kind, key, peer in b:
                j = where.get((peer, other[kind], key))
                if j is None:
                    raise ValueError(f"rank {r} {kind}s {key} to rank {peer}, which never posts the matching op")
                row.append((peer, j))
            out[r].append(row)
    return out


def _duration(dur, times, r: int, a: Action) -> float:
    d = dur(a) if dur is not None else float(times(r, a))
    if d < 0:
        raise ValueError(f"time of {a} on rank {r} must be >= 0, got {d}")
    return d


class _Batches:
    """The reference's send/receive batches (``execute``'s ``p2p_batches``): when each completes."""

    def __init__(self, bat: dict[int, list[list]], end_of: dict[int, list[float]], latency: float,
                 transfer: float) -> None:
        self.bat, self.peers, self.end_of = bat, _batch_peers(bat), end_of
        self.latency, self.transfer = latency, transfer

    def order_graph(self, graph: dict) -> dict:
        """Data dependencies + each peer's previous action (its batch is posted when that ends)."""
        return {r: [rows[i] + [(p, j - 1) for p, j in self.peers[r][i] if j > 0] for i in range(len(rows))]
                for r, rows in graph.items()}

    def done(self, r: int, i: int, posted: float) -> float:
        """Completion of rank r's batch i posted at ``posted`` (peers post when their previous action ends)."""
        ops = self.bat[r][i] if i < len(self.bat[r]) else []
        if not ops:
            return posted
        t_all = max([posted] + [self.end_of[p][j - 1] if j > 0 else 0.0 for p, j in self.peers[r][i]])
        n_send = sum(1 for k, _key, _p in ops if k == "send")
        return t_all + self.latency + self.transfer * max(n_send, len(ops) - n_send)


def _p2p_rule(s: Schedule, graph, end_of: dict[int, list[float]], latency: float, transfer: float,
              bat: dict[int, list[list]] | None) -> tuple[_Batches | None, dict[int, list[int]]]:
    """How ``execute`` prices the pipeline sends: the reference's batches, or (without them) the per-action
    rule's send counts, built only when there is transfer time to price."""
    if bat is not None:
        return _Batches(bat, end_of, latency, transfer), {}
    return None, _cross_rank_sends(s, graph) if transfer else {}


def _inputs_ready(deps, r: int, posted: float, end_of: dict[int, list[float]], latency: float,
                  rendezvous: float) -> tuple[float, int]:
    """(when rank ``r``'s action, its receives posted at ``posted``, has every input; its cross-rank inputs):
    a same-rank input at its end, a cross-rank one at max(end + ``latency``, posted + ``rendezvous``)."""
    ready, n_recv = posted, 0
    for dr, di in deps:
        ready = max(ready, end_of[dr][di] + (latency if dr != r else 0.0))
        n_recv += dr != r
    if n_recv and rendezvous:
        ready = max(ready, posted + rendezvous)
    return ready, n_recv


def execute(s: Schedule, times: ChunkTimes | Callable[[int, Action], float], p2p_latency: float = 0.0,
            p2p_transfer: float = 0.0, p2p_batches: dict[int, list[list]] | None = None,
            p2p_rendezvous: float = 0.0) -> ExecResult:
    """Start/end of every action, makespan, per-rank bubble and activation peaks (module docstring).

    ``p2p_transfer`` > 0 prices the pipeline sends and receives as DualPipe's reference runs them
    (``dualpipe.py``: ``_commit_and_wait_comm`` before every chunk commits the previous chunk's sends and this
    chunk's receives and waits for them): before each action its rank is idle for
    ``p2p_transfer`` x max(tensors it sends for its previous action, tensors this action receives) (one tensor
    per cross-rank dependency; sends and receives run at the same time, full duplex). The wait is not busy
    time: it lands in the rank's bubble. With it, ``p2p_latency`` should be the path latency alone.

    ``p2p_batches`` (``dualpipe_p2p.batches``: the reference's own batches, the one before each action and the
    last): each batch is posted when the rank's previous action ends and completes only once every peer has
    posted the batch holding the matching op (NCCL moves a large message only when both ends are posted), then
    + latency + ``p2p_transfer`` x max(sends, receives) of the batch; the action starts after it. The final
    batch ends the rank's step. Replaces the per-action rule above.

    ``p2p_rendezvous`` > 0: a rendezvous transport, where a message moves only once its receive is posted (gloo's
    unbound buffers: the sender announces the send, the receiver's posted receive answers, and only then does the
    sender's event-loop thread write the payload; ``gloo/transport/tcp/pair.cc``). A receive is posted when its
    rank's previous action ends, so a cross-rank input arrives at max(sent + ``p2p_latency``, posted +
    ``p2p_rendezvous``): a late receive pays the notification and the payload even when the data was sent long
    before."""
    if p2p_latency < 0 or p2p_transfer < 0 or p2p_rendezvous < 0:
        raise ConfigError(f"p2p latency, transfer and rendezvous must be >= 0, got {p2p_latency}, {p2p_transfer}, "
                          f"{p2p_rendezvous}")
    dur = times.of if isinstance(times, ChunkTimes) else None
    graph = slot_graph(s)
    end_of = {r: [0.0] * len(acts) for r, acts in s.actions.items()}
    bt, sends = _p2p_rule(s, graph, end_of, p2p_latency, p2p_transfer, p2p_batches)
    free = dict.fromkeys(s.actions, 0.0)
    spans: dict[int, list[Span]] = {r: [] for r in s.actions}
    busy = dict.fromkeys(s.actions, 0.0)
    for r, i in run_order(s, graph if bt is None else bt.order_graph(graph)):
        a = s.actions[r][i]
        d = _duration(dur, times, r, a)
        ready, n_recv = _inputs_ready(graph[r][i], r, free[r], end_of, p2p_latency, p2p_rendezvous)
        if bt is not None:
            ready = max(ready, bt.done(r, i, free[r]))
        elif p2p_transfer:
            ready += p2p_transfer * max(n_recv, sends[r][i - 1] if i else 0)
        end_of[r][i] = free[r] = ready + d
        busy[r] += d
        spans[r].append(Span(rank=r, action=str(a), category=a.category, start=ready, end=ready + d))
    if bt is not None:  # the step's last commit: the rank's final sends complete
        for r in s.actions:
            free[r] = bt.done(r, len(s.actions[r]), free[r])
    makespan = max(free.values()) if free else 0.0
    return ExecResult(makespan=makespan, busy=busy, bubble={r: makespan - busy[r] for r in busy},
                      spans={r: tuple(v) for r, v in spans.items()}, activation_memory=activation_peaks(s),
                      param_copies=s.n_chunks)
