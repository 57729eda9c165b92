"""Run a measurement plan (``grid.py``) and write the profile table: CSV rows + a metadata JSON.

Rows are appended and flushed one by one, so a run cut short by a time limit still leaves every finished
measurement behind. A shape that fails (an unsupported kernel, out of memory) is written with its error
instead of a time. Run standalone (no simpy/plotly needed, as on the GPU machine)::

    python -m dsv3sim.profile.run deepseek-v3 --device cuda --grid full --out profiles/h200/kernels.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import load_model_config
from dsv3sim.nn import fp8 as fp8m
from dsv3sim.profile.grid import GRIDS, Point, points
from dsv3sim.profile.nn_ops import NN_BUILDERS
from dsv3sim.profile.ops import BUILDERS as OP_BUILDERS
from dsv3sim.profile.table import COLUMNS, SHAPE_KEYS
from dsv3sim.profile.timing import time_fn

BUILDERS = {**OP_BUILDERS, **NN_BUILDERS}


def _smi(query: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, check=False).stdout.strip()
    except Exception as e:  # noqa: BLE001 - metadata only
        return f"unavailable: {e}"


def environment(device: str) -> dict[str, Any]:
    """What the numbers were measured on (GPU name, clocks, versions)."""
    env: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": device,
        "torch": torch.__version__, "python": platform.python_version(), "host": platform.machine(),
        "cpu": platform.processor(), "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu_name=p.name, n_sms=p.multi_processor_count, hbm_bytes=p.total_memory,
                   l2_bytes=getattr(p, "L2_cache_size", None), cuda=torch.version.cuda,
                   cublas=torch.backends.cuda.preferred_blas_library().name if hasattr(
                       torch.backends.cuda, "preferred_blas_library") else None,
                   cudnn=torch.backends.cudnn.version(),
                   smi=_smi("name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"),
                   fp8_blockwise_scaled_mm=fp8m.gpu_blockwise_ok(torch.device("cuda"), True))
    return env


def measure(pt: Point, device: str, emulate_fp8: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"op": pt.op, "dtype": pt.dtype, "role": pt.role, "set": pt.set}
    row.update({k: pt.shape.get(k, "") for k in SHAPE_KEYS})
    kw = dict(pt.shape)
    if pt.op == "gemm" and pt.dtype == "fp8" and emulate_fp8:
        kw["emulate"] = True
    try:
        case = BUILDERS[pt.op](device=device, dtype=pt.dtype, **kw)
        tm = time_fn(case.fn, case.sets, device, graph=case.graph)
        row.update(kernel=case.impl, time_s=tm.time_s, p10_s=tm.p10_s, p90_s=tm.p90_s, n_calls=tm.n_calls,
                   reps=tm.reps, mode=tm.mode, flops=case.flops, bytes=case.bytes,
                   tflops=case.flops / tm.time_s / 1e12, gbps=case.bytes / tm.time_s / 1e9, error="")
        del case
    except Exception as e:  # noqa: BLE001 - record and go on
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        if device == "cuda":
            torch.cuda.synchronize()
    if device == "cuda" and torch.cuda.memory_reserved() > 40e9:
        torch.cuda.empty_cache()
    return row


def _resume_point(out: Path) -> tuple[int, int | None]:
    """(rows already in ``out``, index of the point a dead process was measuring, or None)."""
    if not out.exists():
        return 0, None
    with out.open(newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    cur = out.with_suffix(".cur")
    crashed = int(cur.read_text()) if cur.exists() else None
    return n, (crashed if crashed == n else None)


def run(cfg_name: str, device: str, grid: str, out: Path, *, dtypes: tuple[str, ...], deadline_s: float = 1e9,
        only_ops: set[str] | None = None, resume: bool = False) -> int:
    """Measure ``grid``'s points into ``out``. ``resume``: append to an existing ``out``; a point that killed the
    previous process (a CUDA illegal address poisons the context) is written as an error row and skipped."""
    cfg = load_model_config(cfg_name)
    plan = [p for p in points(cfg, grid, dtypes) if not only_ops or p.op in only_ops]
    # measure what the simulator needs most first, so a run cut by its deadline keeps it
    plan.sort(key=lambda p: (p.op == "gemm" and p.set == "lattice", p.op == "gemm"))
    emulate = device == "cpu"
    if emulate:
        plan = [p for p in plan if not (p.dtype == "fp8" and p.op in ("grouped_gemm", "shared_expert"))]
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = environment(device) | {"config": cfg.name, "grid": grid, "n_planned": len(plan), "csv": out.name}
    start, crashed = _resume_point(out) if resume else (0, None)
    cur = out.with_suffix(".cur")
    t0, n_done, n_err = time.time(), start, 0
    bar = _terminal_bar(len(plan) - start, f"profiling {cfg.name} on {device}")
    with out.open("a" if start else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if not start:
            w.writeheader()
        for i, pt in enumerate(plan[start:], start):
            if time.time() - t0 > deadline_s:
                meta["stopped_early"] = f"deadline {deadline_s} s reached after {n_done} of {len(plan)}"
                break
            if i == crashed:
                row = {"op": pt.op, "dtype": pt.dtype, "role": pt.role, "set": pt.set,
                       **{k: pt.shape.get(k, "") for k in SHAPE_KEYS},
                       "error": "ProcessCrashed: this shape killed the measuring process (e.g. CUDA illegal address)"}
            else:
                cur.write_text(str(i))
                row = measure(pt, device, emulate)
            w.writerow(row)
            f.flush()
            n_done += 1
            n_err += bool(row.get("error"))
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, description=f"{pt.op} {pt.dtype}")
    if bar is not None:
        bar.stop()
    cur.unlink(missing_ok=True)
    meta.update(n_measured=n_done, n_errors=n_err, wall_s=round(time.time() - t0, 1))
    if device == "cuda":
        meta["smi_after"] = _smi("clocks.sm,clocks.mem,temperature.gpu,power.draw")
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    print(f"{out}: {n_done} rows ({n_err} errors) in {meta['wall_s']} s", file=sys.stderr)
    return 0


def _terminal_bar(total: int, description: str):
    """A started rich progress bar on stderr when it is a terminal (never in pipes or logs), else None."""
    if not (sys.stderr.isatty() and sys.stdout.isatty()):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(file=sys.stderr), transient=True)
    bar.add_task(description, total=total)
    bar.start()
    return bar


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--grid", choices=GRIDS, default="small")
    ap.add_argument("--dtypes", default="bf16,fp8")
    ap.add_argument("--ops", default="", help="comma-separated subset of ops")
    ap.add_argument("--deadline-s", type=float, default=1e9)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="append to --out; skip the point that crashed a previous run")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no CUDA device")
    return run(a.config, a.device, a.grid, a.out, dtypes=tuple(a.dtypes.split(",")), deadline_s=a.deadline_s,
               only_ops=set(filter(None, a.ops.split(","))) or None, resume=a.resume)


if __name__ == "__main__":
    sys.exit(main())
