"""Headless Chromium (Debian's ``chromium``): dump a report's DOM after its scripts ran, or screenshot it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def find_chromium() -> str | None:
    return next((c for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if c and Path(c).exists()), None)


def _run(page: Path, args: list[str], timeout_s: float, budget_ms: int, writes: Path | None = None):
    """Chromium on ``page`` with ``args``; a RuntimeError with its stderr when it fails or does not write ``writes``."""
    if (exe := find_chromium()) is None:
        raise FileNotFoundError("Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="dsv3sim-chromium-") as prof:
        r = subprocess.run([exe, *FLAGS, f"--user-data-dir={prof}", f"--virtual-time-budget={budget_ms}", *args,
                            Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=timeout_s,
                           check=False)
    if r.returncode != 0 or (writes is not None and not writes.exists()):
        raise RuntimeError(f"chromium {' '.join(args)} failed (exit {r.returncode}): {r.stderr[-1500:]}")
    return r


def dump_dom(page: Path, *, budget_ms: int = 20000, timeout_s: float = 120) -> tuple[str, str]:
    """(DOM after the page's scripts ran, stderr with console lines)."""
    r = _run(page, ["--enable-logging=stderr", "--v=0", "--dump-dom"], timeout_s, budget_ms)
    return r.stdout, r.stderr


def console_errors(stderr: str) -> list[str]:
    """Console lines that report an error (uncaught exceptions, console.error text containing 'Error')."""
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and re.search(r"Uncaught|Error|error", ln)]


def screenshot(page: Path, png: Path, *, width: int = 1400, height: int = 3000, budget_ms: int = 20000,
               timeout_s: float = 120) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(page, [f"--window-size={width},{height}", f"--screenshot={png}"], timeout_s, budget_ms, writes=png)
    return png
