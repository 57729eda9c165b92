"""`dsv3sim sweep [SCENARIO.py[:FUNC]] --set KEY=V1,V2 ...`: the cartesian product of overrides, in parallel.

Keys are Scenario fields or dotted fields of its parts (the full list for the scenario is below and in the
README): parallel.pp|dp|tp|ep|attn_tp, workload.<field of the scenario's workload>, perturb.<what-if>, and
gpu, topology, model, seed, n_gpus, comm_model. An unknown key exits 2 before anything runs, naming the known
keys; a value that makes a configuration impossible (EP not dividing the GPUs, does not fit in HBM) is a row
with its reason. The points run in a local process pool (--workers) or on Ray (--ray local | ADDRESS).
The EP all-to-all uses the busiest-link bound by default (fast; `run` uses the event simulation, which is up to
1.35x slower per all-to-all): --comm sim gives `run`'s numbers. The output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

NAME = "sweep"
HELP = "run the cartesian product of scenario overrides in parallel (process pool or Ray); a table + JSON rows"
DESCRIPTION = __doc__

COLS = (("step_time_s", "step s", ".3f"), ("mfu", "MFU", ".1%"), ("gpu_hours_per_trillion_tokens", "GPU-h/T", ",.0f"),
        ("cost_usd_per_trillion_tokens", "$/T tok", ",.0f"), ("prefill_tokens_per_s_per_node", "prefill tok/s/node",
                                                              ",.0f"),
        ("decode_tokens_per_s_per_node", "decode tok/s/node", ",.0f"),
        ("output_tokens_per_s_per_node", "output tok/s/node", ",.0f"), ("ttft_s", "TTFT s", ".3f"),
        ("tpot_s", "TPOT s", ".4f"), ("cost_usd_per_million_input_tokens", "$/M in", ".3f"),
        ("cost_usd_per_million_output_tokens", "$/M out", ".3f"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsv3sim.workload.sweep import known_keys

    p.add_argument("scenario", nargs="?", default=None, help="scenario file[:function] (default V3 pre-training)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the sweep (repeat for more axes), e.g. parallel.ep=32,64")
    p.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)), help="local processes")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on Ray: 'local' starts a local cluster, else a cluster address (pip install ray)")
    p.add_argument("--comm", choices=("bound", "sim"), default="bound",
                   help="EP all-to-all: busiest-link bound (default, fast) or event simulation (as `run`)")
    p.add_argument("--price-per-gpu-hour", type=float, default=2.0, metavar="USD",
                   help="for the cost_usd_* columns (default $2, DeepSeek-V3's H800 assumption)")
    p.add_argument("--json", dest="json_path", default=None, help="write {sweep: rows} here")
    p.add_argument("--report", default=None, help="write an HTML report of the sweep (dsv3sim.report)")
    p.epilog = "sweep keys (workload.* depends on the scenario's workload): " + ", ".join(known_keys())


def _cost(row: dict, price: float) -> None:
    from dsv3sim.cost.pricing import serving_cost_keys

    if "gpu_hours_per_trillion_tokens" in row:
        row["cost_usd_per_trillion_tokens"] = row["gpu_hours_per_trillion_tokens"] * price
    if "prefill_tokens_per_s_per_gpu" in row:
        row.update(serving_cost_keys(tokens_per_s_per_gpu=row["prefill_tokens_per_s_per_gpu"],
                                     price_per_gpu_hour=price, kind="input"))
    if "decode_tokens_per_s_per_gpu" in row:
        row.update(serving_cost_keys(tokens_per_s_per_gpu=row["decode_tokens_per_s_per_gpu"],
                                     price_per_gpu_hour=price, kind="output"))
    row.pop("price_per_gpu_hour", None)


def run(args: argparse.Namespace) -> int:
    from dsv3sim.commands._table import progress_bar, table
    from dsv3sim.cost.pricing import check_price
    from dsv3sim.workload.loader import load
    from dsv3sim.workload.sweep import check_keys, grid, parse_grid, run_sweep

    price = check_price(args.price_per_gpu_hour)
    scenarios = load(args.scenario)
    axes = parse_grid(args.sets)
    for base in scenarios.values():  # every key checked before anything runs
        check_keys(axes, base)
    points = grid(axes) if axes else [{}]
    t0 = time.perf_counter()
    rows = []
    for name, base in scenarios.items():
        base = base.with_(comm_model=args.comm, record=False)
        with progress_bar(name, len(points)) as prog:
            rows += run_sweep(base, points, workers=args.workers, ray_address=args.ray, progress=prog)
    for r in rows:
        _cost(r, price)
    n_bad = sum(1 for r in rows if r.get("infeasible"))
    how = ("busiest-link bound (fast; `run` uses the event simulation: --comm sim)" if args.comm == "bound"
           else "event simulation (as `run`)")
    print(f"{len(rows)} configurations ({n_bad} infeasible) in {time.perf_counter() - t0:.1f} s; "
          f"EP all-to-all: {how}; cost at ${price:g}/GPU-hour")
    present = [c for c in COLS if any(c[0] in r for r in rows)]
    cols = [("scenario", "scenario", "")] if len(scenarios) > 1 else []
    cols += [(k, k, "") for k in axes] + list(present) + [("infeasible", "infeasible because", "")]
    print(table([dict(r, **r["params"]) for r in rows], cols, max_rows=40))  # axes as columns, for display only
    data = {"sweep": rows, "axes": axes, "comm_model": args.comm, "price_per_gpu_hour": price}
    if args.json_path:
        from pathlib import Path

        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json_path}")
    if args.report:
        from dsv3sim.commands._output import write_report

        write_report(data, args.report)
    sys.stdout.flush()
    return 0
