"""Schedule checker and the dependency model shared with the executor.

Dependency model (per flow = one micro-batch's trip; positions p_0..p_{S-1} from ``Schedule.path``):
  F  at p_k  needs F at p_{k-1}                     (activations from the previous stage)
  B|BW at p_k needs F at p_k                        (its own stashed activations)
              and B|BW at p_{k+1} if k < S-1        (output gradient from the next stage; at the last
                                                     stage the loss is computed in the forward)
  W  at p_k  needs B at p_k                         (the weight gradient needs the output gradient)
plus program order on each rank: a rank runs its list one action at a time.

The checker proves a schedule valid: every action parses and names a chunk the layout has and a micro-batch
in range; every (flow, position) gets exactly one F and either one BW or one B and one W (each micro-batch
exactly once per phase); every dependency is satisfied by an op somewhere; and the graph of program order
plus dependencies is acyclic (a deadlock-free run order exists: ``run_order`` finds one).
"""

from __future__ import annotations

from collections import Counter

from dsv3sim.parallel.actions import Op
from dsv3sim.parallel.schedule import Schedule

OpKey = tuple[int, Op]   # (rank, op)


def dependencies(s: Schedule) -> dict[OpKey, list[OpKey]]:
    """For each (rank, op) in the schedule, the (rank, op)s it waits for. Raises ValueError if one is missing."""
    pos_index: dict[tuple, dict[tuple[int, int], int]] = {}
    for f in s.flows():
        pos_index[f] = {p: k for k, p in enumerate(s.path(f))}
    present: set[OpKey] = set()
    for r, acts in s.actions.items():
        for a in acts:
            for o in a.ops:
                present.add((r, o))

    def bwd_at(rank: int, chunk: int, mb: int) -> OpKey | None:
        for kind in ("B", "BW"):
            k = (rank, Op(kind, chunk, mb))
            if k in present:
                return k
        return None

    deps: dict[OpKey, list[OpKey]] = {}
    for r, acts in s.actions.items():
        for a in acts:
            for o in a.ops:
                flow = s.flow_of(o.chunk, o.mb)
                path = s.path(flow)
                k = pos_index[flow].get((r, o.chunk))
                if k is None:
                    raise ValueError(f"{s.name}: rank {r} runs {o} but chunk {o.chunk} of rank {r} is not on "
                                     f"micro-batch {o.mb}'s path")
                need: list[OpKey] = []
                if o.kind == "F":
                    if k > 0:
                        pr, pc = path[k - 1]
                        need.append((pr, Op("F", pc, o.mb)))
                elif o.kind in ("B", "BW"):
                    need.append((r, Op("F", o.chunk, o.mb)))
                    if k < len(path) - 1:
                        nr, nc = path[k + 1]
                        b = bwd_at(nr, nc, o.mb)
                        if b is None:
                            raise ValueError(f"{s.name}: {o} on rank {r} needs the backward of chunk {nc} "
                                             f"micro-batch {o.mb} on rank {nr}, which no rank runs")
                        need.append(b)
                else:  # W
                    need.append((r, Op("B", o.chunk, o.mb)))
                for n in need:
                    if n not in present:
                        raise ValueError(f"{s.name}: {o} on rank {r} needs {n[1]} on rank {n[0]}, "
                                         f"which is not in the schedule")
                deps[(r, o)] = need
    return deps


Slot = tuple[int, int]    # (rank, index in the rank's list)


def _needed_keys(r: int, o: Op, path: list, k: int, where: dict) -> list[tuple[int, str, int, int]]:
    """(rank, kind, chunk, mb) of the ops that op ``o`` at position ``k`` of its micro-batch's ``path`` waits
    for: F the previous stage's F; W its own B; B (or BW) its own F and the next stage's backward."""
    if o.kind == "F":
        return [(path[k - 1][0], "F", path[k - 1][1], o.mb)] if k > 0 else []
    if o.kind == "W":
        return [(r, "B", o.chunk, o.mb)]
    keys = [(r, "F", o.chunk, o.mb)]
    if k < len(path) - 1:
        nr, nc = path[k + 1]
        keys.append((nr, "B", nc, o.mb) if (nr, "B", nc, o.mb) in where else (nr, "BW", nc, o.mb))
    return keys


