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

from dsv3sim.parallel.actions import Action, Op, format_action, parse_action
from dsv3sim.parallel.check import check, dependencies
from dsv3sim.parallel.dualpipe import dualpipe, dualpipev
from dsv3sim.parallel.executor import ChunkTimes, ExecResult, Span, activation_peaks, execute
from dsv3sim.parallel.formulas import activation_closed_form, bubble_closed_form, param_copies_closed_form
from dsv3sim.parallel.linear import one_f_one_b, zb1p
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
        raise ValueError(f"unknown pipeline schedule {name!r}; known: {sorted(SCHEDULES)}") from None
    return gen(pp, microbatches)


__all__ = ["Action", "ChunkTimes", "ExecResult", "Op", "SCHEDULES", "Schedule", "Span", "activation_closed_form",
           "activation_peaks", "bubble_closed_form", "check", "dependencies", "execute", "format_action",
           "from_strings", "generate", "param_copies_closed_form", "parse_action"]
