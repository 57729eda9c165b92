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

from dsv3sim.config.errors import ConfigError

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
        if not self.bandwidth > 0:
            raise ConfigError(f"link bandwidth must be > 0 B/s, got {self.bandwidth}")
        if self.latency < 0 or self.message_latency < 0:
            raise ConfigError(f"link latencies must be >= 0 s, got {self.latency}, {self.message_latency}")
        if not 0 < self.achievable_fraction <= 1:
            raise ConfigError(f"achievable_fraction must be in (0, 1], got {self.achievable_fraction}")

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
        if self.kind not in FABRIC_KINDS:
            raise ConfigError(f"fabric.kind {self.kind!r} unknown (one of {', '.join(FABRIC_KINDS)})")
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
        if self.n_nodes < 1 or self.gpus_per_node < 1:
            raise ConfigError(f"{self.name}: n_nodes={self.n_nodes} and gpus_per_node={self.gpus_per_node} must be >= 1")
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
        if not 0 <= self.comm_sms:
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
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return topology_from_dict(raw, name=raw.get("name", p.stem))


def _link(d: dict[str, Any], where: str) -> LinkSpec:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    known = {"bandwidth_GBps", "latency_us", "achievable_fraction", "message_latency_us", "kind", "per_node", "note"}
    extra = set(d) - known
    if extra:
        raise ConfigError(f"{where}: unknown keys {sorted(extra)} (known: {sorted(known)})")
    if "bandwidth_GBps" not in d:
        raise ConfigError(f"{where}: missing bandwidth_GBps")
    return LinkSpec(bandwidth=float(d["bandwidth_GBps"]) * GB, latency=float(d.get("latency_us", 0.0)) * US,
                    achievable_fraction=float(d.get("achievable_fraction", 1.0)),
                    message_latency=float(d.get("message_latency_us", 0.0)) * US)


def topology_from_dict(raw: dict[str, Any], *, name: str, check_gpu: bool = True) -> TopologyConfig:
    known = {"name", "description", "sources", "gpu", "n_nodes", "gpus_per_node", "n_gpus", "scale_up", "pcie", "nic",
             "fabric", "comm_sms", "kernel_latency_us", "collectives"}
    extra = set(raw) - known
    if extra:
        raise ConfigError(f"{name}: unknown keys {sorted(extra)} (known: {sorted(known)})")
    for k in ("gpu", "n_nodes", "gpus_per_node", "scale_up"):
        if k not in raw:
            raise ConfigError(f"{name}: missing required key {k!r}")
    n_nodes, gpn = int(raw["n_nodes"]), int(raw["gpus_per_node"])
    if "n_gpus" in raw and int(raw["n_gpus"]) != n_nodes * gpn:
        raise ConfigError(f"{name}: n_gpus={raw['n_gpus']} != n_nodes={n_nodes} x gpus_per_node={gpn}")
    gpu = str(raw["gpu"])
    if check_gpu:
        _check_gpu(gpu, name)
    nic = raw.get("nic")
    fab = dict(raw.get("fabric") or {})
    fab_known = {"kind", "n_planes", "nodes_per_leaf", "oversubscription", "spine_hop_latency_us", "note"}
    if set(fab) - fab_known:
        raise ConfigError(f"{name}: fabric: unknown keys {sorted(set(fab) - fab_known)} (known: {sorted(fab_known)})")
    fabric = FabricSpec(kind=str(fab.get("kind", "none")), n_planes=int(fab.get("n_planes", 1)),
                        nodes_per_leaf=int(fab.get("nodes_per_leaf", 1)),
                        oversubscription=float(fab.get("oversubscription", 1.0)),
                        spine_hop_latency=float(fab.get("spine_hop_latency_us", 0.0)) * US)
    su = raw["scale_up"]
    return TopologyConfig(
        name=str(name), gpu=gpu, n_nodes=n_nodes, gpus_per_node=gpn,
        scale_up=_link(su, f"{name}: scale_up"), scale_up_kind=str(su.get("kind", "nvlink")),
        pcie=_link(raw["pcie"], f"{name}: pcie") if raw.get("pcie") else None,
        nic=_link(nic, f"{name}: nic") if nic else None,
        nics_per_node=int(nic.get("per_node", 0)) if nic else 0,
        fabric=fabric, comm_sms=int(raw.get("comm_sms", 0)),
        kernel_latency=float(raw.get("kernel_latency_us", 0.0)) * US, collectives=_collectives(raw, name),
        description=str(raw.get("description", "")).strip(), sources=tuple(raw.get("sources") or ()),
    )


def _collectives(raw: dict[str, Any], name: str) -> tuple:
    c = raw.get("collectives") or {}
    if not isinstance(c, dict):
        raise ConfigError(f"{name}: collectives must be a mapping of kind -> {{latency_us, bandwidth_GBps}}")
    out = []
    for k, v in c.items():
        if not isinstance(v, dict) or set(v) - {"latency_us", "bandwidth_GBps"} or "bandwidth_GBps" not in v:
            raise ConfigError(f"{name}: collectives.{k} must be {{latency_us, bandwidth_GBps}}, got {v!r}")
        lat, bw = float(v.get("latency_us", 0.0)), float(v["bandwidth_GBps"])
        if lat < 0 or bw <= 0:
            raise ConfigError(f"{name}: collectives.{k}: latency_us={lat} must be >= 0, bandwidth_GBps={bw} > 0")
        out.append((str(k), lat * US, bw * GB))
    return tuple(out)


def _check_gpu(gpu: str, where: str) -> None:
    """Unknown GPU names are an error; the table lives in dsv3sim.config.hardware (profile helper)."""
    try:
        from dsv3sim.config import hardware
    except ImportError:  # table not written yet: accept the name, the simulator does not need its fields
        return
    try:
        hardware.get_gpu(gpu)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{where}: unknown GPU {gpu!r} ({e})") from None
