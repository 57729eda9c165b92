"""`dsv3sim profile CONFIG --device {cpu,cuda} [--grid ...] --out PATH`: time the model's operators at a grid of shapes.

Writes PATH (CSV, one row per operator x shape x dtype: median time, p10/p90, FLOPs, bytes, TFLOP/s, GB/s) and
PATH with .json (GPU name, clocks, torch/CUDA versions). Grids: full (DeepSeek-V3 lattice + model shapes, for
an H200: ~2 min), small (a CPU), heldout (random off-grid shapes for checking the predictor), nn (the model's own
dsv3sim.nn functions + dense elementwise grid), fp8fix, quick (smoke test). See dsv3sim/profile/NOTES.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsv3sim.commands import _args as A

NAME = "profile"
HELP = "measure operator times (GEMM, grouped GEMM, MLA attention, norms, FP8 quant ...) on cpu or cuda"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsv3sim.profile.grid import GRIDS
    p.add_argument("config", help="model config name or path (e.g. deepseek-v3, tiny)")
    p.add_argument("--device", type=A.device, choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--grid", choices=GRIDS, default="small", help="which shapes (default small)")
    p.add_argument("--dtypes", default="bf16,fp8", help="comma-separated GEMM dtypes (default bf16,fp8)")
    p.add_argument("--ops", default="", help="comma-separated subset of ops (default all)")
    p.add_argument("--deadline-s", type=A.pos_float, default=1e9, help="stop starting new shapes after this many s")
    p.add_argument("--threads", type=A.nonneg_int, default=0, help="torch CPU threads (default torch's)")
    p.add_argument("--out", type=Path, required=True, help="CSV path; metadata goes beside it as .json")


def run(args: argparse.Namespace) -> int:
    from dsv3sim.profile import run as prun  # torch only when measuring
    argv = [args.config, "--device", args.device, "--grid", args.grid, "--dtypes", args.dtypes, "--ops", args.ops,
            "--deadline-s", str(args.deadline_s), "--threads", str(args.threads), "--out", str(args.out)]
    return prun.main(argv)
