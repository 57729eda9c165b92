"""Ring and tree all-reduce, ring all-gather / reduce-scatter, and point-to-point, as flows.

Ring (Patarasuk & Yuan 2009; NCCL ring): ``n`` ranks, the buffer of ``S`` bytes in ``n`` pieces.
Reduce-scatter and all-gather are ``n-1`` steps each; all-reduce is both (``2(n-1)`` steps). In every step
each rank sends one ``S/n`` piece to its ring successor, all at once; a step ends when its slowest piece
lands (the step barrier NCCL's chunked ring approaches for large buffers). Uncontended, with per-hop
latency ``a`` and bandwidth ``B``: ``T = 2(n-1)(a + S/(nB))`` for all-reduce, the textbook alpha-beta form.

Tree all-reduce: a binary tree over the ranks (rank i's parent is (i-1)//2); reduce to the root then
broadcast back, pipelined in ``chunks`` pieces: a node sends piece c up once piece c arrived from all its
children, and down once it got it from its parent (NCCL's tree is pipelined the same way).

Point-to-point: one flow (pipeline-parallel activations between stages).
Ring order is the given rank order; with ranks spread over nodes, consecutive ranks on different nodes
use IB (and PXN over NVLink when planes differ, as the topology routes it).
"""

from __future__ import annotations

import simpy

from dsv3sim.config.errors import ConfigError
from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.sim.result import CommResult, link_stats
from dsv3sim.topology.graph import Topology

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "p2p")


def _x(net: FlowNetwork, topo: Topology, a: int, b: int, nbytes: float, tag: str) -> simpy.Event:
    p = topo.path(a, b)
    return net.transfer(p, nbytes, topo.path_latency(p), tag=tag)


def ring(env, net: FlowNetwork, topo: Topology, ranks: list[int], nbytes: float, steps: int, tag: str):
    """Generator: ``steps`` ring steps of ``nbytes / n`` per rank."""
    n = len(ranks)
    piece = nbytes / n
    for k in range(steps):
        evs = [_x(net, topo, ranks[i], ranks[(i + 1) % n], piece, f"{tag}{k}:{i}") for i in range(n)]
        yield env.all_of(evs)


def tree_all_reduce(env, net: FlowNetwork, topo: Topology, ranks: list[int], nbytes: float, chunks: int = 8):
    """Generator: pipelined binary-tree reduce + broadcast."""
    n = len(ranks)
    piece = nbytes / chunks
    up = [[env.event() for _ in range(chunks)] for _ in range(n)]  # piece c of node i's subtree reduced at i
    down = [[env.event() for _ in range(chunks)] for _ in range(n)]  # piece c of the result at node i

    def node(i):
        kids = [j for j in (2 * i + 1, 2 * i + 2) if j < n]
        for c in range(chunks):
            yield env.all_of([up[j][c] for j in kids])
            if i == 0:
                down[0][c].succeed()
            else:
                yield _x(net, topo, ranks[i], ranks[(i - 1) // 2], piece, f"up{c}:{i}")
            up[i][c].succeed()

    def bcast(i):
        kids = [j for j in (2 * i + 1, 2 * i + 2) if j < n]
        for c in range(chunks):
            yield down[i][c]
            evs = [_x(net, topo, ranks[i], ranks[j], piece, f"down{c}:{i}>{j}") for j in kids]
            for j, e in zip(kids, evs):
                e.callbacks.append(lambda _e, j=j, c=c: down[j][c].succeed())
            yield env.all_of(evs)

    procs = [env.process(node(i)) for i in range(n)] + [env.process(bcast(i)) for i in range(n)]
    yield env.all_of(procs + [down[i][-1] for i in range(n)])


def start_collective(env, net: FlowNetwork, topo: Topology, kind: str, ranks: list[int], nbytes: float, *,
                     algorithm: str = "ring", chunks: int = 8) -> simpy.Process:
    """Start a collective on ``ranks`` (GPU ids) in a caller's env. ``nbytes``: the full buffer per rank
    (all-reduce, reduce-scatter input, all-gather output) or the message (p2p: ranks[0] -> ranks[1])."""
    n = len(ranks)
    if kind not in KINDS:
        raise ConfigError(f"collective kind {kind!r} unknown (one of {', '.join(KINDS)})")
    if n < 2:
        raise ConfigError(f"a collective needs >= 2 ranks, got {n}")
    if kind == "p2p":
        return env.process(_one(_x(net, topo, ranks[0], ranks[1], nbytes, "p2p")))
    if kind == "all-reduce" and algorithm == "tree":
        return env.process(tree_all_reduce(env, net, topo, ranks, nbytes, chunks))
    if algorithm != "ring":
        raise ConfigError(f"algorithm {algorithm!r} unknown for {kind} (ring, or tree for all-reduce)")
    steps = 2 * (n - 1) if kind == "all-reduce" else n - 1
    return env.process(ring(env, net, topo, ranks, nbytes, steps, kind))


def _one(ev):
    yield ev


def simulate_collective(topo: Topology, kind: str, ranks: list[int], nbytes: float, *, algorithm: str = "ring",
                        chunks: int = 8, record: bool = False) -> CommResult:
    """Run one collective alone on a fresh network and report it like the EP collectives."""
    env = simpy.Environment()
    net = FlowNetwork(env, [lk.capacity for lk in topo.links], record=record)
    kl = topo.cfg.kernel_latency

    def main():
        if kl:
            yield env.timeout(kl)
        yield start_collective(env, net, topo, kind, ranks, nbytes, algorithm=algorithm, chunks=chunks)

    env.process(main())
    env.run()
    net.check_conservation()
    t = env.now
    stats = link_stats(topo, net, t)
    n = len(ranks)
    nic = stats["bytes_by_class"].get("nic_tx", 0.0)
    nvl = stats["bytes_by_class"].get("nvlink_rx", 0.0)
    return CommResult(kind=kind, mode=algorithm, n_ranks=n, time_s=t,
                      rdma_GBps=nic / n / t / 1e9 if t else 0.0, nvlink_GBps=nvl / n / t / 1e9 if t else 0.0,
                      deepep_rdma_GBps=0.0, deepep_nvlink_GBps=0.0, n_flows=len(net.done), n_events=net.n_events,
                      bytes_sent=net.bytes_sent, bytes_received=net.bytes_received, comm_sms=topo.cfg.comm_sms,
                      **stats)
