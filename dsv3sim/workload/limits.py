"""What limits a step: the shares of a training step (the one definition the planner, ``plan.limits``, uses) and
the sentence naming the limit that ``dsv3sim run`` prints and the report shows (``bottleneck``, ``limiter``).

The step model breaks PP rank 0's step down in ``breakdown_s``, whose parts sum to the step: GPU compute in the
pipeline chunks (forward, backward-input, weight-gradient, full backward, overlapped forward+backward), the
pipeline bubble, exposed data-parallel communication (``dp_comm_exposed_s``) and the optimizer. The EP
all-to-all the compute stream waits for is ``exposed_communication_s`` minus the DP part; it happens inside the
chunks, so it is taken out of their compute (and never counted above the chunks' own time). The largest share
names the limit. The network an exposed all-to-all waits on is the class of the busiest link of the slowest
all-to-all (``comm.*.busiest_link_class``: nic -> IB, nvlink -> NVLink, pcie -> PCIe).
Serving (``layer_time_s``, one layer of one micro-batch before overlap): with the micro-batches overlapped
(DeepSeek-V3 §3.4) the larger of compute (attention + MoE) and all-to-all (dispatch + combine) paces the step; a
decode batch set by KV capacity adds that limit. A real run (``dsv3sim validate``) groups its measured ``components``
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from dsv3sim.config.units import fmt_time, num

COMPUTE_KEYS = ("forward_s", "backward_input_s", "weight_grad_s", "backward_full_s", "overlapped_forward_backward_s")
LINK_CLASSES = (("nic", "IB"), ("nvlink", "NVLink"), ("pcie", "PCIe"))
NETWORK_NAMES = {"IB": "InfiniBand", "NVLink": "NVLink", "PCIe": "PCIe"}
SHARE_NAMES = (("compute", "GPU compute"), ("bubble", "the pipeline bubble"),
               ("dp_communication", "exposed data-parallel communication"), ("optimizer", "the optimizer"))
VALIDATION_GROUPS = (("EP all-to-all (layout, dispatch, combine)", ("layout", "dispatch", "combine")),
                     ("pipeline send/recv", ("p2p", "send", "recv")),
                     ("data-parallel all-reduce", ("allreduce", "all_reduce", "reduce_scatter", "all_gather")),
                     ("the optimizer", ("optim",)), ("unattributed time", ("other",)))
COMM = ("dispatch", "combine")


def _s(d: dict, key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def training_shares(breakdown: dict, exposed_communication_s: float) -> dict[str, float]:
    """Seconds of PP rank 0's step by what it spends them on: compute, ep_all_to_all, bubble, dp_communication,
    optimizer (they sum to the step)."""
    chunks = sum(_s(breakdown, k) for k in COMPUTE_KEYS)
    dp = _s(breakdown, "dp_comm_exposed_s")
    ep = min(max(0.0, exposed_communication_s - dp), chunks)
    return {"compute": chunks - ep, "ep_all_to_all": ep, "bubble": _s(breakdown, "bubble_s"),
            "dp_communication": dp, "optimizer": _s(breakdown, "optimizer_s")}


def busiest_network(comm: Mapping) -> str:
    """"IB" / "NVLink" / "PCIe": the class of the busiest link of the slowest all-to-all, or "" without one."""
    rows = [r for r in (comm or {}).values() if isinstance(r, Mapping) and isinstance(r.get("time_s"), (int, float))]
    if not rows:
        return ""
    cls = str(max(rows, key=lambda r: r["time_s"]).get("busiest_link_class") or "")
    return next((name for prefix, name in LINK_CLASSES if cls.startswith(prefix)), "")


def _network(result: dict) -> str:
    """'InfiniBand' / 'NVLink' / 'PCIe' from the busiest link of the slowest all-to-all, else ''."""
    n_nodes = num(result.get("n_nodes"))
    return NETWORK_NAMES.get(busiest_network(result.get("comm") or {}), "") or (
        "InfiniBand and NVLink" if n_nodes and n_nodes > 1 else "")


def _ep(net: str) -> str:
    return f"the EP all-to-all{' over ' + net if net else ''}"


def _ranked(top_verb: str, ranked: list[tuple[str, float]], step: float, fmt_pct) -> tuple[str, str]:
    """("X limits the VERB: t of step (p)", "; next is Y at t2 (p2)" or "") of components ranked largest first."""
    (top, t), (nxt, t2) = ranked[0], ranked[1] if len(ranked) > 1 else (None, 0.0)
    s = f"{top[0].upper() + top[1:]} limits the {top_verb}: {fmt_time(t)} of {fmt_time(step)} ({fmt_pct(t / step)})"
    return s, (f"; next is {nxt} at {fmt_time(t2)} ({fmt_pct(t2 / step)})" if nxt else "")


def ranked_shares(result: dict) -> list[tuple[str, float]] | None:
    """[(component, seconds)] of a training step, largest first (None without a breakdown)."""
    if not isinstance(bd := result.get("breakdown_s"), dict):
        return None
    sh = training_shares(bd, num(result.get("exposed_communication_s")) or 0.0)
    named = [(name, sh[k]) for k, name in SHARE_NAMES]
    named.insert(1, (f"{_ep(_network(result))[4:]} (not hidden by compute)", sh["ep_all_to_all"]))
    return sorted(named, key=lambda kv: -kv[1])


def _training(result: dict) -> str | None:
    shares, step = ranked_shares(result), num(result.get("step_time_s"))
    if not shares or not step:
        return None
    # with compute on top, its hidden/exposed all-to-all is said in the same clause; "next" is another part
    rest = [kv for kv in shares[1:] if not (shares[0][0] == "GPU compute" and kv[0].startswith("EP all-to-all"))]
    s, nxt = _ranked("step", shares[:1] + rest, step, lambda x: f"{x * 100:.0f}%")
    if shares[0][0] == "GPU compute":
        ep, net = next(v for k, v in shares if k.startswith("EP all-to-all")), _network(result)
        s += (", with the EP all-to-all hidden behind it" + (f" except {fmt_time(ep)}" if ep > 0 else "")
              + (f" (busiest links: {net})" if net else ""))
    return s + nxt + "."


def _serving(result: dict) -> str | None:
    if not isinstance(lt := result.get("layer_time_s"), dict):
        return None
    comp = sum(num(v) or 0.0 for k, v in lt.items() if not str(k).startswith(COMM))
    comm = sum(num(v) or 0.0 for k, v in lt.items() if str(k).startswith(COMM))
    if comp <= 0 and comm <= 0:
        return None
    comm_name, exposed = _ep(_network(result)), num(result.get("exposed_communication_s"))
    kind = {"decode": "decode step", "aggregated": "decode part of the mixed iteration"}.get(
        str(result.get("kind")), "prefill forward")
    par = result.get("parallel")
    mb = int(num(par.get("micro_batches")) or 2) if isinstance(par, dict) else 2
    overlap = {1: "one micro-batch (no overlap)", 2: "the two-micro-batch overlap"}.get(
        mb, f"the {mb}-micro-batch overlap")
    s = (f"{comm_name[0].upper() + comm_name[1:]} limits the {kind}: dispatch + combine take {fmt_time(comm)} per "
         f"layer and micro-batch against {fmt_time(comp)} of compute") if comm > comp else (
        f"GPU compute limits the {kind}: attention + MoE take {fmt_time(comp)} per layer and micro-batch against "
        f"{fmt_time(comm)} for {comm_name}")
    if exposed is not None:
        s += (f"; {fmt_time(exposed)} of communication stays exposed with {overlap}" if exposed > 0
              else f"; {overlap} hides all of the communication")
    batch, kv_max = num(result.get("batch_per_gpu")), num(result.get("max_batch_per_gpu_kv"))
    return s + (f"; KV-cache memory caps the batch at {kv_max:g} sequences per GPU" if batch and kv_max
                and batch >= kv_max else "") + "."


def _validation(result: dict) -> str | None:
    """A real run (``dsv3sim validate``): the measured components grouped, the largest named."""
    comps, step = result.get("components"), num(result.get("measured_step_s"))
    if not isinstance(comps, list) or not step:
        return None
    groups: dict[str, float] = {}
    for c in comps:
        name = str(c.get("name", ""))
        label = next((g for g, keys in VALIDATION_GROUPS if name.startswith(keys)), "GPU compute")
        groups[label] = groups.get(label, 0.0) + (num(c.get("measured_s")) or 0.0)
    s, nxt = _ranked("measured step", sorted(groups.items(), key=lambda kv: -kv[1]), step, lambda x: f"{x:.0%}")
    return s + nxt + "."


def bottleneck(result: dict) -> str | None:
    """One sentence naming what limits the step of ``result`` (None when the result cannot tell)."""
    if not isinstance(result, dict):
        return None
    if isinstance(reason := result.get("infeasible"), str):
        return f"Infeasible: {reason}."
    if isinstance(result.get("breakdown_s"), dict):
        return _training(result)
    return _validation(result) if isinstance(result.get("components"), list) else _serving(result)


def limiter(result: dict) -> str:
    """A few words for a table cell: what limits the step ("GPU compute", "EP all-to-all over InfiniBand", ...)."""
    s = bottleneck(result) or ""
    return "infeasible" if s.startswith("Infeasible") else s.split(" limits the ")[0].replace(
        " (not hidden by compute)", "").removeprefix("The ")
