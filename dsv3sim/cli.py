"""The ``dsv3sim`` command line.

Each subcommand lives in its own module under ``dsv3sim/commands/`` and exposes
``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are discovered, so adding a command never edits this file. Bad user input
(``ConfigError``) prints one line naming the field and exits with 2; any other exception is a bug and
surfaces as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys

import dsv3sim.commands as _commands
from dsv3sim.config.errors import ConfigError


def _command_modules() -> dict[str, object]:
    mods = {}
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        m = importlib.import_module(f"dsv3sim.commands.{info.name}")
        if hasattr(m, "NAME") and hasattr(m, "run"):
            mods[m.NAME] = m
    return mods


def build_parser() -> argparse.ArgumentParser:
    import dsv3sim

    p = argparse.ArgumentParser(prog="dsv3sim", description=dsv3sim.__doc__.splitlines()[0],
                                epilog="`dsv3sim` alone runs the default job (`dsv3sim run`); "
                                       "`dsv3sim COMMAND --help` lists a command's flags.")
    p.add_argument("--version", action="version", version=f"dsv3sim {dsv3sim.__version__}")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=N",
                   help="raise a size limit for this run (names and defaults: dsv3sim/config/checks.py)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, m in _command_modules().items():
        sp = sub.add_parser(name, help=m.HELP, description=getattr(m, "DESCRIPTION", m.HELP),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        m.add_arguments(sp)
        sp.set_defaults(_run=m.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        # `dsv3sim` alone runs the default job when a `run` command exists.
        if "run" in _command_modules() and not argv and len(sys.argv) <= 1:
            return main(["run"])
        parser.print_help()
        return 0
    try:
        with _limits(args.limit):
            return int(args._run(args) or 0)
    except ConfigError as e:  # user input: one clear line, no traceback
        print(f"dsv3sim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dsv3sim ... | head`: the reader left; no traceback (Python docs, signal note)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a path the user gave: missing, a directory, not writable
        where = f": {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"dsv3sim {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _limits(specs: list[str]):
    """``--limit NAME=N`` raises size limits (dsv3sim.config.checks) for this call only."""
    if not specs:
        yield
        return
    from dsv3sim.config.checks import LIMITS_ENV, parse_limits

    old = os.environ.get(LIMITS_ENV)
    merged = {**parse_limits(old or ""), **parse_limits(",".join(specs))}
    os.environ[LIMITS_ENV] = ",".join(f"{k}={v}" for k, v in merged.items())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(LIMITS_ENV, None)
        else:
            os.environ[LIMITS_ENV] = old


if __name__ == "__main__":
    sys.exit(main())
