"""The program every torchrun worker runs: ``python -m dsv3sim.validate.worker SPEC.json``.

Reads the RunSpec, joins the process group (gloo on CPU, NCCL on GPUs; env:// rendezvous set up by
torchrun; every collective bounded by ``collective_timeout_s``), runs the job (``calibrate`` or ``train``),
gathers every rank's measurements on rank 0, which writes ``<out>/result.json`` atomically. Each rank keeps
its status file current (``status.py``) so the launcher can name a rank that dies or hangs. With
``calibrate_first`` a train job runs the calibration micro-benchmark first in the same processes (same
cores, same contention), which is what ``dsv3sim validate`` does.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dsv3sim.validate.atomic import write_json
from dsv3sim.validate.spec import RunSpec
from dsv3sim.validate.status import RankStatus


@dataclass(kw_only=True)
class Ctx:
    """What a job needs on one rank."""

    spec: RunSpec
    rank: int
    world: int
    local_rank: int
    device: torch.device
    status: RankStatus
    extra: dict[str, Any] = field(default_factory=dict)

    def maybe_fault(self, step: int) -> None:
        """Inject the spec's fault if it targets this rank at this step (robustness tests)."""
        f = self.spec.fault
        if f is None or f.rank != self.rank or f.step != step:
            return
        self.status.enter("compute", step)
        if f.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if f.kind == "hang":
            while True:
                time.sleep(3600)
        raise RuntimeError(f"injected fault on rank {self.rank} at step {step}")

    def collective(self, name: str) -> None:
        self.status.enter(f"collective:{name}")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def main(argv: list[str]) -> int:
    spec = RunSpec.load(argv[0])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    status = RankStatus(spec.out_dir, rank)
    try:
        torch.set_num_threads(spec.threads)
        if spec.device == "cuda":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        status.enter("init")
        dist.init_process_group("nccl" if spec.device == "cuda" else "gloo",
                                timeout=timedelta(seconds=spec.collective_timeout_s),
                                **({"device_id": device} if spec.device == "cuda" else {}))
        ctx = Ctx(spec=spec, rank=rank, world=world, local_rank=local_rank, device=device, status=status)
        from dsv3sim.validate import calibrate, train
        mine: dict[str, Any] = {}
        if spec.job == "calibrate" or spec.calibrate_first:  # micro-benchmark first, same processes and cores
            mine["calibration"] = calibrate.run_rank(ctx)
        if spec.job == "train":
            probes = mine["calibration"]["probes"] if "calibration" in mine else None
            mine["train"] = train.run_rank(ctx, calibrate.probe if probes is not None else None, probes)
        status.enter("collective:gather-results")
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if rank == 0:
            write_json(Path(spec.out_dir) / "result.json", {"spec": spec.to_json(), "ranks": gathered})
        status.enter("barrier")
        dist.barrier()
        status.done()
        dist.destroy_process_group()
        return 0
    except BaseException as e:
        status.error(e)
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
