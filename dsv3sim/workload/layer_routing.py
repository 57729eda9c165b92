"""Per-MoE-layer routing: which EP plan each MoE layer runs with, and what its all-to-all costs.

Every DeepSeek-V3 MoE layer has its own gate, so its own expert loads, and EPLB balances each layer on its own
loads (deepseek-ai/EPLB: ``rebalance_experts(weight[num_layers, num_logical_experts], ...)``). A scenario
simulates R distinct routings; MoE layer j (0-based over the MoE layers in model order; MTP layers continue the
count) runs routing ``j mod R``:

* ``routing_layers=None``: every layer of a routing-trace file (R = min(layers in the file, MoE layers)); one
  routing for uniform or ``synth:`` routing, whose layers are statistically alike (and a synthetic EP64
  micro-batch costs seconds to draw), so R > 1 is opt-in there.
* Expert compute of a layer uses its own busiest GPU's (token, expert) rows.
* All-to-all: routing 0 is event-simulated (or bounded, ``comm_model='bound'``); routing r's time is routing 0's
  times the ratio of their busiest-link bounds (``comm.ep_link_bound``): the bound carries the layer's traffic
  pattern, the event simulation of routing 0 the absolute level (relay pipelining, latencies). With
  ``comm_model='bound'`` each layer's own bound is its time, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsv3sim.config.model import ModelConfig
from dsv3sim.workload import comm as C


@dataclass(frozen=True, slots=True)
class LayerRouting:
    keys: tuple[tuple, ...]  # ep_plan keys (with 'layer'), one per routing
    plans: tuple[C.EpPlan, ...]
    positions: dict[int, int]  # layer index -> its position among the MoE layers (MoE layers only)

    def __len__(self) -> int:
        return len(self.plans)

    def index(self, moe_j: int) -> int:
        return moe_j % len(self.plans)

    def routing_of(self, layer: int) -> int:
        """The routing layer ``layer`` runs (0 for a dense layer, which has none)."""
        j = self.positions.get(layer)
        return 0 if j is None else self.index(j)

    def loads(self) -> dict:
        """Result fields: loads per GPU before/after placement and per logical expert, one row per routing
        (1-D lists when there is one routing, as a single-layer result always had); nodes-per-token summed."""
        rows = {"expert_load_before": [p.load_before.tolist() for p in self.plans],
                "expert_load_after": [p.load_after.tolist() for p in self.plans],
                "expert_load_logical": [p.expert_load.tolist() for p in self.plans]}
        if len(self.plans) == 1:
            rows = {k: v[0] for k, v in rows.items()}
        hist = np.sum([p.nodes_per_token for p in self.plans], axis=0)
        rows["routing_layers"] = len(self.plans)
        rows["nodes_per_token_hist"] = hist.tolist()
        return rows


def n_routings(trace: str | None, n_moe: int, requested: int | None) -> int:
    if requested is not None:
        return max(1, min(requested, n_moe))
    n = C.trace_layers(trace)
    return 1 if n is None else max(1, min(n, n_moe))


def layer_routing(base_key: tuple, positions: dict[int, int], requested: int | None) -> LayerRouting:
    """Plans of the R routings for an EP group described by ``base_key`` (``ep_plan``'s arguments), for the MoE
    layers at ``positions`` (``moe_positions``)."""
    base = {k: v for k, v in base_key if k != "layer"}
    r = n_routings(base.get("trace"), len(positions), requested)
    keys = tuple(tuple(sorted({**base, "layer": i}.items())) for i in range(r))
    return LayerRouting(keys=keys, plans=tuple(C.ep_plan(**dict(k)) for k in keys), positions=dict(positions))


def comm_scales(topo, lr: LayerRouting, specs: dict[str, tuple[str, str, str]], hidden: int) -> list[dict]:
    """Per routing r: {slice name: bound_r / bound_0} for ``specs`` {name: (kind, mode, dtype)}."""
    if len(lr) == 1:
        return [dict.fromkeys(specs, 1.0)]
    bounds = [{name: C.ep_link_bound(topo, key, kind=kind, mode=mode, dtype=dt, hidden=hidden)[0]
               for name, (kind, mode, dt) in specs.items()} for key in lr.keys]
    return [{name: (b[name] / bounds[0][name] if bounds[0][name] > 0 else 1.0) for name in specs} for b in bounds]


def layer_comm(topo, lr: LayerRouting, comm: dict[str, float], specs: dict[str, tuple[str, str, str]], hidden: int,
               latency: float = 0.0) -> list[dict[str, float]]:
    """Per routing r: routing 0's slice times ``comm`` with the part beyond ``latency`` scaled by
    bound_r / bound_0 (module docstring)."""
    return [{n: (comm[n] - latency) * sc[n] + latency for n in comm}
            for sc in comm_scales(topo, lr, specs, hidden)]


def link_bytes(topo, lr: LayerRouting, specs: dict[str, tuple[str, str, str]], hidden: int) -> list[dict]:
    """Per routing r: {slice name: {link class: bytes of the whole EP group}} from ``comm.ep_link_bound``
    (the bytes a routing puts on each link class do not depend on timing, so the bound's are exact)."""
    return [{name: dict(C.ep_link_bound(topo, key, kind=kind, mode=mode, dtype=dt, hidden=hidden)[1])
             for name, (kind, mode, dt) in specs.items()} for key in lr.keys]


def weights(lr: LayerRouting) -> list[float]:
    """Share of the MoE layers that run each routing (layer j runs j mod R)."""
    counts = [0] * len(lr)
    for j in lr.positions.values():
        counts[lr.index(j)] += 1
    return [c / max(1, len(lr.positions)) for c in counts]


def moe_positions(cfg: ModelConfig, n_layers: int) -> dict[int, int]:
    """Layer index (MTP layers at L, L+1, ...) -> its position j among the MoE layers, for layers that are MoE."""
    out: dict[int, int] = {}
    for i in range(n_layers):
        if cfg.is_moe and cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1)):
            out[i] = len(out)
    return out
