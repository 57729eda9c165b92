"""One pipeline chunk on one GPU, event by event: a compute stream and a communication stream (simpy).

A chunk is ``n`` layers. Each layer is a chain of slices (deepseek-ai/profile-data names):
  forward  : attn(F) -> dispatch(F) -> mlp(F) -> combine(F) -> next layer
  backward : combine(B) -> mlp(B) -> dispatch(B) -> attn(B) -> previous layer   (+ mlp(W), attn(W) off the chain)
(combine(B) carries the output gradients to the experts, dispatch(B) brings the input gradients back;
W slices produce only weight gradients, so nothing waits for them: zero-bubble split, Qi et al. 2024.)

Compute slices run on the compute stream, dispatch/combine on the communication stream (DeepEP kernels on
``comm_sms`` SMs, DeepSeek-V3 §3.2.2). Alone (``F``, ``B``, ``W``, ``BW`` actions) the chain runs with every
SM for compute: communication is exposed. Overlapped (``F&B``: a forward chunk and a backward chunk of
different micro-batches, DeepSeek-V3 §3.2.1 Figure 4) both chains share the two streams and a stream, when
free, starts the ready slice that became ready first (ties: backward first, DeepSeek's figure starts with the
backward's combine), so one chunk's all-to-all hides under the other's computation.

Sharing is priced only while both streams hold a kernel: a slice given as (alone, beside) seconds progresses
at rate alone / beside while the other stream runs and at 1 when it is idle. A compute kernel gets every SM
unless a DeepEP kernel holds its ``comm_sms`` (``layer_ops`` ``times`` vs ``times_partial``); a transfer is
slowed by the GEMMs only while they run beside it (``deepep_overheads`` co-run slowdown). A chunk without
all-to-all (dense layers, the output head) overlapped with one that has it thus runs at full speed between
the other's transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

COMM = ("dispatch", "combine")


@dataclass(frozen=True, kw_only=True, slots=True)
class Slice:
    name: str  # e.g. "attn(F)"
    layer: int
    stream: str  # "compute" | "comm"
    start: float
    end: float
    chunk: str  # "F" or "B" (which chain of an overlapped pair)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChunkRun:
    time_s: float
    slices: tuple[Slice, ...]
    compute_busy_s: float
    comm_busy_s: float
    exposed_comm_s: float  # time the compute stream idles while communication runs


FWD = ("attn(F)", "dispatch(F)", "mlp(F)", "combine(F)")
BWD = ("combine(B)", "mlp(B)", "dispatch(B)", "attn(B)")
SIDE = {"mlp(B)": "mlp(W)", "attn(B)": "attn(W)"}  # W slice that becomes ready when this B slice ends


LEFT_EPS = 1e-12  # a shared slice is done when less than this fraction of its alone time is left


def _rate(alone: float, beside: float, other_busy: bool) -> float:
    """Progress per second of a shared (alone, beside) slice: alone / beside while the other stream holds a
    kernel, 1 while it is idle (module docstring). ``_InOrderLoop`` and ``_SimpyPair`` both price it here."""
    return alone / beside if other_busy else 1.0


def _pos(d) -> bool:
    return (d[0] if isinstance(d, tuple) else d) > 0


def _stream(name: str) -> str:
    return "comm" if name.startswith(COMM) else "compute"


# DeepSeek's issue order of an overlapped pair, one forward layer and one backward layer per step (profile-data
# train.json, the CPU-side annotations in launch order; V3 §3.2.1 Figure 4): CUDA streams run their kernels in
# launch order, so each stream takes its slices in this order, waiting at the head for the slice's inputs.
PAIR_ISSUE_ORDER = (("B", "combine(B)"), ("F", "attn(F)"), ("B", "mlp(B)"), ("F", "dispatch(F)"), ("B", "dispatch(B)"),
                    ("B", "mlp(W)"), ("F", "mlp(F)"), ("B", "attn(B)"), ("B", "attn(W)"), ("F", "combine(F)"))


def _chain_items(kind: str, layers: list[dict]) -> list[tuple[str, int]]:
    if kind == "F":
        return [(nm, i) for i in range(len(layers)) for nm in FWD]
    if kind == "W":
        return [(nm, i) for i in reversed(range(len(layers))) for nm in ("mlp(W)", "attn(W)")]
    return [(nm, i) for i in reversed(range(len(layers))) for nm in BWD]


def pair_issue_order(f_layers: int, b_layers: int, with_w: bool) -> list[tuple[str, str, int]]:
    """(chain F | B, slice, layer) in DeepSeek's launch order: step k pairs forward layer k with backward layer
    b_layers - 1 - k (``PAIR_ISSUE_ORDER``); past the shorter chain the longer one continues in that order."""
    out = []
    for k in range(max(f_layers, b_layers)):
        for ch, name in PAIR_ISSUE_ORDER:
            if name.endswith("(W)") and not with_w:
                continue
            i = k if ch == "F" else b_layers - 1 - k
            if (ch == "F" and k < f_layers) or (ch == "B" and k < b_layers):
                out.append((ch, name, i))
    return out


def _issue_queues(parts: list[tuple[str, list[dict]]], tags: list[str] | None) -> tuple[dict, dict]:
    """For an F chain and a B / BW chain: per stream, its slices in launch order as (key, tag, name, layer,
    seconds), and each slice's dependencies (the previous slice of its chain; a W slice its B slice)."""
    kind_b = parts[1][0]
    by = {"F": parts[0][1], "B": parts[1][1]}
    tag_of = {"F": tags[0] if tags else "F", "B": tags[1] if tags else "B"}
    present = {(ch, nm, i) for ch, ls in by.items() for i, lay in enumerate(ls) for nm in lay if _pos(lay[nm])}
    deps: dict = {}
    for ch, kind in (("F", "F"), ("B", kind_b)):
        prev = None
        for nm, i in _chain_items(kind, by[ch]):
            if (ch, nm, i) not in present:
                continue
            deps[(ch, nm, i)] = [prev] if prev else []
            prev = (ch, nm, i)
            w = SIDE.get(nm) if kind == "BW" else None
            if w and (ch, w, i) in present:
                deps[(ch, w, i)] = [(ch, nm, i)]
    queues: dict[str, list] = {"compute": [], "comm": []}
    for ch, nm, i in pair_issue_order(len(by["F"]), len(by["B"]), kind_b == "BW"):
        if (ch, nm, i) in deps:
            queues[_stream(nm)].append(((ch, nm, i), tag_of[ch], nm, i, by[ch][i][nm]))
    return queues, deps


