"""What limits the step, in one sentence, derived from a result JSON (never hard-coded per scenario).

Training: the shares of PP rank 0's step as ``dsv3sim.workload.limits`` defines them (the planner's definition
too): GPU compute, the EP all-to-all it waits for, the pipeline bubble, exposed data-parallel communication and
the optimizer. The largest share names the bottleneck; the class of the busiest link of the slowest all-to-all
says which network it is.

Serving (``layer_time_s``: one layer of one micro-batch before overlap): with two micro-batches overlapped
(DeepSeek-V3 §3.4) the step is paced by the larger of compute (attention + MoE) and all-to-all (dispatch +
combine). A decode batch set by KV capacity (``batch_per_gpu == max_batch_per_gpu_kv``) adds that memory limit.
A real run (``dsv3sim validate``: measured ``components``) groups its measured components the same way. An
infeasible result names its reason (memory, divisibility) instead.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_time, num
from dsv3sim.workload.limits import busiest_network
from dsv3sim.workload.limits import training_shares as shares_of_step

NETWORK_NAMES = {"IB": "InfiniBand", "NVLink": "NVLink", "PCIe": "PCIe"}
SHARE_NAMES = (("compute", "GPU compute"), ("bubble", "the pipeline bubble"),
               ("dp_communication", "exposed data-parallel communication"), ("optimizer", "the optimizer"))


def _network(result: dict) -> str:
    """'InfiniBand' / 'NVLink' / 'PCIe' from the busiest link of the slowest all-to-all, else ''."""
    net = NETWORK_NAMES.get(busiest_network(result.get("comm") or {}), "")
    n_nodes = num(result.get("n_nodes"))
    return net or ("InfiniBand and NVLink" if n_nodes and n_nodes > 1 else "")


def training_shares(result: dict) -> list[tuple[str, float]] | None:
    """[(component, seconds)] of a training step, largest first (None without a breakdown)."""
    bd = result.get("breakdown_s")
    if not isinstance(bd, dict):
        return None
    sh = shares_of_step(bd, num(result.get("exposed_communication_s")) or 0.0)
    net = _network(result)
    named = [(name, sh[k]) for k, name in SHARE_NAMES]
    named.insert(1, (f"EP all-to-all{' over ' + net if net else ''} (not hidden by compute)", sh["ep_all_to_all"]))
    return sorted(named, key=lambda kv: -kv[1])


def _training(result: dict) -> str | None:
    shares = training_shares(result)
    step = num(result.get("step_time_s"))
    if not shares or not step:
        return None
    (top, t) = shares[0]
    # with compute on top, its hidden/exposed all-to-all is said in the same clause; "next" is another part
    nxt, t2 = next((k, v) for k, v in shares[1:] if not (top == "GPU compute" and k.startswith("EP all-to-all")))

    def pct(x: float) -> str:
        return f"{x / step * 100:.0f}%"

    s = f"{top[0].upper() + top[1:]} limits the step: {fmt_time(t)} of {fmt_time(step)} ({pct(t)})"
    if top == "GPU compute":
        ep = next(v for k, v in shares if k.startswith("EP all-to-all"))
        net = _network(result)
        s += (", with the EP all-to-all hidden behind it" + (f" except {fmt_time(ep)}" if ep > 0 else "")
              + (f" (busiest links: {net})" if net else ""))
    return s + f"; next is {nxt} at {fmt_time(t2)} ({pct(t2)})."


def _serving(result: dict) -> str | None:
    lt = result.get("layer_time_s")
    if not isinstance(lt, dict):
        return None
    comp = sum(num(v) or 0.0 for k, v in lt.items() if not str(k).startswith(("dispatch", "combine")))
    comm = sum(num(v) or 0.0 for k, v in lt.items() if str(k).startswith(("dispatch", "combine")))
    if comp <= 0 and comm <= 0:
        return None
    net = _network(result)
    comm_name = f"the EP all-to-all{' over ' + net if net else ''}"
    exposed = num(result.get("exposed_communication_s"))
    kind = {"decode": "decode step", "aggregated": "decode part of the mixed iteration"}.get(
        str(result.get("kind")), "prefill forward")
    par = result.get("parallel")
    mb = int(num(par.get("micro_batches")) or 2) if isinstance(par, dict) else 2
    overlap = {1: "one micro-batch (no overlap)", 2: "the two-micro-batch overlap"}.get(mb, f"the {mb}-micro-batch overlap")
    if comm > comp:
        s = (f"{comm_name[0].upper() + comm_name[1:]} limits the {kind}: dispatch + combine take {fmt_time(comm)} "
             f"per layer and micro-batch against {fmt_time(comp)} of compute")
    else:
        s = (f"GPU compute limits the {kind}: attention + MoE take {fmt_time(comp)} per layer and micro-batch "
             f"against {fmt_time(comm)} for {comm_name}")
    if exposed is not None:
        s += (f"; {fmt_time(exposed)} of communication stays exposed with {overlap}" if exposed > 0
              else f"; {overlap} hides all of the communication")
    batch, kv_max = num(result.get("batch_per_gpu")), num(result.get("max_batch_per_gpu_kv"))
    if batch and kv_max and batch >= kv_max:
        s += f"; KV-cache memory caps the batch at {kv_max:g} sequences per GPU"
    return s + "."


VALIDATION_GROUPS = (("EP all-to-all (layout, dispatch, combine)", ("layout", "dispatch", "combine")),
                     ("pipeline send/recv", ("p2p", "send", "recv")),
                     ("data-parallel all-reduce", ("allreduce", "all_reduce", "reduce_scatter", "all_gather")),
                     ("the optimizer", ("optim",)), ("unattributed time", ("other",)))


def _validation(result: dict) -> str | None:
    """A real run (``dsv3sim validate``): the measured components grouped, the largest named."""
    comps = result.get("components")
    step = num(result.get("measured_step_s"))
    if not isinstance(comps, list) or not step:
        return None
    groups: dict[str, float] = {}
    for c in comps:
        name, t = str(c.get("name", "")), num(c.get("measured_s")) or 0.0
        label = next((g for g, keys in VALIDATION_GROUPS if name.startswith(keys)), "GPU compute")
        groups[label] = groups.get(label, 0.0) + t
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    (top, t), rest = ranked[0], ranked[1:]
    s = f"{top[0].upper() + top[1:]} limits the measured step: {fmt_time(t)} of {fmt_time(step)} ({t / step:.0%})"
    if rest:
        s += f"; next is {rest[0][0]} at {fmt_time(rest[0][1])} ({rest[0][1] / step:.0%})"
    return s + "."


def bottleneck(result: dict) -> str | None:
    """One sentence naming what limits the step of ``result`` (None when the result cannot tell)."""
    if not isinstance(result, dict):
        return None
    reason = result.get("infeasible")
    if isinstance(reason, str):
        return f"Infeasible: {reason}."
    if isinstance(result.get("breakdown_s"), dict):
        return _training(result)
    if isinstance(result.get("components"), list):
        return _validation(result)
    return _serving(result)


def limiter(result: dict) -> str:
    """A few words for a table cell: what limits the step ("GPU compute", "EP all-to-all over InfiniBand", ...)."""
    s = bottleneck(result)
    if not s:
        return ""
    if s.startswith("Infeasible"):
        return "infeasible"
    return s.split(" limits the ")[0].replace(" (not hidden by compute)", "").removeprefix("The ")
