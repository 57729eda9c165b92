"""Benchmark: the capacity planner's searches, wall seconds on this machine, with the load at the time.

    .venv/bin/python benchmarks/bench_plan.py --out benchmarks/bench_plan.out.json

Targets: the training search over >= 500 layouts in <= 60 s on 2 cores, its best DeepSeek-V3 layout on
2048 H800 no slower than the published layout's simulated step (PP16 DualPipe EP64 M=4 FP8, `dsv3sim run`);
the serving search in <= 30 s; AIConfigurator's question (V3, 32 H200, ISL 4000, OSL 1000, TTFT 2 s, TPOT 50 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.plan.serve import ServeQuery, plan_serving
from dsv3sim.plan.train import TrainQuery, plan_training
from dsv3sim.workload import simulate
from dsv3sim.workload.loader import load


def cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the process-pool workers): load-independent."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus": os.cpu_count(),
           "workers": a.workers, "loadavg_before": os.getloadavg()}
    t, c = time.perf_counter(), cpu_s()
    tp = plan_training(TrainQuery(), workers=a.workers)
    out["train"] = {"wall_s": time.perf_counter() - t, "cpu_s": cpu_s() - c, "counts": tp.counts,
                    "best": tp.best["key"],
                    "best_step_s": tp.best["step_time_s"], "best_comm_model": tp.best["comm_model"],
                    "best_limits": tp.best["limits"], "loadavg_after": os.getloadavg()}
    pub = next(iter(load(None).values())).with_(record=False)  # the published layout, as `dsv3sim run` simulates it
    out["train"]["published_step_s_sim"] = simulate(pub).step_time_s
    t, c = time.perf_counter(), cpu_s()
    sp = plan_serving(ServeQuery(), workers=a.workers)
    b = sp["best"]
    out["serve"] = {"wall_s": time.perf_counter() - t, "cpu_s": cpu_s() - c, "counts": sp["counts"], "best": b,
                    "loadavg_after": os.getloadavg()}
    nomtp = plan_serving(ServeQuery(mtp=(False,)), workers=a.workers)
    out["serve_no_mtp"] = nomtp["best"] or nomtp["sla_unmet"]
    out["serve_mtp_acceptance_0.85"] = plan_serving(ServeQuery(mtp_acceptance=0.85), workers=a.workers)["best"]
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