def _chunk_run(t: float, slices: list[Slice], busy: dict[str, float]) -> ChunkRun:
    """The run's result: makespan, slices by start, busy time per stream, communication the compute stream left
    exposed."""
    exposed = max(0.0, t - busy["compute"]) if busy["comm"] > 0 else 0.0
    return ChunkRun(time_s=t, slices=tuple(sorted(slices, key=lambda s: (s.start, s.stream))),
                    compute_busy_s=busy["compute"], comm_busy_s=busy["comm"],
                    exposed_comm_s=min(exposed, busy["comm"]))


class _Running:
    """The slice a stream of ``_InOrderLoop`` runs: ``key`` (chain, name, layer), ``tag``, ``name``, ``layer``,
    its ``start``; a ``shared`` (alone, beside) slice has ``left`` seconds of its alone time to go at ``rate``
    since ``t0``; it ends at ``end``."""

    __slots__ = ("alone", "beside", "end", "key", "layer", "left", "name", "rate", "shared", "start", "t0", "tag")

    def __init__(self, entry: tuple, now: float) -> None:
        """``entry``: the queue's (key, tag, name, layer, seconds or (alone, beside)); it starts ``now``."""
        self.key, self.tag, self.name, self.layer, d = entry
        self.start = self.t0 = now
        self.rate = 1.0
        if isinstance(d, tuple):
            self.shared = True
            self.alone = self.left = d[0]
            self.beside = d[1]
            self.end = now
        else:
            self.shared = False
            self.alone = self.left = self.beside = d
            self.end = now + d


