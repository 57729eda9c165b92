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


def run_chunks(parts: list[tuple[str, list[dict[str, float]]]], *, record: bool = True,
               tags: list[str] | None = None, issue_order: bool = False) -> ChunkRun:
    """Run chains together. ``parts`` = [(kind, per-layer {slice name: seconds})], kind in F | B | W | BW; a
    missing or zero slice (a dense layer's dispatch) is skipped. Any number of forward chains may share the
    streams (serving's micro-batches); ``tags`` names each part's slices (default "F" / "B" by kind).
    ``issue_order`` (an F chain with a B or BW chain): each stream runs its slices in DeepSeek's launch order
    (``pair_issue_order``) instead of the first-ready rule."""
    env = simpy.Environment()
    streams = {"compute": simpy.PriorityResource(env, 1), "comm": simpy.PriorityResource(env, 1)}
    slices: list[Slice] = []
    busy = {"compute": 0.0, "comm": 0.0}
    seq_id = [0]
    # per stream: is a kernel resident, and an event fired when that changes
    on = {s: [False, env.event()] for s in streams}

    def _toggle(stream: str, state: bool) -> None:
        ev = on[stream][1]
        on[stream][0], on[stream][1] = state, env.event()
        ev.succeed()

    def _shared(stream: str, d_alone: float, d_beside: float):
        """A slice of d_alone seconds with the other stream idle and d_beside with it busy the whole time
        (compute: every SM vs the SMs DeepEP's kernels leave; comm: the transfer alone vs beside the GEMMs):
        it progresses at rate d_alone / d_beside while the other stream runs a kernel, at 1 otherwise."""
        other = "comm" if stream == "compute" else "compute"
        left = d_alone
        while left > 1e-12 * d_alone:
            rate = d_alone / d_beside if on[other][0] else 1.0
            t0 = env.now
            yield env.timeout(left / rate) | on[other][1]
            left -= (env.now - t0) * rate

    def one(tag: str, name: str, i: int, d, prio: int):
        stream = _stream(name)
        seq_id[0] += 1
        with streams[stream].request(priority=(env.now, prio, seq_id[0])) as req:
            yield req
            t0 = env.now
            _toggle(stream, True)
            if isinstance(d, tuple):
                yield from _shared(stream, *d)
            else:
                yield env.timeout(d)
            _toggle(stream, False)
            busy[stream] += env.now - t0
            if record:
                slices.append(Slice(name=name, layer=i, stream=stream, start=t0, end=env.now, chunk=tag))

    def chain(tag: str, kind: str, layers: list[dict[str, float]], prio: int):
        if kind == "F":
            items = [(nm, i) for i in range(len(layers)) for nm in FWD]
        elif kind == "W":
            items = [(nm, i) for i in reversed(range(len(layers))) for nm in ("mlp(W)", "attn(W)")]
        else:
            items = [(nm, i) for i in reversed(range(len(layers))) for nm in BWD]
        side = []
        for name, i in items:
            d = layers[i].get(name, 0.0)
            if _pos(d):
                yield env.process(one(tag, name, i, d, prio))
            w = SIDE.get(name) if kind == "BW" else None
            if w and _pos(layers[i].get(w, 0.0)):
                side.append(env.process(one(tag, w, i, layers[i][w], prio)))
        if side:
            yield simpy.AllOf(env, side)

    def in_order(stream: str, queue: list, done: dict, deps: dict):
        for key, tag, name, i, d in queue:
            need = [done[x] for x in deps[key]]
            if need:
                yield simpy.AllOf(env, need)
            yield env.process(one(tag, name, i, d, 0))
            done[key].succeed()

    kinds = [k for k, _ in parts]
    if issue_order and len(parts) == 2 and kinds[0] == "F" and kinds[1] in ("B", "BW"):
        queues, deps = _issue_queues(parts, tags)
        done = {k: env.event() for k in deps}
        for s, q in queues.items():
            env.process(in_order(s, q, done, deps))
    else:
        for j, (kind, layers) in enumerate(parts):
            tag = tags[j] if tags else ("F" if kind == "F" else "B")
            env.process(chain(tag, kind, layers, 1 if kind == "F" else 0))
    env.run()
    t = env.now
    exposed = max(0.0, t - busy["compute"]) if busy["comm"] > 0 else 0.0
    return ChunkRun(time_s=t, slices=tuple(sorted(slices, key=lambda s: (s.start, s.stream))),
                    compute_busy_s=busy["compute"], comm_busy_s=busy["comm"],
                    exposed_comm_s=min(exposed, busy["comm"]))
