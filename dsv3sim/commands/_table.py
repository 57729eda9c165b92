"""Plain-text tables and a terminal-only progress bar for the commands that print many rows (plan, sweep)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


def fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if spec and isinstance(v, (int, float)):
        return format(v, spec)
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def table(rows: list[dict], cols: list[tuple[str, str, str]], *, max_rows: int = 20) -> str:
    """``cols`` = (key, header, format spec); one line per row, columns aligned, '-' for a missing value."""
    head = [h for _, h, _ in cols]
    body = [[fmt(r.get(k), spec) for k, _, spec in cols] for r in rows[:max_rows]]
    w = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(h.ljust(n) for h, n in zip(head, w)), "  ".join("-" * n for n in w)]
    lines += ["  ".join(c.rjust(n) if c[:1].isdigit() or c[:1] in "-+$" else c.ljust(n) for c, n in zip(row, w))
              for row in body]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (all in the JSON)")
    return "\n".join(lines)


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when stderr is a terminal; otherwise nothing (yields None)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(label, total=total)
        yield lambda d, n: prog.update(task, completed=d, total=n)
