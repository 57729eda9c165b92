"""FlowNetwork: flow-level (fluid) bandwidth sharing of links inside a simpy Environment.

A transfer is a flow of ``nbytes`` along a fixed path of links. It waits the path latency (sum of per-hop
latencies + the largest per-message start-up), then drains at a rate set by **max-min fairness** among
all active flows (progressive filling / water-filling, Bertsekas & Gallager "Data Networks" §6.5.2):
raise every unfrozen flow's rate equally until some link is full; freeze the flows through it; repeat.
An uncontended flow therefore takes exactly ``latency + nbytes / capacity``; n equal flows through one
link take n times as long; an incast of n senders into one receiver link shares it 1/n each while the
senders' own links stay idle. Why max-min rather than proportional splitting per link: it never gives
a flow more than its bottleneck allows, so capacity a flow cannot use elsewhere is handed to the others
(what credit-based IB and NVLink flow control converge to for long flows). See NOTES.md.

Rates change only when a flow starts, ends or waits at a gate, and only inside the connected component
(flows linked by shared links) of that flow. A union-find over links that ever carried a common flow gives
a superset of that component (never split), which is recomputed; flows starting at one instant share one
recomputation. The next completion is kept in a heap; ties complete together in flow-id order, so a run is
deterministic. Milestones (events at b bytes in) and open gates cost a heap entry, not a recomputation;
a gate that is still closed takes the flow out of the network until it opens (pipelined relays).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import simpy

from dsv3sim.config.errors import ConfigError

_REL = 1e-12


class _Flow:
    __slots__ = ("id", "path", "nbytes", "remaining", "rate", "t_last", "event", "version", "tag", "t_start",
                 "t_end", "tokens", "marks", "root")

    def __init__(self, fid: int, path: tuple[int, ...], nbytes: float, event: simpy.Event, tag: str,
                 tokens: int, marks: list[tuple[float, simpy.Event]]) -> None:
        self.id, self.path, self.nbytes, self.remaining = fid, path, float(nbytes), float(nbytes)
        self.rate, self.t_last, self.event, self.version, self.tag = 0.0, 0.0, event, 0, tag
        self.t_start, self.t_end, self.tokens, self.marks, self.root = 0.0, 0.0, tokens, marks, -1

    def next_level(self) -> float:
        """Remaining-bytes level of the next milestone (0 = completion)."""
        return self.marks[-1][0] if self.marks else 0.0


class FlowNetwork:
    """Fluid max-min fair network over links with capacities ``capacity[i]`` (B/s).

    ``transfer(path, nbytes, latency)`` returns a simpy Event that fires when the last byte arrives;
    its value is the flow id. Use it from any simpy process of the same Environment.
    ``milestones=[b1, b2, ...]`` also returns events firing when ``b_i`` bytes have arrived (pipelined
    forwarding: a relay may pass on chunk k once it is in); milestones never change rates, so they cost
    a heap entry, not a recomputation.
    """

    def __init__(self, env: simpy.Environment, capacity: Sequence[float], *, record: bool = False) -> None:
        self.env = env
        self.capacity = list(capacity)
        bad = [(i, c) for i, c in enumerate(self.capacity) if not 0 < c < math.inf]
        if bad:
            raise ConfigError(f"link capacities must be finite and > 0 B/s, got {bad[:3]} (link, capacity)")
        self.flows: dict[int, _Flow] = {}
        self.done: list[_Flow] = []
        self.link_bytes: dict[int, float] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._wake_at = float("inf")
        self._next_id = 0
        # union-find over links that have ever carried one flow together: a superset of each connected
        # component of the flow/link graph (never split), so recomputing it is exact and needs no search
        self._uf: dict[int, int] = {}
        self._root_flows: dict[int, set[int]] = {}
        self._dirty: set[int] = set()
        self._flush_pending = False
        self.n_events = 0
        self.n_recomputes = 0
        self.bytes_sent = 0.0
        self.bytes_received = 0.0
        self.log: list[tuple] | None = [] if record else None

    # ------------------------------------------------------------ public
    def transfer(self, path: tuple[int, ...], nbytes: float, latency: float = 0.0, *, tag: str = "",
                 tokens: int = 0, milestones: Sequence[float] = (),
                 gates: Sequence[tuple[float, simpy.Event]] = ()) -> simpy.Event | tuple[simpy.Event, list]:
        if not (0 <= nbytes < math.inf and 0 <= latency < math.inf):  # NaN fails both comparisons
            raise ValueError(f"transfer needs finite nbytes >= 0 and latency >= 0, got {nbytes}, {latency}")
        ev = self.env.event()
        mev = [self.env.event() for _ in milestones]
        # milestone at b delivered bytes == remaining level nbytes - b; kept descending so pop() is next
        # gates: (b, ev) = the flow may not send past b bytes before ev fires (a relay's next chunk is in);
        # if ev already fired when the flow gets there it passes without any recomputation
        marks = sorted([(float(nbytes) - b, e, False) for b, e in zip(milestones, mev)]
                       + [(float(nbytes) - b, e, True) for b, e in gates], key=lambda m: (m[0], m[2]))
        f = _Flow(self._next_id, tuple(path), nbytes, ev, tag, tokens, marks)
        self._next_id += 1
        f.t_start = self.env.now
        self.bytes_sent += f.nbytes
        self._log("start", f)
        if latency > 0:
            self.env.timeout(latency).callbacks.append(lambda _e, f=f: self._activate(f))
        else:
            self._activate(f)
        return (ev, mev) if milestones else ev

    def check_conservation(self) -> None:
        """Bytes sent == bytes received once every flow has finished."""
        if self.flows:
            raise AssertionError(f"{len(self.flows)} flows still active at t={self.env.now}")
        if abs(self.bytes_sent - self.bytes_received) > 1e-6 * max(1.0, self.bytes_sent):
            raise AssertionError(f"bytes sent {self.bytes_sent} != bytes received {self.bytes_received}")

    # ------------------------------------------------------------ internals
    def _log(self, kind: str, f: _Flow) -> None:
        self.n_events += 1
        if self.log is not None:
            self.log.append((self.env.now, kind, f.id, f.tag, f.nbytes))

    def _find(self, x: int) -> int:
        uf = self._uf
        r = uf.setdefault(x, x)
        while r != uf[r]:
            r = uf[r]
        while uf[x] != r:
            uf[x], x = r, uf[x]
        return r

    def _activate(self, f: _Flow) -> None:
        now = self.env.now
        if f.nbytes == 0 or not f.path:
            for _, e, gate in f.marks:
                if not gate:
                    e.succeed()
            f.marks = []
            self._finish(f, now)
            f.event.succeed(f.id)
            return
        f.t_last = now
        self.flows[f.id] = f
        roots = {self._find(lid) for lid in f.path}
        root = min(roots)
        merged = self._root_flows.setdefault(root, set())
        for r in roots:
            if r != root:
                self._uf[r] = root
                merged |= self._root_flows.pop(r, set())
                for fid in merged:
                    self.flows[fid].root = root
        f.root = root
        merged.add(f.id)
        # flows starting at the same instant share one recomputation (no time passes before it: exact)
        self._dirty.add(root)
        if not self._flush_pending:
            self._flush_pending = True
            self.env.timeout(0).callbacks.append(self._flush)

    def _flush(self, _e=None) -> None:
        self._flush_pending = False
        dirty, self._dirty = self._dirty, set()
        now = self.env.now
        roots = {self._find(r) for r in dirty}
        for r in sorted(roots):
            self._recompute(r, now)

    def _recompute(self, root: int, now: float) -> None:
        self.n_recomputes += 1
        flows = self.flows
        fl = [flows[i] for i in sorted(self._root_flows.get(root, ()))]
        if not fl:
            self._schedule_wake()
            return
        on, cap_left, lpaths = self._local_links(fl, now)
        _progressive_fill(fl, on, cap_left, lpaths)
        heap = self._heap
        push = heapq.heappush
        for f in fl:
            f.version += 1
            push(heap, (now + (f.remaining - (f.marks[-1][0] if f.marks else 0.0)) / f.rate, f.id, f.version))
        if len(heap) > 4 * len(flows) + 64:  # drop stale entries
            self._heap = [e for e in heap if e[1] in flows and flows[e[1]].version == e[2]]
            heapq.heapify(self._heap)
        self._schedule_wake()

    def _local_links(self, fl: list[_Flow], now: float) -> tuple[list[list[_Flow]], list[float], list[list[int]]]:
        """Bring each flow's remaining bytes up to ``now`` at its old rate and unfreeze it; number the links of
        the component locally: (flows on each local link, its capacity, each flow's path as local indices)."""
        idx: dict[int, int] = {}  # link id -> local index
        on: list[list[_Flow]] = []
        cap = self.capacity
        cap_left: list[float] = []
        lpaths: list[list[int]] = []
        for f in fl:
            if f.rate > 0:
                f.remaining = max(0.0, f.remaining - f.rate * (now - f.t_last))
            f.t_last = now
            f.rate = -1.0  # unfrozen
            lp = []
            for lid in f.path:
                i = idx.get(lid)
                if i is None:
                    i = idx[lid] = len(on)
                    on.append([f])
                    cap_left.append(cap[lid])
                else:
                    on[i].append(f)
                lp.append(i)
            lpaths.append(lp)
        return on, cap_left, lpaths

    def _schedule_wake(self) -> None:
        heap, flows = self._heap, self.flows
        while heap and (heap[0][1] not in flows or flows[heap[0][1]].version != heap[0][2]):
            heapq.heappop(heap)
        if not heap:
            return
        t = heap[0][0]
        if t < self._wake_at:
            self._wake_at = t
            self.env.timeout(max(0.0, t - self.env.now)).callbacks.append(lambda _e, t=t: self._on_wake(t))

    def _on_wake(self, t: float) -> None:
        if t != self._wake_at:
            return  # superseded by an earlier wake-up
        self._wake_at = float("inf")
        now = self.env.now
        heap, flows = self._heap, self.flows
        lim = now * (1 + _REL) + 1e-18
        due: list[_Flow] = []
        while heap and heap[0][0] <= lim:
            _, fid, ver = heapq.heappop(heap)
            f = flows.get(fid)
            if f is not None and f.version == ver:
                due.append(f)
        due.sort(key=lambda f: f.id)
        ending, fired, suspended = [], [], []
        for f in due:
            if f.marks:  # a milestone or gate: bytes in, rates unchanged
                level, e, gate = f.marks.pop()
                f.remaining, f.t_last = level, now
                f.version += 1
                if not gate:
                    fired.append(e)
                elif not e.triggered:  # wait for the gate: leave the network until it opens
                    suspended.append(f)
                    e.callbacks.append(lambda _e, f=f: self._resume(f))
                    continue
                heapq.heappush(heap, (now + (f.remaining - f.next_level()) / f.rate, f.id, f.version))
            else:
                ending.append(f)
        for f in suspended:
            del flows[f.id]
            self._root_flows[f.root].discard(f.id)
            f.rate = 0.0
        roots = {f.root for f in suspended}
        for f in ending:
            del flows[f.id]
            self._root_flows[f.root].discard(f.id)
            roots.add(f.root)
            self._finish(f, now)
        for r in sorted(roots):
            self._recompute(self._find(r), now)
        if not roots:
            self._schedule_wake()
        for e in fired:
            e.succeed()
        for f in ending:
            f.event.succeed(f.id)

    def _resume(self, f: _Flow) -> None:
        """A gated flow continues where it stopped (no new latency: the connection is already open)."""
        while f.marks and f.marks[-1][2] and f.marks[-1][1].triggered and f.marks[-1][0] >= f.remaining:
            f.marks.pop()  # further gates at the same level that are open already
        self._activate(f)

    def _finish(self, f: _Flow, now: float) -> None:
        f.remaining, f.rate, f.t_end = 0.0, 0.0, now
        self.bytes_received += f.nbytes
        for lid in f.path:
            self.link_bytes[lid] = self.link_bytes.get(lid, 0.0) + f.nbytes
        self.done.append(f)
        self._log("end", f)


def _progressive_fill(fl: list[_Flow], on: list[list[_Flow]], cap_left: list[float], lpaths: list[list[int]]) -> None:
    """Max-min fair rates by progressive filling over local link indices (ties -> lower link id first via
    insertion order); a link at the minimum fair share at the start of a round saturates in that round (freezing
    flows at that share never lowers another link's fair share below it)."""
    n_on = [len(v) for v in on]
    pos = {f.id: k for k, f in enumerate(fl)}
    live = list(range(len(on)))
    while live:
        ratios = [cap_left[i] / n_on[i] for i in live]
        share = min(ratios)
        lim = share * (1 + _REL)
        for i in (i for i, x in zip(live, ratios) if x <= lim and n_on[i]):
            for f in on[i]:
                if f.rate >= 0:
                    continue
                f.rate = share
                for j in lpaths[pos[f.id]]:
                    cap_left[j] -= share
                    n_on[j] -= 1
        live = [i for i in live if n_on[i]]
