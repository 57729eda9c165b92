"""Building the CLI parser (every `dsv3sim` start, `--help` included) imports no simulator, array, graph or
model library: the commands import them when they run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "simpy", "networkx", "torch", "plotly", "dsv3sim.sim", "dsv3sim.parallel", "dsv3sim.workload.training")


def test_parser_imports_nothing_heavy():
    code = ("import sys; from dsv3sim.cli import build_parser; build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ""
