"""Output helpers shared by the commands that write results (``run``, ``sweep``)."""

from __future__ import annotations

import sys


def write_report(data, path: str, *, quiet: bool = False) -> None:
    """Render ``data`` (a result JSON object) to an HTML report at ``path`` with dsv3sim.report."""
    try:
        from dsv3sim.report import render
    except ImportError:
        print("dsv3sim.report is not available: wrote the JSON only", file=sys.stderr)
        return
    render(data, path)
    if not quiet:
        print(f"wrote {path}")
