"""What limits a layout: compute, the scale-out network (IB), the scale-up network (NVLink), the pipeline
bubble, or memory.

The shares of PP rank 0's step are ``dsv3sim.workload.limits.training_shares`` (the report's definition too), in
the planner's coarser terms: computation (GPU compute and the optimizer), the pipeline bubble, and communication
left exposed after overlap (the EP all-to-all not hidden under computation plus ZeRO-1 DP traffic), charged to
the network of the busiest link of the slowest all-to-all (``workload.limits.busiest_network``; without an
all-to-all, the link class busier over the step: ``ib_utilisation`` vs ``nvlink_utilisation``). The largest
share names the limit. With 1F1B/ZB1P PP rank 0 holds only the first stage (for DeepSeek-V3 the three dense
layers), so its idle time counts stage imbalance as well as the schedule's bubble; DualPipe puts the first and
last stages on it. A layout left with less than ``TIGHT`` of its HBM free is also called memory-tight: a larger
micro-batch or less recomputation would not fit.
"""

from __future__ import annotations

from dsv3sim.workload.limits import busiest_network, training_shares

TIGHT = 0.05


def training_limits(res, headroom: float) -> dict:
    """{limits, limits_why, shares, memory_tight} of a TrainingResult."""
    step_s = res.step_time_s
    sh = training_shares(res.breakdown_s, res.exposed_communication_s)
    ib_util, nvl_util = res.ib_utilisation, res.nvlink_utilisation
    net = busiest_network(res.comm) or ("IB" if ib_util >= nvl_util else "NVLink")
    comm = sh["ep_all_to_all"] + sh["dp_communication"]
    shares = {"compute": (sh["compute"] + sh["optimizer"]) / step_s, "bubble": sh["bubble"] / step_s,
              net: comm / step_s}
    lim = max(shares, key=shares.get)
    why = {"compute": f"computation fills {shares['compute']:.0%} of the step",
           "bubble": f"PP rank 0 idles {shares['bubble']:.0%} of the step (pipeline bubble and stage imbalance)",
           net: f"exposed communication is {comm / step_s:.0%} of the step (the slowest all-to-all's busiest link "
                f"is {net}; IB {ib_util:.0%}, NVLink {nvl_util:.0%} utilised)"}[lim]
    out = {"limits": lim, "limits_why": why, "shares": shares, "memory_tight": headroom < TIGHT}
    if headroom < TIGHT:
        out["limits_why"] += f"; memory-tight ({headroom:.0%} of HBM free)"
    return out
