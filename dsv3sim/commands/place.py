"""`dsv3sim place --load FILE --replicas R --groups G --nodes N --gpus U`: EPLB-style expert placement with
redundant experts (phy2log, log2phy, logcnt) and per-GPU load max/mean before and after."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from dsv3sim.commands import _args as A

if TYPE_CHECKING:
    import numpy as np

NAME = "place"
HELP = "EPLB-style expert placement (redundant experts) from expert loads; maps and per-GPU balance"
DESCRIPTION = __doc__ + """
FILE: EPLB's {"weight": [[...]]} JSON, a dsv3sim routing trace (.npz) or an SGLang expert-distribution dump
(.pt with logical_count[steps, layers, experts]); read by dsv3sim.trace.load_loads. Policy: hierarchical when
--nodes divides --groups, else global (deepseek-ai/EPLB). "before" places the logical experts contiguously,
E/U per GPU, with no replicas; "after" splits each expert's load evenly over its replicas."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--load", required=True, metavar="FILE", help="expert loads: EPLB .json, trace .npz, SGLang .pt")
    p.add_argument("--replicas", type=A.pos_int, required=True,
                   help="physical experts per layer (R, multiple of --gpus)")
    p.add_argument("--groups", type=A.pos_int, required=True, help="expert groups of the gate (n_group)")
    p.add_argument("--nodes", type=A.pos_int, required=True, help="server nodes")
    p.add_argument("--gpus", type=A.pos_int, required=True, help="GPUs in the EP group (multiple of --nodes)")
    p.add_argument("--hidden", type=A.pos_int, default=7168,
                   help="hidden size for the dispatch bytes of token-level traces (default 7168, V3)")
    p.add_argument("--maps", action="store_true", help="also print phy2log, logcnt and log2phy per layer")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def dispatch_summary(trace, phy2log: np.ndarray, gpus: int, nodes: int, hidden: int) -> dict:
    """Mean per-layer DeepEP traffic and GPU work balance of a token-level trace, before (contiguous, no
    replicas) and after placement; token sources: contiguous blocks of the batch per GPU."""
    import numpy as np

    from dsv3sim.parallel.dispatch import dispatch_plan_for_trace

    E = trace.n_experts
    out = {}
    for label, p2l in (("before", np.tile(np.arange(E), (trace.n_layers, 1)) if E % gpus == 0 else None),
                       ("after", phy2log)):
        if p2l is None:
            continue
        rows = [dispatch_plan_for_trace(trace, li, p2l, n_gpus=gpus, gpus_per_node=gpus // nodes,
                                        hidden=hidden).summary() for li in range(trace.n_layers)]
        out[label] = {k: float(np.mean([r[k] for r in rows])) for k in
                      ("ib_sends_per_token", "nvlink_sends_per_token", "nodes_per_token_mean",
                       "slots_per_gpu_max_over_mean")}
        out[label]["ib_bytes_per_token_layer"] = float(np.mean([r["ib_bytes"]["total"] / r["tokens"] for r in rows]))
        out[label]["nvlink_bytes_per_token_layer"] = float(np.mean([r["nvlink_bytes"]["total"] / r["tokens"]
                                                                    for r in rows]))
        out[label]["max_nodes_per_token"] = int(max(r["max_nodes_per_token"] for r in rows))
    return out


def _balance(loads: np.ndarray) -> dict:
    import numpy as np

    mean = loads.mean(axis=1)
    mx = loads.max(axis=1)
    ratio = np.divide(mx, mean, out=np.ones_like(mx), where=mean > 0)
    return {"max": mx.tolist(), "mean": mean.tolist(), "max_over_mean": ratio.tolist(),
            "max_over_mean_avg": float(ratio.mean()), "max_over_mean_worst": float(ratio.max())}


