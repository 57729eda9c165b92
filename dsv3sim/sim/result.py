"""CommResult: what one simulated collective did (time, bytes per link class, busiest link, conservation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.topology.graph import LINK_CLASSES, Topology


@dataclass(frozen=True, kw_only=True, slots=True)
class CommResult:
    kind: str
    mode: str
    n_ranks: int
    time_s: float
    rdma_GBps: float  # RDMA bytes put on the wire (nic_tx) per rank / time
    nvlink_GBps: float  # NVLink bytes received (nvlink_rx) per rank / time
    deepep_rdma_GBps: float  # DeepEP's "logical" bandwidth: its tests' byte counts / time (see deepep.py)
    deepep_nvlink_GBps: float
    bytes_by_class: dict[str, float] = field(default_factory=dict)
    busiest_link: str = ""
    busiest_link_class: str = ""
    busiest_link_utilisation: float = 0.0
    n_flows: int = 0
    n_events: int = 0
    tokens_dispatched: int = 0  # token->rank copies (normal) or token->expert copies (low-latency)
    tokens_combined: int = 0
    bytes_sent: float = 0.0
    bytes_received: float = 0.0
    n_groups: int = 1  # EP/collective groups the result stands for
    groups_simulated: int = 1
    comm_sms: int = 0
    method: str = "flow"  # "flow": max-min flow simulation; "bound": bottleneck-link bound (ep_run.simulate_ep)

    def to_dict(self) -> dict:
        return asdict(self)


def link_stats(topo: Topology, net: FlowNetwork, t: float, *, scale: float = 1.0) -> dict:
    """Bytes per link class and the busiest link (bytes / (capacity * t)) from a finished network."""
    by_class = dict.fromkeys(LINK_CLASSES, 0.0)
    best, best_u = None, -1.0
    for lid, b in sorted(net.link_bytes.items()):
        link = topo.links[lid]
        by_class[link.cls] += b * scale
        u = b / (net.capacity[lid] * t) if t > 0 else 0.0
        if u > best_u + 1e-12:
            best, best_u = link, u
    return {"bytes_by_class": {k: v for k, v in by_class.items() if v},
            "busiest_link": best.name if best else "", "busiest_link_class": best.cls if best else "",
            "busiest_link_utilisation": max(best_u, 0.0)}
