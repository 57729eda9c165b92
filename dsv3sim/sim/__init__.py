"""L3: the simpy engine: max-min fair flows on topology links, GPUs with a comm SM partition, collectives.

Public API (see NOTES.md):
  FlowNetwork(env, capacities)            fluid links; ``transfer(path, nbytes, latency) -> Event``
  Gpu(env, rank=, n_sms=, comm_sms=)      compute stream + comm partition
  simulate_dispatch / simulate_combine / simulate_ep(topology, ep=, routing=, n_experts=, mode=, dtype=, ...)
  start_ep(env, net, topology, counts, kind=, ...) -> Process    (EP inside a caller's Environment)
  simulate_collective / start_collective  ring / tree all-reduce, all-gather, reduce-scatter, p2p
  uniform_routing / load_routing          routings [ep, tokens, k]
"""

from dsv3sim.sim.collectives import simulate_collective, start_collective
from dsv3sim.sim.deepep import EpCounts, ep_counts, start_ep, token_bytes
from dsv3sim.sim.ep_run import ep_groups, groups_independent, simulate_combine, simulate_dispatch, simulate_ep
from dsv3sim.sim.flows import FlowNetwork
from dsv3sim.sim.gpu import Gpu
from dsv3sim.sim.result import CommResult
from dsv3sim.sim.routing import load_routing, uniform_routing

__all__ = ["CommResult", "EpCounts", "FlowNetwork", "Gpu", "ep_counts", "ep_groups", "groups_independent",
           "load_routing", "simulate_collective", "simulate_combine", "simulate_dispatch", "simulate_ep",
           "start_collective", "start_ep", "token_bytes", "uniform_routing"]
