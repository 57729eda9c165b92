"""Parallel strategies as data: pipeline schedules (1F1B, ZB1P, DualPipe, DualPipeV), their executor,
EPLB-style expert placement and node-limited dispatch plans. Pure functions, no torch. See NOTES.md.

    generate(name, pp, microbatches) -> Schedule      names: 1f1b, zb1p, dualpipe, dualpipev
    check(schedule)                                    ValueError unless valid
    execute(schedule, times, p2p_latency) -> ExecResult
    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus) -> (phy2log, log2phy, logcnt)
    dispatch_plan(expert_ids, src_rank, placement, gpus_per_node, ...) -> DispatchPlan
"""

from __future__ import annotations

from collections.abc import Callable

from dsv3sim.config.errors import ConfigError
from dsv3sim.parallel.actions import Action, Op, format_action, parse_action
from dsv3sim.parallel.check import check, dependencies
from dsv3sim.parallel.dispatch import DispatchPlan, dispatch_plan, dispatch_plan_for_trace, source_ranks
from dsv3sim.parallel.dualpipe import dualpipe, dualpipev
from dsv3sim.parallel.executor import ChunkTimes, ExecResult, Span, activation_peaks, execute
from dsv3sim.parallel.formulas import activation_closed_form, bubble_closed_form, param_copies_closed_form
from dsv3sim.parallel.linear import one_f_one_b, zb1p
from dsv3sim.parallel.placement import gpu_loads_after, gpu_loads_before, rebalance_experts
from dsv3sim.parallel.schedule import Schedule, from_strings

SCHEDULES: dict[str, Callable[[int, int], Schedule]] = {
    "1f1b": one_f_one_b,
    "zb1p": zb1p,
    "dualpipe": dualpipe,
    "dualpipev": dualpipev,
}


def generate(name: str, pp: int, microbatches: int) -> Schedule:
    """Action lists of schedule ``name`` for ``pp`` ranks and ``microbatches`` micro-batches."""
    try:
        gen = SCHEDULES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown pipeline schedule {name!r}; known: {sorted(SCHEDULES)}") from None
    return gen(pp, microbatches)


__all__ = [
    "SCHEDULES",
    "Action",
    "ChunkTimes",
    "DispatchPlan",
    "ExecResult",
    "Op",
    "Schedule",
    "Span",
    "activation_closed_form",
    "activation_peaks",
    "bubble_closed_form",
    "check",
    "dependencies",
    "dispatch_plan",
    "dispatch_plan_for_trace",
    "execute",
    "format_action",
    "from_strings",
    "generate",
    "gpu_loads_after",
    "gpu_loads_before",
    "param_copies_closed_form",
    "parse_action",
    "rebalance_experts",
    "source_ranks",
]
