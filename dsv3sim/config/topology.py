"""TopologyConfig: a GPU cluster read from ``topologies/*.yaml`` (the "where" input).

A cluster is ``n_nodes`` nodes of ``gpus_per_node`` GPUs. Inside a node the GPUs share a scale-up
fabric (NVLink through NVSwitch: one egress and one ingress link per GPU). Across nodes each GPU
reaches a NIC over PCIe, and NICs sit under leaf switches of a scale-out fabric:

* ``multi-plane``: DeepSeek's multi-plane two-layer fat-tree (DeepSeek-V3 report §3.1; "Insights into
  DeepSeek-V3", ISCA'25 §5.1): NIC ``i`` of every node is in plane ``i``; planes never meet, so
  traffic between different NIC indices is first forwarded over NVLink inside the node.
* ``rail-optimized``: NIC ``i`` of every node hangs off rail ``i``'s leaves; rails meet at the spines.
* ``fat-tree``: one plane, every NIC under a leaf, leaves under spines.
* ``none``: single node, no NICs.

Units in field names at the edge (``bandwidth_GBps``, ``latency_us``), SI (B/s, s) inside.
Each link class has a nominal bandwidth and an ``achievable_fraction`` (a physical calibration knob:
protocol and packet overheads); simulated links carry ``bandwidth * achievable_fraction``.
Loaded with ``yaml.safe_load`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsv3sim.config import checks as ck
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.hardware import get_gpu

FABRIC_KINDS = ("multi-plane", "rail-optimized", "fat-tree", "none")
GB = 1e9
US = 1e-6


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkSpec:
    """One class of link (per GPU/NIC, per direction)."""

    bandwidth: float  # B/s nominal, per direction
    latency: float  # s per hop
    achievable_fraction: float = 1.0
    message_latency: float = 0.0  # s, extra start-up per message (doorbell, completion, flags)

    def __post_init__(self) -> None:
        ck.number(self.bandwidth, "link bandwidth (B/s)", lo=0, lo_open=True)
        ck.number(self.latency, "link latency (s)", lo=0)
        ck.number(self.message_latency, "link message_latency (s)", lo=0)
        ck.number(self.achievable_fraction, "link achievable_fraction", lo=0, lo_open=True, hi=1)

    @property
    def effective_bandwidth(self) -> float:
        return self.bandwidth * self.achievable_fraction


@dataclass(frozen=True, kw_only=True, slots=True)
class FabricSpec:
    kind: str = "none"
    n_planes: int = 1
    nodes_per_leaf: int = 1
    oversubscription: float = 1.0  # leaf down-capacity : up-capacity
    spine_hop_latency: float = 0.0  # s, each of leaf->spine and spine->leaf

    def __post_init__(self) -> None:
        ck.string(self.kind, "fabric.kind", choices=FABRIC_KINDS)
        ck.integer(self.n_planes, "fabric.n_planes", lo=1)
        ck.integer(self.nodes_per_leaf, "fabric.nodes_per_leaf", lo=1)
        ck.number(self.oversubscription, "fabric.oversubscription", lo=1)
        ck.number(self.spine_hop_latency, "fabric.spine_hop_latency (s)", lo=0)
        if self.n_planes < 1 or self.nodes_per_leaf < 1 or not self.oversubscription >= 1:
            raise ConfigError(f"fabric: n_planes={self.n_planes}, nodes_per_leaf={self.nodes_per_leaf} must be >= 1, "
                              f"oversubscription={self.oversubscription} must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class TopologyConfig:
    name: str
    gpu: str
    n_nodes: int
    gpus_per_node: int
    scale_up: LinkSpec
    scale_up_kind: str = "nvlink"
    pcie: LinkSpec | None = None
    nic: LinkSpec | None = None
    nics_per_node: int = 0
    fabric: FabricSpec = field(default_factory=FabricSpec)
    comm_sms: int = 0  # SMs a communication kernel occupies (DeepSeek-V3 §3.2.2: 20 of 132)
    kernel_latency: float = 0.0  # s, launch + synchronisation of one collective kernel
    # measured alpha-beta fits of whole collectives on this machine: ((kind, latency s, bandwidth B/s), ...) from
    # the YAML's ``collectives: {kind: {latency_us, bandwidth_GBps}}``, written by dsv3sim validate's calibration
    # (all_to_all, all_reduce); empty for modelled clusters
    collectives: tuple = ()
    description: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in ("n_nodes", "gpus_per_node", "nics_per_node", "comm_sms"):
            ck.integer(getattr(self, f), f"{self.name}: {f}")
        ck.number(self.kernel_latency, f"{self.name}: kernel_latency (s)", lo=0)
        if self.n_nodes < 1 or self.gpus_per_node < 1:
            raise ConfigError(f"{self.name}: n_nodes={self.n_nodes} and gpus_per_node={self.gpus_per_node} "
                              "must be >= 1")
        ck.check_limit("gpus", self.n_nodes * self.gpus_per_node,
                       f"{self.name}: n_nodes x gpus_per_node = {self.n_nodes} x {self.gpus_per_node} GPUs")
        if self.nic is None and self.n_nodes > 1:
            raise ConfigError(f"{self.name}: disconnected graph: {self.n_nodes} nodes but no `nic` section, so nodes "
                              "cannot reach each other")
        if self.nic is not None:
            if self.nics_per_node < 1:
                raise ConfigError(f"{self.name}: nic.per_node={self.nics_per_node} must be >= 1 when a nic is given")
            if self.gpus_per_node % self.nics_per_node:
                raise ConfigError(f"{self.name}: NIC count mismatch: nic.per_node={self.nics_per_node} does not divide "
                                  f"gpus_per_node={self.gpus_per_node} (each GPU needs its own NIC or an equal share)")
            if self.fabric.kind in ("multi-plane", "rail-optimized") and self.nics_per_node != self.fabric.n_planes:
                raise ConfigError(f"{self.name}: NIC count mismatch: fabric {self.fabric.kind} has n_planes="
                                  f"{self.fabric.n_planes} but nic.per_node={self.nics_per_node} (one NIC per plane)")
            if self.fabric.kind == "none" and self.n_nodes > 1:
                raise ConfigError(f"{self.name}: disconnected graph: fabric.kind none with {self.n_nodes} nodes")
        if not self.comm_sms >= 0:
            raise ConfigError(f"{self.name}: comm_sms={self.comm_sms} must be >= 0")

    @property
    def n_gpus(self) -> int:
        return self.n_nodes * self.gpus_per_node

    @property
    def gpus_per_nic(self) -> int:
        return self.gpus_per_node // max(self.nics_per_node, 1)


# ---------------------------------------------------------------- loading

def topology_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "topologies"


def resolve_topology_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    for cand in (topology_dir() / p, topology_dir() / f"{p}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(x.stem for x in topology_dir().glob("*.yaml"))
    raise ConfigError(f"topology {str(path)!r} not found (a path, or one of: {', '.join(known)})")


def load_topology_config(path: str | Path) -> TopologyConfig:
    """Load a topology YAML (a path or a bare name from ``topologies/``) and check the GPU name."""
    p = resolve_topology_path(path)
    try:
        raw = yaml.safe_load(ck.read_text(p, "topology"))
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{p}: not valid YAML ({ck.one_line(e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    name = raw.get("name", p.stem)
    return topology_from_dict(raw, name=name if isinstance(name, str) and name else p.stem)


def _link(d: Any, where: str) -> LinkSpec:
    d = ck.mapping(d, where)
    ck.known_keys(d, ("bandwidth_GBps", "latency_us", "achievable_fraction", "message_latency_us", "kind",
                      "per_node", "note"), where)
    if "bandwidth_GBps" not in d:
        raise ConfigError(f"{where}: missing bandwidth_GBps")
    return LinkSpec(bandwidth=ck.number(d["bandwidth_GBps"], f"{where}.bandwidth_GBps", lo=0, lo_open=True) * GB,
                    latency=ck.number(d.get("latency_us", 0.0), f"{where}.latency_us", lo=0) * US,
                    achievable_fraction=ck.number(d.get("achievable_fraction", 1.0), f"{where}.achievable_fraction",
                                                  lo=0, lo_open=True, hi=1),
                    message_latency=ck.number(d.get("message_latency_us", 0.0), f"{where}.message_latency_us",
                                              lo=0) * US)


def topology_from_dict(raw: dict[str, Any], *, name: str, check_gpu: bool = True) -> TopologyConfig:
    """Build a TopologyConfig from a parsed YAML mapping; every field type- and range-checked (one-line errors)."""
    name = str(name)
    ck.known_keys(raw, ("name", "description", "sources", "gpu", "n_nodes", "gpus_per_node", "n_gpus", "scale_up",
                        "pcie", "nic", "fabric", "comm_sms", "kernel_latency_us", "collectives"), name)
    for k in ("gpu", "n_nodes", "gpus_per_node", "scale_up"):
        if k not in raw:
            raise ConfigError(f"{name}: missing required key {k!r}")
    n_nodes = ck.integer(raw["n_nodes"], f"{name}: n_nodes", lo=1)
    gpn = ck.integer(raw["gpus_per_node"], f"{name}: gpus_per_node", lo=1)
    ck.check_limit("gpus", n_nodes * gpn, f"{name}: n_nodes x gpus_per_node = {n_nodes} x {gpn} GPUs")
    if "n_gpus" in raw and ck.integer(raw["n_gpus"], f"{name}: n_gpus") != n_nodes * gpn:
        raise ConfigError(f"{name}: n_gpus={raw['n_gpus']} != n_nodes={n_nodes} x gpus_per_node={gpn}")
    gpu = ck.string(raw["gpu"], f"{name}: gpu", empty=False)
    if check_gpu:
        _check_gpu(gpu, name)
    nic = raw.get("nic")
    if nic is not None:
        ck.mapping(nic, f"{name}: nic")
    fab = dict(ck.mapping(raw.get("fabric") or {}, f"{name}: fabric"))
    ck.known_keys(fab, ("kind", "n_planes", "nodes_per_leaf", "oversubscription", "spine_hop_latency_us", "note"),
                  f"{name}: fabric")
    fabric = FabricSpec(
        kind=ck.string(fab.get("kind", "none"), f"{name}: fabric.kind", choices=FABRIC_KINDS),
        n_planes=ck.integer(fab.get("n_planes", 1), f"{name}: fabric.n_planes", lo=1),
        nodes_per_leaf=ck.integer(fab.get("nodes_per_leaf", 1), f"{name}: fabric.nodes_per_leaf", lo=1),
        oversubscription=ck.number(fab.get("oversubscription", 1.0), f"{name}: fabric.oversubscription", lo=1),
        spine_hop_latency=ck.number(fab.get("spine_hop_latency_us", 0.0), f"{name}: fabric.spine_hop_latency_us",
                                    lo=0) * US)
    su = ck.mapping(raw["scale_up"], f"{name}: scale_up")
    return TopologyConfig(
        name=name, gpu=gpu, n_nodes=n_nodes, gpus_per_node=gpn,
        scale_up=_link(su, f"{name}: scale_up"),
        scale_up_kind=ck.string(su.get("kind", "nvlink"), f"{name}: scale_up.kind"),
        pcie=_link(raw["pcie"], f"{name}: pcie") if raw.get("pcie") is not None else None,
        nic=_link(nic, f"{name}: nic") if nic else None,
        nics_per_node=ck.integer(nic.get("per_node", 0), f"{name}: nic.per_node", lo=0) if nic else 0,
        fabric=fabric, comm_sms=ck.integer(raw.get("comm_sms", 0), f"{name}: comm_sms", lo=0),
        kernel_latency=ck.number(raw.get("kernel_latency_us", 0.0), f"{name}: kernel_latency_us", lo=0) * US,
        collectives=_collectives(raw, name),
        description=str(ck.optional(ck.string, raw.get("description"), f"{name}: description") or "").strip(),
        sources=ck.string_list(raw.get("sources"), f"{name}: sources"),
    )


def _collectives(raw: dict[str, Any], name: str) -> tuple:
    c = raw.get("collectives") or {}
    if not isinstance(c, dict):
        raise ConfigError(f"{name}: collectives must be a mapping of kind -> {{latency_us, bandwidth_GBps}}")
    out = []
    for k, v in c.items():
        if not isinstance(v, dict) or set(v) - {"latency_us", "bandwidth_GBps"} or "bandwidth_GBps" not in v:
            raise ConfigError(f"{name}: collectives.{k} must be {{latency_us, bandwidth_GBps}}, got {v!r}")
        lat = ck.number(v.get("latency_us", 0.0), f"{name}: collectives.{k}.latency_us", lo=0)
        bw = ck.number(v["bandwidth_GBps"], f"{name}: collectives.{k}.bandwidth_GBps", lo=0, lo_open=True)
        out.append((str(k), lat * US, bw * GB))
    return tuple(out)


def _check_gpu(gpu: str, where: str) -> None:
    """Unknown GPU names are an error; the table lives in dsv3sim.config.hardware."""
    try:
        get_gpu(gpu)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{where}: unknown GPU {gpu!r} ({e})") from None
