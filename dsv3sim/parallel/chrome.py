"""Chrome Trace Event JSON of an executed schedule (open in Perfetto / chrome://tracing).

One process per pipeline rank (pid = rank, named "PP rank r"), one compute thread (tid 0); complete events
("ph": "X", microseconds). Slice name = the action string as DeepSeek's profile-data names a chunk pass
(``F0.3``, ``F0.9&BW1.2``); category = F | B | W | BW | F&B; args carry micro-batch and chunk ids.
"""

from __future__ import annotations

from dsv3sim.parallel.executor import ExecResult


def chrome_trace(result: ExecResult, *, unit_s: float = 1.0, name: str = "pipeline") -> dict:
    """{"traceEvents": [...]} with times scaled from result units (``unit_s`` seconds each) to microseconds."""
    us = unit_s * 1e6
    events: list[dict] = []
    for r in sorted(result.spans):
        events.append({"ph": "M", "name": "process_name", "pid": r, "tid": 0, "args": {"name": f"PP rank {r}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": r, "tid": 0, "args": {"sort_index": r}})
        events.append({"ph": "M", "name": "thread_name", "pid": r, "tid": 0, "args": {"name": "compute"}})
        for sp in result.spans[r]:
            events.append({"ph": "X", "name": sp.action, "cat": sp.category, "pid": r, "tid": 0,
                           "ts": sp.start * us, "dur": (sp.end - sp.start) * us,
                           "args": {"ops": sp.action.split("&")}})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"schedule": name}}
