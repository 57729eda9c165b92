"""Processor sharing between the pipeline ranks of a host with more processes than cores.

A CPU table's compute times are CPU seconds over the share of a core each rank got while every rank profiled at
once (``validate/component_table.window_share``). In a pipeline the ranks are not all runnable at once: while
one stage waits for its neighbour (a bubble, a late activation) the others have its cores. With a work-conserving
scheduler (Linux CFS / EEVDF share a core equally among the runnable tasks) a rank's share with n runnable ranks on
a host whose probes gave share s with all N ranks runnable is

    share(n) = min(1, s * N / n),

the capacity the probes revealed, s * N cores, split n ways. A chunk of compute whose time was priced at s runs
at share(n) for the mean n over its span: its compute time scales by s / share(n) (<= 1). The spans depend on
the speeds and the speeds on the spans, so the executor runs to a damped fixed point (``speeds``). Measured on
`tiny` pp 2 x ep 2 (4 processes on 2 cores): the stage-0 and stage-1 ranks got 0.34 and 0.50 of a core over the
step, its compute spans at ~0.74 (their CPU / wall), and the step model without sharing put 62-76 % too much
time into the pipeline's waits (MEASUREMENTS.md, 2026-12-05).

Only with more processes than cores (N > C): with a core each, an idle rank frees nothing for the others.
"""

from __future__ import annotations

import statistics

ROUNDS = 20  # at most this many fixed-point rounds (damped by halves), until the makespan moves < TOL
TOL = 1e-3  # relative; pp 2 x ep 2 on `tiny`: 216.6 ms unshared, 195.3 after 2 rounds, 189.1 after 8, 189.0 at 12


def oversubscribed(t: dict, ranks: dict) -> bool:
    """More processes than cores on a CPU table's host, in a pipeline: sharing applies."""
    cores = int(t.get("cores") or 0)
    return str(t.get("device", "cpu")) == "cpu" and t.get("pp", 1) > 1 and 0 < cores < len(ranks)


def speeds(t: dict, ranks: dict, sched, spans: dict) -> dict[tuple[int, str], float]:
    """{(pipeline rank, action): compute time factor s / share(n)} from one execution's ``spans`` (per pipeline
    rank, aligned with ``sched.actions``): n = the ranks of one pipeline rank (EP x DP, the replicas run the same
    schedule) x (1 + the other pipeline ranks' busy time inside the span / its length)."""
    per_stage = t["ep"] * t["dp"]
    s = _probed_share(ranks)
    out = {}
    for p, sp in spans.items():
        for a, x in zip(sched.actions[p], sp):
            dur = x.end - x.start
            if dur <= 0:
                continue
            busy = sum(max(min(x.end, y.end) - max(x.start, y.start), 0.0)
                       for q, sq in spans.items() if q != p for y in sq)
            out[(p, str(a))] = _factor(s, len(ranks), per_stage * (1.0 + busy / dur))
    return out


def _probed_share(ranks: dict) -> float:
    """s: the ranks' mean share of a core while all of them profiled at once (the table's ``share``)."""
    return statistics.fmean(min(max(float(x.get("share", 1.0)), 1e-3), 1.0) for x in ranks.values())


def _factor(s: float, n_all: int, n: float) -> float:
    """The time factor s / share(n) of work priced at share s when n of the host's n_all ranks are runnable."""
    return s / min(1.0, s * n_all / n)


def optimizer_speeds(ranks: dict, end: dict[int, float]) -> dict[int, float]:
    """{rank: optimizer time factor s / share(n)}. A rank's optimizer step follows a blocking wait (its gradient
    all-reduce, or the last exchange of its pipeline), and the scheduler runs a task that has just woken ahead of
    those that kept computing (CFS places a woken task's virtual runtime at the queue's minimum less half a
    scheduling period), so the ranks stepping at once share the capacity between them: n = the ranks whose
    optimizer steps overlap this one's (starting at ``end``, lasting ``optim_s``). Measured on `tiny` pp 2 x ep 2
    (4 processes on 2 cores, each rank's share 0.34-0.50 over the step): the stage-1 ranks stepped at wall = CPU
    while the stage-0 ranks ran their last backward (validate/MEASUREMENTS.md, 2026-12-05)."""
    s = _probed_share(ranks)
    span = {r: (end[r], end[r] + float(x["optim_s"])) for r, x in ranks.items()}
    out = {}
    for r, (a, b) in span.items():
        n = sum(1 for c, d in span.values() if min(b, d) > max(a, c)) if b > a else 1
        out[r] = _factor(s, len(ranks), max(n, 1))
    return out