def compute(weight: np.ndarray, replicas: int, groups: int, nodes: int, gpus: int) -> dict:
    from dsv3sim.parallel.placement import gpu_loads_after, gpu_loads_before, policy, rebalance_experts

    phy2log, log2phy, logcnt = rebalance_experts(weight, replicas, groups, nodes, gpus)
    out = {"layers": int(weight.shape[0]), "experts": int(weight.shape[1]), "replicas": replicas,
           "groups": groups, "nodes": nodes, "gpus": gpus, "policy": policy(groups, nodes),
           "phy2log": phy2log.tolist(), "log2phy": log2phy.tolist(), "logcnt": logcnt.tolist()}
    try:
        out["gpu_load_before"] = _balance(gpu_loads_before(weight, gpus))
    except ValueError as e:   # experts not divisible by GPUs: no contiguous baseline
        out["gpu_load_before"] = {"unavailable": str(e)}
    out["gpu_load_after"] = _balance(gpu_loads_after(weight, phy2log, logcnt, gpus))
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dsv3sim.trace import load_trace

    trace = load_trace(args.load)
    weight = np.asarray(trace.loads(), dtype=np.float64)
    out = compute(weight, args.replicas, args.groups, args.nodes, args.gpus)
    out["load_file"] = args.load
    if trace.has_tokens:
        out["dispatch"] = dispatch_summary(trace, np.asarray(out["phy2log"]), args.gpus, args.nodes, args.hidden)
    if args.json:
        print(json.dumps(out))
        return 0
    print_summary(out, maps=args.maps)
    return 0


def print_summary(out: dict, *, maps: bool = False, worst: int = 5) -> None:
    """The readable answer first (balance before/after, replicas, dispatch), the per-layer lines of the worst
    layers, and the maps themselves only with ``maps``."""
    import numpy as np

    b, a = out["gpu_load_before"], out["gpu_load_after"]
    logcnt = np.asarray(out["logcnt"])
    print(f"placement: {out['layers']} layers x {out['experts']} experts -> {out['replicas']} replicas "
          f"({out['replicas'] - out['experts']} redundant per layer) on {out['gpus']} GPUs / {out['nodes']} nodes, "
          f"{out['groups']} groups, policy {out['policy']}")
    if "max" in b:
        print(f"per-GPU load max/mean (1.000 = even), mean over layers: before {b['max_over_mean_avg']:.3f} -> "
              f"after {a['max_over_mean_avg']:.3f}; worst layer {b['max_over_mean_worst']:.3f} -> "
              f"{a['max_over_mean_worst']:.3f}")
    else:
        print(f"per-GPU load max/mean (1.000 = even), mean over layers: after {a['max_over_mean_avg']:.3f}, worst "
              f"layer {a['max_over_mean_worst']:.3f}; before: {b['unavailable']}")
    print(f"replicas per expert: max {int(logcnt.max())}, experts with more than one: "
          f"{float((logcnt > 1).sum(axis=1).mean()):.1f} per layer")
    for label, d in out.get("dispatch", {}).items():
        print(f"dispatch {label} (per token per layer, DeepEP accounting): IB sends {d['ib_sends_per_token']:.3f}, "
              f"NVLink sends {d['nvlink_sends_per_token']:.3f}, IB {d['ib_bytes_per_token_layer']:.0f} B, "
              f"NVLink {d['nvlink_bytes_per_token_layer']:.0f} B, GPU work max/mean "
              f"{d['slots_per_gpu_max_over_mean']:.3f}, max nodes/token {d['max_nodes_per_token']}")
    key = b["max_over_mean"] if "max" in b else a["max_over_mean"]
    order = sorted(range(out["layers"]), key=lambda li: -key[li])[:worst]
    if out["layers"] > 1:
        print(f"{'worst layers' if out['layers'] > worst else 'layers'} (per-GPU max / mean, max/mean):")
    for li in sorted(order):
        before = (f"{b['max'][li]:g} / {b['mean'][li]:g} ({b['max_over_mean'][li]:.3f})" if "max" in b else "n/a")
        print(f"  layer {li}: before {before}   after {a['max'][li]:g} / {a['mean'][li]:g} "
              f"({a['max_over_mean'][li]:.3f})")
    if not maps:
        print("maps (phy2log, log2phy, logcnt): add --maps, or --json for everything")
        return
    for name in ("phy2log", "logcnt"):
        print(f"{name}:")
        for li, row in enumerate(out[name]):
            print(f"  layer {li}: " + " ".join(str(x) for x in row))
    print("log2phy (replica ids per expert, -1 = none):")
    for li, rows in enumerate(out["log2phy"]):
        print(f"  layer {li}: " + " ".join("[" + ",".join(str(x) for x in r if x >= 0) + "]" for r in rows))
