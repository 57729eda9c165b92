"""`dsv3sim sweep SCENARIO.py[:FUNC] --set KEY=V1,V2 ...`: many configurations in parallel, with a progress bar.

Keys are Scenario fields (gpu, topology, model, seed) or dotted fields of its parts (parallel.ep,
workload.node_limit, workload.gemm_dtype, perturb.nic_bandwidth_scale, ...). The cartesian product of the
values runs in a local process pool (--workers), or on a Ray cluster with --ray ADDRESS (optional extra).
Infeasible points (OOM, EP not dividing the experts, ...) stay in the output with their reason.
By default the EP all-to-all uses the busiest-link bound (--comm sim for the event simulation).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from dsv3sim.commands._output import write_report

NAME = "sweep"
HELP = "run the cartesian product of scenario overrides in parallel (process pool or Ray); JSON rows"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=None, help="scenario file[:function] (default V3 pre-training)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the sweep (repeat for more axes)")
    p.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)), help="local processes")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="run on a Ray cluster (needs ray installed)")
    p.add_argument("--comm", choices=("bound", "sim"), default="bound",
                   help="EP all-to-all model: busiest-link bound (default, fast) or event simulation")
    p.add_argument("--json", dest="json_path", default=None, help="write {sweep: rows} here")
    p.add_argument("--report", default=None, help="write an HTML report of the sweep (dsv3sim.report)")


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dsv3sim.workload.loader import load
    from dsv3sim.workload.sweep import grid, parse_grid, run_sweep

    scenarios = load(args.scenario)
    axes = parse_grid(args.sets)
    points = grid(axes) if axes else [{}]
    t0 = time.perf_counter()
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as prog:
        for name, base in scenarios.items():
            base = base.with_(comm_model=args.comm, record=False)
            task = prog.add_task(name, total=len(points))
            rows += run_sweep(base, points, workers=args.workers, ray_address=args.ray,
                              progress=lambda d, n, task=task: prog.update(task, completed=d))
    n_bad = sum(1 for r in rows if r.get("infeasible"))
    print(f"{len(rows)} configurations ({n_bad} infeasible) in {time.perf_counter() - t0:.1f} s")
    for r in rows[:20]:
        m = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()
             if k in ("step_time_s", "mfu", "gpu_hours_per_trillion_tokens", "prefill_tokens_per_s_per_node",
                      "decode_tokens_per_s_per_node")}
        print(f"  {r['params']}: {r.get('infeasible') or m}")
    data = {"sweep": rows, "axes": axes, "comm_model": args.comm}
    if args.json_path:
        from pathlib import Path

        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json_path}")
    if args.report:
        write_report(data, args.report)
    return 0
