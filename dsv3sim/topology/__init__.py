"""L1: the cluster as a graph (GPUs, NVSwitch, NICs, leaf/spine switches, planes) and hardware routing."""

from dsv3sim.topology.graph import LINK_CLASSES, Link, Topology, load_topology

__all__ = ["LINK_CLASSES", "Link", "Topology", "load_topology"]
