"""Benchmark: the DeepSeek-V3 pre-training scenario and a 1000-configuration sweep, wall and CPU seconds.

    .venv/bin/python benchmarks/bench_scenarios.py            # full: pretrain + 1000-config sweep
    .venv/bin/python benchmarks/bench_scenarios.py --n 100    # smaller sweep, projected to 1000

Targets (issue 8): pretrain simulated in <= 60 s on 2 cores (goal <= 10 s); 1000 configurations <= 10 min.
The sweep uses what `dsv3sim sweep` uses: the busiest-link all-to-all bound and no per-slice timelines, over
IB bandwidth x GPU x GEMM dtype x schedule x node limit x global batch around the published setup.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.workload import simulate
from dsv3sim.workload.loader import load
from dsv3sim.workload.sweep import run_sweep

AXES = {
    "perturb.nic_bandwidth_scale": [0.25, 0.5, 1.0, 2.0, 4.0],
    "gpu": ["H800", "H200"],
    "workload.gemm_dtype": ["fp8", "bf16"],
    "workload.schedule": ["dualpipe", "1f1b"],
    "workload.node_limit": [1, 2, 3, 4, 8],
    "workload.global_batch_sequences": [3840, 7680, 11520, 15360, 19200],
}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="sweep configurations (<= 1000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-pretrain", action="store_true")
    a = ap.parse_args()
    print(f"cores available: {os.cpu_count()}, workers: {a.workers}")
    base = load(None)["deepseek-v3-pretrain"]
    if not a.skip_pretrain:
        for label, scn in (("pretrain, event-simulated network", base),
                           ("pretrain, busiest-link bound", base.with_(comm_model="bound"))):
            t, c = time.perf_counter(), cpu_s()
            r = simulate(scn)
            wall, cpu = time.perf_counter() - t, cpu_s() - c
            print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU  (target 60 s, goal 10 s: "
                  f"{wall / 60:.2f}x / {wall / 10:.2f}x of them)  step {r.step_time_s:.2f} s, "
                  f"{r.gpu_hours_per_trillion_tokens:,.0f} GPU h / T tokens")
    keys = list(AXES)
    points = [dict(zip(keys, v)) for v in itertools.product(*AXES.values())][: a.n]
    sweep_base = base.with_(comm_model="bound", record=False)
    t, c = time.perf_counter(), cpu_s()
    rows = run_sweep(sweep_base, points, workers=a.workers)
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    bad = sum(1 for r in rows if r.get("infeasible"))
    proj = wall * 1000 / len(points)
    print(f"sweep: {len(points)} configurations ({bad} infeasible) in {wall:.1f} s wall, {cpu:.1f} s CPU; "
          f"projected 1000: {proj:.0f} s = {proj / 600:.2f}x the 10-minute target")


if __name__ == "__main__":
    main()
