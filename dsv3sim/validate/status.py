"""Per-rank heartbeat/status files: how the launcher tells which rank died or hung, and in what phase.

Each worker rewrites ``<out>/status/rank<R>.json`` (atomically) when it enters a phase: ``init``,
``compute``, ``collective:<name>``, ``done``, or ``error`` with the exception. The launcher reads them
after torchrun returns (or while it watches for a stall) and names the root-cause rank:

* a rank whose status says ``error`` with a non-communication exception raised it;
* a rank whose process was killed leaves a status that is neither ``done`` nor ``error``;
* a rank that hangs outside a collective stays in a non-collective phase while its peers fail with
  collective timeouts (gloo/NCCL ``timeout`` of ``init_process_group``).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from dsv3sim.validate.atomic import write_json

COMM_ERROR_HINTS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                    "peer", "gloo", "nccl", "socket", "connection refused", "closed by")


class RankStatus:
    """Writer side, used inside one worker process."""

    def __init__(self, out_dir: str | Path, rank: int) -> None:
        self.path = Path(out_dir) / "status" / f"rank{rank}.json"
        self.rank = rank
        self.step = -1
        self.phase = "start"
        self._write("running")

    def enter(self, phase: str, step: int | None = None) -> None:
        if step is not None:
            self.step = step
        self.phase = phase
        self._write("running")

    def done(self) -> None:
        self.phase = "done"
        self._write("done")

    def error(self, exc: BaseException) -> None:
        self._write("error", error=f"{type(exc).__name__}: {exc}",
                    tb="".join(traceback.format_exception(exc))[-4000:])

    def _write(self, state: str, **extra: str) -> None:
        write_json(self.path, dict(rank=self.rank, pid=os.getpid(), state=state, phase=self.phase,
                                   step=self.step, t_wall=time.time(), **extra), fsync=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class RankReport:
    rank: int
    state: str  # running | done | error | missing
    phase: str
    step: int
    t_wall: float
    error: str = ""

    @property
    def in_collective(self) -> bool:
        return self.phase.startswith("collective") or self.phase in ("init", "barrier")

    @property
    def comm_error(self) -> bool:
        e = self.error.lower()
        return self.state == "error" and any(h in e for h in COMM_ERROR_HINTS)


def read_all(out_dir: str | Path, world_size: int) -> list[RankReport]:
    out = []
    for r in range(world_size):
        p = Path(out_dir) / "status" / f"rank{r}.json"
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            out.append(RankReport(rank=r, state="missing", phase="not started", step=-1, t_wall=0.0))
            continue
        out.append(RankReport(rank=r, state=d["state"], phase=d["phase"], step=d["step"], t_wall=d["t_wall"],
                              error=d.get("error", "")))
    return out
