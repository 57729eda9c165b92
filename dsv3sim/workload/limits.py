"""What limits a training step: the one definition the planner (``plan.limits``) and the report
(``report.bottleneck``) both use.

The step model breaks PP rank 0's step down in ``breakdown_s``, whose parts sum to the step: GPU compute in the
pipeline chunks (forward, backward-input, weight-gradient, full backward, overlapped forward+backward), the
pipeline bubble, exposed data-parallel communication (``dp_comm_exposed_s``) and the optimizer. The EP
all-to-all the compute stream waits for is ``exposed_communication_s`` minus the DP part; it happens inside the
chunks, so it is taken out of their compute (and never counted above the chunks' own time). The largest share
names the limit. The network an exposed all-to-all waits on is the class of the busiest link of the slowest
all-to-all (``comm.*.busiest_link_class``: nic -> IB, nvlink -> NVLink, pcie -> PCIe).
"""

from __future__ import annotations

from collections.abc import Mapping

COMPUTE_KEYS = ("forward_s", "backward_input_s", "weight_grad_s", "backward_full_s", "overlapped_forward_backward_s")
LINK_CLASSES = (("nic", "IB"), ("nvlink", "NVLink"), ("pcie", "PCIe"))


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