class _InOrderLoop:
    """``run_chunks``' in-order pair without simpy: the same arithmetic (a shared slice progresses in segments
    ``left -= (now - t0) x rate``, cut at every toggle of the other stream; it ends at ``t0 + left / rate``), so the
    same floats. ``run`` returns None where simpy's order of same-instant events could matter: a segment that leaves
    more than the loop's threshold, or a superseded timeout (simpy's clock runs to it) that could pass the last
    slice's end; the caller then runs the simpy model."""

    STREAMS = ("compute", "comm")
    OTHER = {"compute": "comm", "comm": "compute"}

    def __init__(self, queues: dict, deps: dict, record: bool) -> None:
        self.queues, self.deps, self.record = queues, deps, record
        self.pos = dict.fromkeys(self.STREAMS, 0)
        self.cur: dict[str, _Running | None] = dict.fromkeys(self.STREAMS)  # per stream the running slice
        self.on = dict.fromkeys(self.STREAMS, False)
        self.done: set = set()
        self.busy = dict.fromkeys(self.STREAMS, 0.0)
        self.slices: list[Slice] = []
        self.stale = 0.0

    def _end(self, now: float) -> dict | None:
        """End the slices whose end is now: {stream: key of the slice that ended}; None to decline."""
        ended = dict.fromkeys(self.STREAMS)
        for s in self.STREAMS:
            c = self.cur[s]
            if c is None or c.end != now:
                continue
            if c.shared and c.left - (now - c.t0) * c.rate > LEFT_EPS * c.alone:
                return None
            self.cur[s], self.on[s], ended[s] = None, False, c.key
            self.busy[s] += now - c.start
            self.done.add(c.key)
            if self.record:
                self.slices.append(Slice(name=c.name, layer=c.layer, stream=s, start=c.start, end=now, chunk=c.tag))
        return ended

    def _start(self, now: float) -> dict:
        """Start the head slice of each free stream whose inputs are done: {stream: started}."""
        started = dict.fromkeys(self.STREAMS, False)
        for s in self.STREAMS:
            q = self.queues[s]
            if self.cur[s] is not None or self.pos[s] >= len(q):
                continue
            entry = q[self.pos[s]]
            if all(x in self.done for x in self.deps[entry[0]]):
                self.pos[s] += 1
                self.cur[s] = _Running(entry, now)
                self.on[s] = started[s] = True
        return started

    def _segments(self, now: float, toggled: dict, started: dict, ended: dict) -> None:
        """Shared slices: a new segment at every toggle of the other stream (or at their start)."""
        for s in self.STREAMS:
            c, o = self.cur[s], self.OTHER[s]
            if c is None or not c.shared or not (toggled[o] or started[s]):
                continue
            if started[s] and toggled[o]:
                # simpy may have read the other stream before its toggle: harmless when it ends on (the earlier
                # read, off, scheduled a sooner timeout) or when this slice waited for the slice that ended there
                if not self.on[o] and ended[o] not in self.deps[c.key]:
                    self.stale = max(self.stale, now + c.left / _rate(c.alone, c.beside, True))
            elif not started[s]:
                self.stale = max(self.stale, c.end)  # the superseded segment's timeout stays on simpy's clock
                c.left -= (now - c.t0) * c.rate
            c.rate = _rate(c.alone, c.beside, self.on[o])
            c.t0 = now
            c.end = now + c.left / c.rate

    def run(self) -> ChunkRun | None:
        now = 0.0
        while True:
            ended = self._end(now)
            if ended is None:
                return None
            started = self._start(now)
            toggled = {s: started[s] or ended[s] is not None for s in self.STREAMS}
            self._segments(now, toggled, started, ended)
            nxt = [c.end for c in self.cur.values() if c is not None]
            if not nxt:
                break
            now = min(nxt)
        if any(self.pos[s] < len(self.queues[s]) for s in self.STREAMS) or self.stale > now:
            return None
        return _chunk_run(now, self.slices, self.busy)


def _fast_in_order(queues: dict, deps: dict, record: bool) -> ChunkRun | None:
    """The in-order pair by ``_InOrderLoop``; None where the simpy model must answer."""
    return _InOrderLoop(queues, deps, record).run()


def _ordered(parts: list, issue_order: bool) -> bool:
    kinds = [k for k, _ in parts]
    return issue_order and len(parts) == 2 and kinds[0] == "F" and kinds[1] in ("B", "BW")


def run_chunks(parts: list[tuple[str, list[dict[str, float]]]], *, record: bool = True,
               tags: list[str] | None = None, issue_order: bool = False) -> ChunkRun:
    """Run chains together. ``parts`` = [(kind, per-layer {slice name: seconds})], kind in F | B | W | BW; a
    missing or zero slice (a dense layer's dispatch) is skipped. Any number of forward chains may share the
    streams (serving's micro-batches); ``tags`` names each part's slices (default "F" / "B" by kind).
    ``issue_order`` (an F chain with a B or BW chain): each stream runs its slices in DeepSeek's launch order
    (``pair_issue_order``) instead of the first-ready rule."""
    if not _ordered(parts, issue_order):
        return _run_simpy(parts, record=record, tags=tags)
    order = _issue_queues(parts, tags)
    got = _fast_in_order(*order, record)
    return got if got is not None else _run_simpy(parts, record=record, tags=tags, order=order)


