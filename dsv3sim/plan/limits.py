"""What limits a layout: compute, the scale-out network (IB), the scale-up network (NVLink), the pipeline
bubble, or memory.

A training step on PP rank 0 splits into pipeline bubble (``breakdown_s.bubble_s``), communication left exposed
after overlap (``exposed_communication_s``: EP all-to-all not hidden under computation plus ZeRO-1 DP traffic)
and the rest, computation. The largest share names the limit; exposed communication is charged to the link class
that is busier over the step (``ib_utilisation`` vs ``nvlink_utilisation``, the step model's per-GPU link bytes /
capacity). The shares are those of PP rank 0, the rank the step model breaks down: with 1F1B/ZB1P it holds only the
first stage (for DeepSeek-V3 the three dense layers), so its idle time counts stage imbalance as well as the
schedule's bubble; DualPipe puts the first and last stages on it. A layout left with less than ``TIGHT`` of its HBM
free is also called memory-tight: a larger micro-batch or less recomputation would not fit.
"""

from __future__ import annotations

TIGHT = 0.05


def training_limits(step_s: float, breakdown: dict, exposed_s: float, ib_util: float, nvl_util: float,
                    headroom: float) -> dict:
    bubble = breakdown.get("bubble_s", 0.0)
    comm = max(0.0, exposed_s)
    compute = max(0.0, step_s - bubble - comm)
    net = "IB" if ib_util >= nvl_util else "NVLink"
    shares = {"compute": compute / step_s, "bubble": bubble / step_s, net: comm / step_s}
    lim = max(shares, key=shares.get)
    why = {"compute": f"computation fills {shares['compute']:.0%} of the step",
           "bubble": f"PP rank 0 idles {shares['bubble']:.0%} of the step (pipeline bubble and stage imbalance)",
           net: f"exposed communication is {comm / step_s:.0%} of the step ({net} busier: IB {ib_util:.0%}, "
                f"NVLink {nvl_util:.0%} utilised)"}[lim]
    out = {"limits": lim, "limits_why": why, "shares": shares, "memory_tight": headroom < TIGHT}
    if headroom < TIGHT:
        out["limits_why"] += f"; memory-tight ({headroom:.0%} of HBM free)"
    return out


def serving_limits(layer_times: dict, exposed_s: float, step_s: float, kv_bound: bool) -> str:
    """Decode/prefill: memory when the batch is capped by KV capacity, else the larger of exposed all-to-all and
    computation."""
    if kv_bound:
        return "memory"
    return "IB" if exposed_s > 0.5 * step_s else "compute"