def slot_graph(s: Schedule) -> dict[int, list[list[Slot]]]:
    """deps[rank][i]: the (rank, slot)s that slot i of ``rank`` waits for (dependencies of all its ops, other
    than program order). Same model as ``dependencies``, on plain tuples for speed (the executor's input)."""
    where = {(r, o.kind, o.chunk, o.mb): i for r, acts in s.actions.items() for i, a in enumerate(acts) for o in a.ops}
    paths = {f: s.path(f) for f in s.flows()}
    index = {f: {p: k for k, p in enumerate(path)} for f, path in paths.items()}
    bidir = s.layout == "bidirectional"
    out: dict[int, list[list[Slot]]] = {}
    for r, acts in s.actions.items():
        out[r] = []
        for i, a in enumerate(acts):
            need: list[Slot] = []
            for o in a.ops:
                flow = (o.chunk, o.mb) if bidir else (0, o.mb)
                k = index[flow].get((r, o.chunk)) if flow in paths else None
                if k is None:
                    raise ValueError(f"{s.name}: rank {r} runs {o}, which is not on any micro-batch's path")
                for key in _needed_keys(r, o, paths[flow], k, where):
                    j = where.get(key)
                    if j is None:
                        raise ValueError(f"{s.name}: {o} on rank {r} needs {key[1]}{key[2]}.{key[3]} on rank "
                                         f"{key[0]}, which is not in the schedule")
                    if (key[0], j) != (r, i):
                        need.append((key[0], j))
            out[r].append(need)
    return out


def run_order(s: Schedule, graph: dict[int, list[list[Slot]]] | None = None) -> list[Slot]:
    """A deadlock-free order of (rank, slot) respecting program order and dependencies; ValueError if none."""
    graph = slot_graph(s) if graph is None else graph
    ptr = dict.fromkeys(s.actions, 0)
    order: list[Slot] = []
    total = sum(len(v) for v in s.actions.values())
    while len(order) < total:
        progressed = False
        for r, acts in s.actions.items():
            n, rows = len(acts), graph[r]
            while ptr[r] < n and all(ptr[dr] > di for dr, di in rows[ptr[r]]):
                order.append((r, ptr[r]))
                ptr[r] += 1
                progressed = True
        if not progressed:
            heads = {r: str(s.actions[r][ptr[r]]) for r in s.actions if ptr[r] < len(s.actions[r])}
            raise ValueError(f"{s.name} pp={s.pp} microbatches={s.microbatches}: deadlock, every rank waits; "
                             f"heads {heads}")
    return order


def _check_ranges(s: Schedule) -> None:
    """Every op's chunk and micro-batch lie within the schedule's layout."""
    for r, acts in s.actions.items():
        for o in (o for a in acts for o in a.ops):
            if o.chunk >= s.n_chunks:
                raise ValueError(f"{s.name}: rank {r} runs {o} but the {s.layout} layout has "
                                 f"{s.n_chunks} chunk(s) per rank")
            if o.mb >= s.flows_per_direction():
                raise ValueError(f"{s.name}: rank {r} runs {o}, micro-batch {o.mb} out of range "
                                 f"0..{s.flows_per_direction() - 1}")


def _check_coverage(s: Schedule, seen: Counter) -> None:
    """Each stage of each micro-batch's path runs F with BW, or F with B and W; forwards = flows x stages."""
    for f in s.flows():
        for r, c in s.path(f):
            mb = f[1]
            has = {k for k in ("F", "B", "W", "BW") if (r, Op(k, c, mb)) in seen}
            if has not in ({"F", "BW"}, {"F", "B", "W"}):
                raise ValueError(f"{s.name}: micro-batch {mb} (direction {f[0]}) at rank {r} chunk {c} runs "
                                 f"{sorted(has)}; expected F with BW, or F with B and W")
    n_expected = sum(len(s.path(f)) for f in s.flows())
    n_f = sum(1 for (_, o) in seen if o.kind == "F")
    if n_f != n_expected:
        raise ValueError(f"{s.name}: {n_f} forwards, expected {n_expected} (flows x stages)")


def check(s: Schedule) -> dict:
    """Prove ``s`` valid (ValueError naming the first problem); returns op counts per rank."""
    _check_ranges(s)
    seen = Counter((r, o) for r, acts in s.actions.items() for a in acts for o in a.ops)
    dup = [f"{o} on rank {r} x{n}" for (r, o), n in seen.items() if n > 1]
    if dup:
        raise ValueError(f"{s.name}: ops run more than once: {dup[:5]}")
    _check_coverage(s, seen)
    dependencies(s)
    run_order(s)
    return {r: dict(Counter(o.kind for a in acts for o in a.ops)) for r, acts in s.actions.items()}
