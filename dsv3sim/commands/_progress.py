"""Progress on a terminal, and where a command's human text goes.

A command that prints JSON on stdout keeps stdout for that JSON alone: its human lines (summaries, "wrote ...")
go to stderr (``human_stream``). Progress bars (rich) draw on stderr only when stdout and stderr are both a
terminal and the command is not printing JSON, and vanish when done (``transient``), so piped or redirected
output never holds bar frames.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TextIO


def human_stream(json_on_stdout: bool) -> TextIO:
    """Where human text goes: stderr when stdout carries JSON, else stdout."""
    return sys.stderr if json_on_stdout else sys.stdout


def bars_wanted(json_on_stdout: bool) -> bool:
    """Progress bars only on a terminal (stdout and stderr both ttys) and never in JSON mode."""
    return not json_on_stdout and sys.stderr.isatty() and sys.stdout.isatty()


class _Silent:
    def step(self, description: str | None = None, advance: float = 1) -> None:
        pass

    def describe(self, description: str) -> None:
        pass


class Bar:
    def __init__(self, prog, task) -> None:
        self._prog, self._task = prog, task

    def step(self, description: str | None = None, advance: float = 1) -> None:
        kw = {"description": description} if description is not None else {}
        self._prog.update(self._task, advance=advance, **kw)

    def describe(self, description: str) -> None:
        self._prog.update(self._task, description=description)

    def set(self, done: float, total: float) -> None:
        """Absolute position, for work that reports (done, total) rather than steps."""
        self._prog.update(self._task, completed=done, total=total)


@contextmanager
def progress(total: float | None, description: str, *, enabled: bool):
    """``with progress(n, "simulating", enabled=bars_wanted(json)) as bar: ... bar.step("next")``.

    A bar with a count, elapsed time and a spinner (so work that reports no steps still shows it is alive);
    a silent stand-in when ``enabled`` is false."""
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*cols, console=Console(file=sys.stderr), transient=True) as prog:
        yield Bar(prog, prog.add_task(description, total=total))