class _SimpyPair:
    """The two streams of ``run_chunks`` in simpy: each slice holds its stream, a tuple slice progresses at its
    shared rate while the other stream has a kernel resident (``resident``)."""

    def __init__(self, record: bool):
        self.env = env = simpy.Environment()
        self.streams = {"compute": simpy.PriorityResource(env, 1), "comm": simpy.PriorityResource(env, 1)}
        self.record, self.slices, self.seq = record, [], 0
        self.busy = {"compute": 0.0, "comm": 0.0}
        self.resident = {s: [False, env.event()] for s in self.streams}  # a kernel resident, event on change

    def _toggle(self, stream: str, state: bool) -> None:
        ev = self.resident[stream][1]
        self.resident[stream][0], self.resident[stream][1] = state, self.env.event()
        ev.succeed()

    def _shared(self, stream: str, d_alone: float, d_beside: float):
        """A slice of d_alone seconds with the other stream idle and d_beside with it busy the whole time
        (compute: every SM vs the SMs DeepEP's kernels leave; comm: the transfer alone vs beside the GEMMs):
        it progresses at rate d_alone / d_beside while the other stream runs a kernel, at 1 otherwise."""
        other = self.resident["comm" if stream == "compute" else "compute"]
        left = d_alone
        while left > LEFT_EPS * d_alone:
            rate = _rate(d_alone, d_beside, other[0])
            t0 = self.env.now
            done = self.env.timeout(left / rate)
            yield done | other[1]
            # the slice ends when its own timeout fires, not when the clock has moved by its length: at a clock
            # of 1e17 s (a 1e12-token prompt's attention) a 16 ms step does not move a float, and the loop spun
            left = 0.0 if done.processed else left - (self.env.now - t0) * rate

    def one(self, tag: str, name: str, i: int, d, prio: int):
        env, stream = self.env, _stream(name)
        self.seq += 1
        with self.streams[stream].request(priority=(env.now, prio, self.seq)) as req:
            yield req
            t0 = env.now
            self._toggle(stream, True)
            if isinstance(d, tuple):
                yield from self._shared(stream, *d)
            else:
                yield env.timeout(d)
            self._toggle(stream, False)
            self.busy[stream] += env.now - t0
            if self.record:
                self.slices.append(Slice(name=name, layer=i, stream=stream, start=t0, end=env.now, chunk=tag))

    def chain(self, tag: str, kind: str, layers: list[dict[str, float]], prio: int):
        side = []
        for name, i in _chain_items(kind, layers):
            d = layers[i].get(name, 0.0)
            if _pos(d):
                yield self.env.process(self.one(tag, name, i, d, prio))
            w = SIDE.get(name) if kind == "BW" else None
            if w and _pos(layers[i].get(w, 0.0)):
                side.append(self.env.process(self.one(tag, w, i, layers[i][w], prio)))
        if side:
            yield simpy.AllOf(self.env, side)

    def in_order(self, queue: list, done: dict, deps: dict):
        for key, tag, name, i, d in queue:
            need = [done[x] for x in deps[key]]
            if need:
                yield simpy.AllOf(self.env, need)
            yield self.env.process(self.one(tag, name, i, d, 0))
            done[key].succeed()


def _run_simpy(parts: list[tuple[str, list[dict[str, float]]]], *, record: bool, tags: list[str] | None,
               order: tuple[dict, dict] | None = None) -> ChunkRun:
    """``run_chunks`` event by event in simpy (``order``: ``_issue_queues``' per-stream launch order and
    dependencies, each stream taking its slices in that order)."""
    sim = _SimpyPair(record)
    if order is not None:
        queues, deps = order
        done = {k: sim.env.event() for k in deps}
        for q in queues.values():
            sim.env.process(sim.in_order(q, done, deps))
    else:
        for j, (kind, layers) in enumerate(parts):
            tag = tags[j] if tags else ("F" if kind == "F" else "B")
            sim.env.process(sim.chain(tag, kind, layers, 1 if kind == "F" else 0))
    sim.env.run()
    return _chunk_run(sim.env.now, sim.slices, sim.busy)
