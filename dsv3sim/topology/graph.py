"""Topology: the cluster as a directed networkx graph of GPUs, NVSwitches, NICs, leaf and spine switches.

Every directed edge is a *link* with an integer id, a class, a capacity (B/s, already multiplied by the
class's achievable fraction) and a per-hop latency. Flows in ``dsv3sim.sim`` are tuples of link ids.

Links (per direction):
  ``nvlink_tx``  GPU -> NVSwitch        ``nvlink_rx``  NVSwitch -> GPU        (scale-up, per GPU)
  ``pcie_tx``    GPU -> NIC             ``pcie_rx``    NIC -> GPU
  ``nic_tx``     NIC -> leaf            ``nic_rx``     leaf -> NIC           (the RDMA wire)
  ``leaf_up``    leaf -> spine layer    ``spine_down`` spine layer -> leaf   (one aggregate link per leaf:
                 capacity = NICs under the leaf x NIC bandwidth / oversubscription; this is ideal adaptive
                 routing over the spines, DEEPEP "Adaptive routing" note; a static-ECMP hash would do worse)

Routing as the hardware does it (``path``): same node -> NVLink; other node, same NIC index/plane -> the
GPU's own NIC; other node, other plane of a multi-plane fabric -> NVLink to the GPU in the source node
whose NIC is in the destination's plane, then that plane (PXN; ISCA'25 §5.1.2: "cross-plane traffic
requires intra-node forwarding"). Rail-optimized and fat-tree fabrics cross rails at the spines.
Switches themselves are non-blocking crossbars (no capacity of their own).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.topology import LinkSpec, TopologyConfig, load_topology_config

LINK_CLASSES = ("nvlink_tx", "nvlink_rx", "pcie_tx", "pcie_rx", "nic_tx", "nic_rx", "leaf_up", "spine_down")


@dataclass(frozen=True, kw_only=True, slots=True)
class Link:
    id: int
    cls: str
    src: tuple
    dst: tuple
    capacity: float  # B/s achievable
    latency: float  # s
    message_latency: float = 0.0

    @property
    def name(self) -> str:
        return f"{_fmt(self.src)}->{_fmt(self.dst)}"


def _fmt(node: tuple) -> str:
    return node[0] + ":" + ".".join(str(x) for x in node[1:])


class Topology:
    """Graph + link table + hardware routing. Build with ``Topology(cfg)`` or ``load_topology(name)``."""

    def __init__(self, cfg: TopologyConfig, *, check_connected: bool = True) -> None:
        self.cfg = cfg
        self.graph = nx.DiGraph()
        self.links: list[Link] = []
        self._edge: dict[tuple, int] = {}
        self._paths: dict[tuple[int, int], tuple[int, ...]] = {}
        self._build()
        if check_connected:
            self.check_connected()

    # ------------------------------------------------------------ build
    def _add(self, cls: str, a: tuple, b: tuple, spec: LinkSpec, capacity: float | None = None) -> int:
        lid = len(self.links)
        cap = spec.effective_bandwidth if capacity is None else capacity
        self.links.append(Link(id=lid, cls=cls, src=a, dst=b, capacity=cap, latency=spec.latency,
                               message_latency=spec.message_latency))
        self.graph.add_edge(a, b, id=lid, cls=cls)
        self._edge[(a, b)] = lid
        return lid

    def _build(self) -> None:
        c = self.cfg
        for g in range(c.n_gpus):
            self.graph.add_node(("gpu", g), kind="gpu", node=g // c.gpus_per_node)
        for n in range(c.n_nodes):
            sw = ("nvsw", n)
            if c.gpus_per_node > 1:
                for i in range(c.gpus_per_node):
                    g = ("gpu", n * c.gpus_per_node + i)
                    self._add("nvlink_tx", g, sw, c.scale_up)
                    self._add("nvlink_rx", sw, g, c.scale_up)
        if c.nic is None:
            return
        f = c.fabric
        pcie = c.pcie or LinkSpec(bandwidth=1e30, latency=0.0)
        n_leaves = -(-c.n_nodes // f.nodes_per_leaf)
        for n in range(c.n_nodes):
            for k in range(c.nics_per_node):
                nic = ("nic", n, k)
                for i in range(k * c.gpus_per_nic, (k + 1) * c.gpus_per_nic):
                    g = ("gpu", n * c.gpus_per_node + i)
                    self._add("pcie_tx", g, nic, pcie)
                    self._add("pcie_rx", nic, g, pcie)
                leaf = self._leaf(n, k)
                self._add("nic_tx", nic, leaf, c.nic)
                self._add("nic_rx", leaf, nic, c.nic)
        if f.kind == "fat-tree" and n_leaves == 1 or f.kind == "multi-plane" and n_leaves == 1:
            return
        up = LinkSpec(bandwidth=c.nic.bandwidth, latency=f.spine_hop_latency,
                      achievable_fraction=c.nic.achievable_fraction)
        for plane in range(self.n_planes):
            for leaf_i in range(n_leaves):
                leaf = ("leaf", plane, leaf_i)
                nics = self._nics_under_leaf(leaf_i)
                cap = nics * c.nic.effective_bandwidth / f.oversubscription
                spine = ("spine", plane if f.kind == "multi-plane" else 0)
                self._add("leaf_up", leaf, spine, up, cap)
                self._add("spine_down", spine, leaf, up, cap)

    @property
    def n_planes(self) -> int:
        return self.cfg.fabric.n_planes if self.cfg.fabric.kind in ("multi-plane", "rail-optimized") else 1

    def _leaf(self, node: int, nic: int) -> tuple:
        plane = nic % self.n_planes
        return ("leaf", plane, node // self.cfg.fabric.nodes_per_leaf)

    def _nics_under_leaf(self, leaf_i: int) -> int:
        c = self.cfg
        nodes = min(c.fabric.nodes_per_leaf, c.n_nodes - leaf_i * c.fabric.nodes_per_leaf)
        per_node = c.nics_per_node // self.n_planes if self.n_planes > 1 else c.nics_per_node
        return nodes * per_node

    def check_connected(self) -> None:
        """Every GPU must reach every other GPU (the graph is strongly connected over GPUs)."""
        gpus = [("gpu", g) for g in range(self.cfg.n_gpus)]
        if len(gpus) == 1:
            return
        comps = list(nx.strongly_connected_components(self.graph))
        comp_of = {}
        for i, comp in enumerate(comps):
            for v in comp:
                comp_of[v] = i
        ids = {comp_of[g] for g in gpus}
        if len(ids) > 1:
            sizes = sorted((sum(1 for g in gpus if comp_of[g] == i) for i in ids), reverse=True)
            raise ConfigError(f"{self.cfg.name}: disconnected graph: the {len(gpus)} GPUs fall into {len(ids)} "
                              f"groups of sizes {sizes[:8]}")

    # ------------------------------------------------------------ queries
    @property
    def n_gpus(self) -> int:
        return self.cfg.n_gpus

    def node_of(self, gpu: int) -> int:
        return gpu // self.cfg.gpus_per_node

    def local_of(self, gpu: int) -> int:
        return gpu % self.cfg.gpus_per_node

    def nic_of(self, gpu: int) -> int:
        return self.local_of(gpu) // self.cfg.gpus_per_nic

    def plane_of(self, gpu: int) -> int:
        return self.nic_of(gpu) % self.n_planes

    def _check_gpu(self, g: int) -> None:
        if not 0 <= g < self.cfg.n_gpus:
            raise ConfigError(f"GPU {g} not in topology {self.cfg.name} (0..{self.cfg.n_gpus - 1})")

    def link(self, a: tuple, b: tuple) -> int:
        return self._edge[(a, b)]

    def path(self, src: int, dst: int) -> tuple[int, ...]:
        """Link ids from GPU ``src`` to GPU ``dst`` as the hardware routes them (cached)."""
        key = (src, dst)
        p = self._paths.get(key)
        if p is None:
            self._check_gpu(src)
            self._check_gpu(dst)
            p = self._paths[key] = self._route(src, dst)
        return p

    def _route(self, s: int, d: int) -> tuple[int, ...]:
        c = self.cfg
        if s == d:
            return ()
        ns, nd = self.node_of(s), self.node_of(d)
        if ns == nd:
            sw = ("nvsw", ns)
            return (self._edge[(("gpu", s), sw)], self._edge[(sw, ("gpu", d))])
        if c.fabric.kind == "multi-plane" and self.plane_of(s) != self.plane_of(d):
            # PXN: forward over NVLink to the local GPU that shares d's NIC index (so d's plane), then the plane.
            relay = ns * c.gpus_per_node + self.local_of(d)
            return self._route(s, relay) + self._route(relay, d)
        nic_s, nic_d = ("nic", ns, self.nic_of(s)), ("nic", nd, self.nic_of(d))
        ls, ld = self._leaf(ns, nic_s[2]), self._leaf(nd, nic_d[2])
        hops = [self._edge[(("gpu", s), nic_s)], self._edge[(nic_s, ls)]]
        if ls != ld:
            spine = ("spine", ls[1] if c.fabric.kind == "multi-plane" else 0)
            hops += [self._edge[(ls, spine)], self._edge[(spine, ld)]]
        hops += [self._edge[(ld, nic_d)], self._edge[(nic_d, ("gpu", d))]]
        return tuple(hops)

    def path_latency(self, path: tuple[int, ...]) -> float:
        return sum(self.links[i].latency for i in path) + max((self.links[i].message_latency for i in path),
                                                               default=0.0)

    def bottleneck(self, src: int, dst: int) -> float:
        """Capacity (B/s) of the slowest link on the route; inf for a GPU to itself."""
        p = self.path(src, dst)
        return min((self.links[i].capacity for i in p), default=float("inf"))

    def gpu_ids(self) -> range:
        return range(self.cfg.n_gpus)


def load_topology(path_or_name: str, *, check_connected: bool = True) -> Topology:
    return Topology(load_topology_config(path_or_name), check_connected=check_connected)
