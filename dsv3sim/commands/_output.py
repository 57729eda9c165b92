"""Output helpers shared by the commands that write results (``run``, ``sweep``)."""

from __future__ import annotations

import importlib.util
import sys


def write_report(data, path: str, *, quiet: bool = False) -> None:
    """Render ``data`` (a result JSON object) to an HTML report at ``path`` with dsv3sim.report."""
    if importlib.util.find_spec("plotly") is None:  # a bare GPU box: the JSON is still written
        print("plotly is not installed: wrote the JSON only", file=sys.stderr)
        return
    from dsv3sim.report import render

    render(data, path)
    if not quiet:
        print(f"wrote {path}")
