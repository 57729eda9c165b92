"""Capacity-planning studies around DeepSeek-V3: each function returns {name: Scenario} for ``dsv3sim run``.

    dsv3sim run scenarios/studies.py:ib_bandwidth --json reports/ib.json
Every variant changes one thing of the published setup (deepseek_v3_pretrain.pretrain, deepseek_v3_serving.*):
hardware (H200 vs H800), the network (IB halved/doubled, one degraded link), the layout (EP degree, node
limit M), numerics (FP8 vs BF16), expert placement on skewed routing, a straggler GPU, and KV capacity at long
context (MLA vs GQA, also in each decode result's ``kv.kv_compare_models``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dsv3sim.config.scenario import Scenario


def _load(name: str):
    p = Path(__file__).with_name(name)
    sp = importlib.util.spec_from_file_location(f"dsv3sim_scenario_{p.stem}", p)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    return mod


_pre = _load("deepseek_v3_pretrain.py")
_srv = _load("deepseek_v3_serving.py")
V3_TRACE = str(Path(__file__).resolve().parents[1] / "traces" / "synth_v3_ep64_nl4.npz")  # 58 MoE layers
SKEWED_TRACE = "synth:zipf=1.2"  # dsv3sim.trace.synth's generator, Zipf exponent 1.2 over experts


def _base() -> Scenario:
    return _pre.pretrain()


def h200_vs_h800() -> dict[str, Scenario]:
    """Same 2048-GPU cluster and network, H800 vs H200 GPUs (H200: 141 GB HBM3e at 4.8 TB/s, same compute).
    (topologies/h200-hgx.yaml describes a 128-GPU H200 cluster, too small for this layout.)"""
    b = _base()
    return {"h800": b.with_(name="pretrain-h800"), "h200": b.with_(name="pretrain-h200", gpu="H200")}


def ib_bandwidth() -> dict[str, Scenario]:
    """InfiniBand per-GPU bandwidth halved, as published, doubled."""
    b = _base()
    return {f"ib-x{s:g}": b.with_(name=f"pretrain-ib-x{s:g}", perturb={"nic_bandwidth_scale": s})
            for s in (0.5, 1.0, 2.0)}


def ep_degree() -> dict[str, Scenario]:
    """EP 8..128 with the rest as published (EP must divide 256 experts and DP=128)."""
    b = _base()
    return {f"ep{e}": b.with_(name=f"pretrain-ep{e}", parallel={"ep": e}) for e in (8, 16, 32, 64, 128)}


def node_limit() -> dict[str, Scenario]:
    """Node-limited routing M = 1..8 nodes per token (EP64 spans 8 nodes; DeepSeek uses M=4)."""
    b = _base()
    return {f"M{m}": b.with_(name=f"pretrain-M{m}", workload={"node_limit": m}) for m in range(1, 9)}


def pipeline_schedule() -> dict[str, Scenario]:
    """DualPipe (as published) vs 1F1B vs ZB1P on the same layout (dsv3sim.parallel schedules)."""
    b = _base()
    return {f"sched-{n}": b.with_(name=f"pretrain-{n}", workload={"schedule": n}) for n in ("dualpipe", "1f1b", "zb1p")}


def fp8_vs_bf16() -> dict[str, Scenario]:
    """FP8 GEMMs + FP8 dispatch (as published) vs BF16 everywhere."""
    b = _base()
    return {"fp8": b.with_(name="pretrain-fp8"),
            "bf16": b.with_(name="pretrain-bf16", workload={"gemm_dtype": "bf16", "dispatch_dtype": "bf16"})}


def kv_capacity_long_context() -> dict[str, Scenario]:
    """Decode at 32K and 128K context with the batch set by KV capacity (MLA); each result's
    kv.kv_compare_models holds the GQA references (Qwen2.5-72B, Llama-3-70B) at the same context."""
    d = _srv.decode_day6()
    return {f"decode-{c // 1024}k": d.with_(name=f"decode-{c // 1024}k", workload={"context_len": c,
                                                                                      "batch_per_gpu": None})
            for c in (32768, 131072)}


def placement_skewed() -> dict[str, Scenario]:
    """Skewed routing (Zipf 1.2): contiguous experts vs EPLB with redundant experts, in prefill (Day-6 unit,
    32 redundant) and in pre-training (64 redundant, hierarchical EPLB keeps each token on <= M nodes)."""
    p = _srv.prefill_day6().with_(workload={"routing_trace": SKEWED_TRACE})
    t = _base().with_(workload={"routing_trace": SKEWED_TRACE})
    return {"placement-off": p.with_(name="prefill-skewed-contiguous", workload={"placement": "contiguous",
                                                                               "redundant_experts": 0}),
            "placement-on": p.with_(name="prefill-skewed-eplb", workload={"placement": "eplb",
                                                                        "redundant_experts": 32}),
            "train-placement-off": t.with_(name="pretrain-skewed-contiguous"),
            "train-placement-on": t.with_(name="pretrain-skewed-eplb", workload={"placement": "eplb",
                                                                               "redundant_experts": 64})}


def straggler() -> dict[str, Scenario]:
    """One GPU 20 % slower (GPU 0: pipeline rank 0; EP all-to-all and DP sync make everyone wait for it)."""
    b = _base()
    return {"baseline": b.with_(name="pretrain-baseline"),
            "straggler": b.with_(name="pretrain-straggler-gpu0-x1.2",
                                 perturb={"straggler_gpu": 0, "straggler_slowdown": 1.2})}


def degraded_link() -> dict[str, Scenario]:
    """The NIC uplink of GPU 0 (node 0, plane 0) at 25 % of its capacity."""
    b = _base()
    return {"baseline": b.with_(name="pretrain-baseline"),
            "degraded": b.with_(name="pretrain-degraded-nic0", perturb={"degraded_link": "nic:0.0->leaf:0.0",
                                                                          "degraded_fraction": 0.25})}


def per_layer_routing() -> dict[str, Scenario]:
    """Each of V3's 58 MoE layers with its own routing (the committed V3-shaped synthetic trace, one trace layer per
    model layer): contiguous experts vs EPLB with 64 redundant experts balanced per layer. The report draws the
    layers x GPUs and layers x experts load maps. ~40 s of simulation (58 EP plans and link bounds each)."""
    t = _base().with_(workload={"routing_trace": V3_TRACE})
    return {"per-layer-contiguous": t.with_(name="pretrain-per-layer-contiguous"),
            "per-layer-eplb": t.with_(name="pretrain-per-layer-eplb", workload={"placement": "eplb",
                                                                                "redundant_experts": 64})}


def all_studies() -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}
    for f in (h200_vs_h800, ib_bandwidth, ep_degree, node_limit, pipeline_schedule, fp8_vs_bf16,
              kv_capacity_long_context, placement_skewed, straggler, degraded_link, per_layer_routing):
        out.update({s.name: s for s in f().values()})
    return out


DEFAULT = ib_bandwidth
