"""How long a pipeline receive posted after its send waits on gloo (CPU), by what the sender does meanwhile.

gloo moves an unbound buffer only once its receive is posted (the receiver's notice, then the sender's
communication thread writes the payload), so a late receive waits for the sender's thread to run. Three
patterns of two ranks, each round after a barrier, the activation of `tiny` (2 x 64 x 128 fp32):

  blocked  rank 0 isends, then blocks in a receive from rank 1 (1F1B's first stage waiting for a gradient);
           rank 1 computes 10 ms, then receives.
  bidir    both isend, then compute (rank 0 10 ms, rank 1 6 ms), then receive (DualPipe's two directions).
  busy     rank 0 isends, then computes 10 ms; rank 1 computes 6 ms, then receives.

Prints rank 1's wait per pattern: median, mean, max and the share of waits over 1 ms.

    python benchmarks/probe_late_receive.py --rounds 60 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dsv3sim.validate.calibrate import compute_for

PATTERNS = ("blocked", "bidir", "busy")


def _timed_recv(y: torch.Tensor, src: int) -> float:
    t = time.perf_counter()
    dist.recv(y, src)
    return time.perf_counter() - t


def _round(rank: int, pattern: str, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """One round of ``pattern``; rank 1's receive wait (None on rank 0)."""
    dist.barrier()
    if pattern == "blocked":
        if rank == 0:
            w = dist.isend(x, 1)
            dist.recv(y, 1)
            w.wait()
            return None
        compute_for(0.010)
        t = _timed_recv(y, 0)
        dist.send(x, 0)
        return t
    w = dist.isend(x, 1 - rank) if pattern == "bidir" or rank == 0 else None
    compute_for(0.010 if rank == 0 else 0.006)
    t = _timed_recv(y, 1 - rank) if pattern == "bidir" or rank == 1 else None
    if w is not None:
        w.wait()
    return t if rank == 1 else None


def _worker(rank: int, rounds: int, port: int, out: str | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x, y = torch.ones(2 * 64 * 128), torch.empty(2 * 64 * 128)
    waits: dict[str, list[float]] = {p: [] for p in PATTERNS}
    for i in range(rounds + 3):  # three warm-up rounds
        for p in PATTERNS:
            t = _round(rank, p, x, y)
            if t is not None and i >= 3:
                waits[p].append(t)
    if rank == 1:
        res = {p: {"median_ms": statistics.median(v) * 1e3, "mean_ms": statistics.fmean(v) * 1e3,
                   "max_ms": max(v) * 1e3, "over_1ms": sum(t > 1e-3 for t in v) / len(v), "n": len(v)}
               for p, v in waits.items()}
        for p, r in res.items():
            print(f"{p:8s} median {r['median_ms']:.3f} ms  mean {r['mean_ms']:.3f}  max {r['max_ms']:.2f}  "
                  f"over 1 ms {r['over_1ms']:.0%} of {r['n']}")
        if out:
            with open(out, "w") as f:
                json.dump({"rounds": rounds, "loadavg": os.getloadavg(), "patterns": res}, f, indent=1)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--port", type=int, default=29541)
    ap.add_argument("--json", help="write the summary here")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {a.rounds}")
    mp.spawn(_worker, args=(a.rounds, a.port, a.json), nprocs=2)


if __name__ == "__main__":
    main()
