"""The lanes of the measured step model (``measured_step``): the EP ranks of one (replica, pipeline rank) running
one chunk in lockstep, each with its own clock, and how a stretch of compute turns into wall time on them: the
table's CPU seconds over the rank's share, an EP stage's measured pace, a shared core's scheduler slices
(``preemption.py``), and the meetings of the ranks in a collective, which wait for the latest of them."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from dsv3sim.workload.deepep_overheads import expected_max_normal
from dsv3sim.workload.preemption import lateness


class Lanes:
    """The EP ranks of one (replica, pipeline rank) running one chunk in lockstep: per-rank clocks from 0.
    Jitter: each component call is one sample of its profiled spread, independent of the others, so the
    spread of a stretch of compute is cv x sqrt(sum of its components' squared times) (variances add)."""

    def __init__(self, ranks: list[dict], exit_skew: float = 0.0, speed: float = 1.0) -> None:
        self.r = ranks
        self.speed = speed  # compute time factor of processor sharing (cpu_sharing.py): the share is over it
        # the members of a collective leave it when each one's thread is woken, not at once: the next meeting
        # starts after the last of them, ``exit_skew`` (the table's ``a2a_exit_skew_s``) past the mean exit
        self.exit_skew = exit_skew
        self.skewed = False  # the lanes left an all-to-all and have not met since
        # a shared CPU (the table measured preemption, preemption.py): a rank woken from a blocking call runs
        # its first scheduler slice whole and pays for it in waiting for the core at the wake-up (``debt``,
        # charged to the collective it woke from); beyond the slice it computes at the window's share
        self.slice = [free_slice(x) for x in ranks]
        self.share = [min(max(float(x.get("share", 1.0)), 1e-3) / speed, 1.0) for x in ranks]
        # EP ranks with in-stage exchanges (``meet_in_stage``): compute spans and framework time at the stage's
        # measured wall per CPU second of its compute spans (``in_stage_wall_per_cpu``, F / B: the glue between
        # them is the same CPU work on the same shared cores), no free slice, no wake-up debt
        self.pace = [dict(x.get("in_stage_wall_per_cpu") or {}) if x.get("comm_in_stage_s") else {} for x in ranks]
        self.cpu_since = [0.0] * len(ranks)  # CPU seconds since the last blocking call
        self.debt = [0.0] * len(ranks)
        self.clock = [0.0] * len(ranks)
        self.since = [0.0] * len(ranks)  # compute since the last all-to-all
        self.since_sq = [0.0] * len(ranks)  # sum of squared component times since then
        self.sq = [0.0] * len(ranks)  # ... over the whole chunk
        self.busy = [0.0] * len(ranks)  # compute only (a rank waiting in a collective leaves its core)
        self.kind = "F"  # the pass the ranks run (``measured_step._run_op``): framework time takes its pace
        self.comp: dict[str, float] = defaultdict(float)  # summed over lanes
        self.comp_cpu: dict[str, float] = defaultdict(float)  # CPU seconds of the compute, summed over lanes
        self.after = "start"  # what the ranks ran last: the step's start or a pass (F or B), ``measured_step._after``

    def compute(self, name: str, durs: list[float], fresh: bool = False) -> None:
        """``durs`` per rank; ``fresh``: the first work of a rank's step, at the start of its time on the core (a
        paced rank runs it at full speed: the step's first embedding, 0.1 ms, ran at wall = CPU within 1 % in
        the 4-process EP runs, validate/MEASUREMENTS.md)."""
        pace = name[-3:] in ("(F)", "(B)") or name == "framework"  # every CPU stretch of a paced rank
        for i, d in enumerate(durs):
            d *= self.speed
            c = d * self.share[i]  # a CPU table's time is CPU seconds over the share
            self.comp_cpu[name] += c
            k = self.pace[i].get(name[-2] if name[-1] == ")" else self.kind) if pace else None
            if k:  # CPU seconds x the direction's pace; measured with every rank runnable, it shares in ``speed``
                d = c if fresh else c * max(k * self.speed, 1.0)
            elif self.slice[i]:  # the CPU seconds inside the slice run at full speed, the rest at the share
                free = min(c, max(self.slice[i] - self.cpu_since[i], 0.0))
                d = free + (c - free) / self.share[i]
                self.debt[i] += free * (1.0 / self.share[i] - 1.0)
            self.cpu_since[i] += c
            self.busy[i] += d
            self.clock[i] += d
            self.since[i] += d
            self.since_sq[i] += d * d
            self.sq[i] += d * d
            self.comp[name] += d

    def meet(self, name: str, transfer) -> None:
        """All ranks meet in a collective; ``transfer(after_s)`` is its time after that much compute."""
        n = len(self.r)
        cpu = statistics.fmean(self.cpu_since)
        late = lateness_of_slowest(list(self.r), statistics.fmean(self.since), statistics.fmean(self.since_sq), n,
                                   cpu if any(self.slice) else None)
        t = max(c + w for c, w in zip(self.clock, self.debt)) + late + transfer(statistics.fmean(self.since))
        self._leave(name, t + (self.exit_skew if self.skewed else 0.0))

    def meet_in_stage(self, name: str) -> None:
        """All ranks meet in an exchange the table measured in the stage (``comm_in_stage_s``: its wall per MoE
        layer in the calibration's whole-stage pass, mean over the ranks): that wall holds the transfer, the
        wake-ups and the waits for the peers as a stage has them (with the wake-up debt of the compute before
        it), so the meeting costs it past the latest rank's clock, and the debt is settled. On an oversubscribed
        host that wall is mostly the peers' wait for a core, so it scales with the lanes' ``speed`` as compute
        does (``cpu_sharing.py``)."""
        wall = statistics.fmean(float(x["comm_in_stage_s"][name]) for x in self.r)
        self._leave(name, max(self.clock) + self.speed * wall)

    def _leave(self, name: str, t: float) -> None:
        """Every rank leaves collective ``name`` at ``t`` (the wait since its clock charged to it), with its
        compute, jitter and wake-up debt since the last meeting reset."""
        for i in range(len(self.r)):
            self.comp[name] += t - self.clock[i]
            self.clock[i] = t
            self.since[i] = self.since_sq[i] = self.cpu_since[i] = self.debt[i] = 0.0
        self.skewed = True

    def finish(self, name: str) -> None:
        """The chunk ends in a blocking call outside the lanes (a pipeline hand-off, the gradient all-reduce):
        the wake-up debt is paid there."""
        for i, w in enumerate(self.debt):
            self.clock[i] += w
            self.comp[name] += w
            self.debt[i] = 0.0


def free_slice(rank: dict) -> float:
    """CPU seconds a rank runs unpreempted after a blocking call: one scheduler slice (the preemption delay the
    calibration measured, the competing tasks' slice under EEVDF); 0 where no preemption was measured."""
    p = rank.get("preempt") or {}
    return float(p.get("slice_s", 0.0)) if p.get("rate_per_cpu_s") else 0.0


def lateness_of_slowest(ranks: list[dict], since: float, since_sq: float, n: int,
                        exposed_cpu: float | None = None) -> float:
    """Expected lateness of the slowest of n ranks after ``since`` seconds of compute (sum of squared component
    times ``since_sq``): preemption slices where the table measured them (a shared CPU: ``preemption.py``, on
    the CPU seconds past the free slice ``exposed_cpu``, or since * share), else the normal jitter
    cv x sqrt(since_sq) x E[max of n N(0,1)]."""
    pre = [x.get("preempt") for x in ranks]
    if all(p and p.get("slice_s") for p in pre):
        share = statistics.fmean(x.get("share", 1.0) for x in ranks)
        cpu = since * share if exposed_cpu is None else exposed_cpu
        return lateness(cpu, statistics.fmean(p["rate_per_cpu_s"] for p in pre),
                        statistics.fmean(p["slice_s"] for p in pre), n)
    cv = statistics.fmean(x["cv"] for x in ranks)
    return cv * math.sqrt(since_sq) * expected_max_normal(n)
