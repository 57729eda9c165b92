"""The layers of ARCHITECTURE.md, checked by import-linter's contracts in ``.importlinter`` (layer order, no
torch below the model and measurement layers, no import cycles), and the checker catches what it must."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` (its own interpreter, that root first on the path)."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", ".importlinter", "--no-cache", "--no-logo"],
                          cwd=root, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root)})


def test_import_contracts_are_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "3 kept" in r.stdout


def test_contract_catches_an_upward_import(tmp_path):
    """A copy of the package in which the cost layer imports the workload layer breaks the layers contract."""
    shutil.copytree(ROOT / "dsv3sim", tmp_path / "dsv3sim", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "dsv3sim" / "cost" / "flops.py", "a") as f:
        f.write("\nimport dsv3sim.workload.kernels  # noqa\n")
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "dsv3sim.cost.flops -> dsv3sim.workload.kernels" in r.stdout
