"""Plain-text tables and a terminal-only progress bar for the commands that print many rows (plan, sweep)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from dsv3sim.commands._progress import Bar, progress


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
    """The commands' progress bar (``_progress.progress``) as a ``(done, total)`` callback for the searches, when
    stderr is a terminal (the bar is transient and on stderr, so it never mixes into JSON); otherwise None."""
    with progress(total, label, enabled=sys.stderr.isatty()) as bar:
        yield bar.set if isinstance(bar, Bar) else None
