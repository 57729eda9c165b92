"""Is a scenario's GPU the one its topology was described for? Notes for the user, never an error.

A scenario may put another GPU on a topology (``Scenario.gpu``): compute, HBM size and HBM bandwidth then come
from that GPU's datasheet row (``config/hardware.py``), while NVLink, the NICs and the fabric stay the
topology's (``topologies/*.yaml``). Within one architecture generation that is a what-if worth asking (H200 or
H100 on DeepSeek's H800 network); across generations (a B200 on an H800 network) the pairing describes no
machine anyone can buy, so it is flagged as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True, kw_only=True, slots=True)
class Note:
    level: str  # "note" | "warning"
    text: str


def gpu_topology_notes(topology: str, gpu: str | None) -> list[Note]:
    """Notes on running ``gpu`` (None: the topology's own) on ``topology`` (a name or YAML path)."""
    from dsv3sim.config.hardware import get_gpu
    from dsv3sim.config.topology import load_topology_config

    if not gpu:
        return []
    topo = load_topology_config(topology)
    own, new = get_gpu(topo.gpu), get_gpu(gpu)
    if own.name == new.name:
        return []
    link = f"{topo.scale_up_kind} {topo.scale_up.bandwidth / GB:g} GB/s"
    if topo.nic is not None:
        link += f", NIC {topo.nic.bandwidth / GB:g} GB/s"
    out = [Note(level="note", text=(
        f"GPU {new.name} on topology {topo.name} (described for {own.name}): compute and HBM are the "
        f"{new.name}'s; the network ({link} per GPU per direction) comes from the topology, not from the "
        f"{new.name} datasheet ({new.nvlink_bandwidth / GB:g} GB/s NVLink)"))]
    if new.arch != own.arch:
        out.append(Note(level="warning", text=(
            f"inconsistent pairing: {new.name} ({new.arch}) on a network built for {own.name} ({own.arch}); no "
            f"such machine exists, so read the result as a bound, or use a topology described for {new.name}")))
    return out
