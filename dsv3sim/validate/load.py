"""The load of the machine while a validation run measures: reported beside every result, never used by the
prediction (the calibration interleaved with the steps is what adapts it to the load, ``component_table.py``).

Per measured step, from Linux's counters: the 1-minute load average (runnable + uninterruptible tasks, all
users), the fraction of the machine's CPU time that was busy and that was stolen by the hypervisor
(/proc/stat deltas: user+nice+system+irq+softirq+steal over all), and this rank's own share of a core
(its CPU seconds over the step's wall seconds). Other platforms: load average only.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

_STAT = Path("/proc/stat")


def _cpu_counters() -> list[int]:
    try:
        first = _STAT.read_text().splitlines()[0].split()
        return [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, IndexError):
        return []


def cores() -> int:
    """The cores this process may run on (its affinity mask; the machine's count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def snapshot() -> dict:
    try:
        la = os.getloadavg()[0]
    except OSError:
        la = -1.0
    return {"wall": time.perf_counter(), "cpu": time.process_time(), "loadavg1": la, "stat": _cpu_counters()}


def between(a: dict, b: dict) -> dict:
    """The load over the interval from snapshot ``a`` to ``b``."""
    out = {"loadavg1": b["loadavg1"],
           "rank_cpu_share": (b["cpu"] - a["cpu"]) / (b["wall"] - a["wall"]) if b["wall"] > a["wall"] else 0.0}
    if a["stat"] and b["stat"]:
        d = [y - x for x, y in zip(a["stat"], b["stat"])]
        tot = sum(d)
        if tot > 0:
            out["machine_busy"] = (tot - d[3] - d[4]) / tot
            out["steal"] = d[7] / tot
    return out


def summary(per_rank: list[list[dict]]) -> dict:
    """Median (and range of the load average) over the measured steps; the ranks' CPU shares."""
    steps = [s for r in per_rank for s in r]
    if not steps:
        return {}
    la = [s["loadavg1"] for s in steps]
    out = {"loadavg1_min": min(la), "loadavg1_median": statistics.median(la), "loadavg1_max": max(la),
           "rank_cpu_share_median": [round(statistics.median(s["rank_cpu_share"] for s in r), 3)
                                     for r in per_rank if r],
           "cores": cores()}
    for k in ("machine_busy", "steal"):
        xs = [s[k] for s in steps if k in s]
        if xs:
            out[f"{k}_median"] = statistics.median(xs)
    return out
