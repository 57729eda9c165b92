"""Run the real CLI entry point in-process on one fuzz case and classify what happened.

Outcome kinds:
- ``ok``: exit 0; ``error``: exit 2 with exactly one ``dsv3sim ...: error:`` line (or argparse usage);
- ``traceback``: an exception escaped ``dsv3sim.cli.main`` (or an exit code other than 0/2);
- ``hang``: the case ran past its time budget (SIGALRM, so only Python frames are interrupted);
- ``nonsense``: exit 0 although the case is known-invalid, or NaN/Infinity/NUL in the JSON or text written.

``expect`` on a case: ``"error"`` (must be refused: exit 2, or an infeasible result), ``"any"``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path

BAD_JSON = re.compile(r"\b(NaN|-?Infinity)\b")


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so `except Exception` in the code under test cannot swallow it."""


@dataclass
class Outcome:
    kind: str
    rc: int | None
    out: str = ""
    err: str = ""
    detail: str = ""
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.kind} rc={self.rc} {self.detail}\n--- stderr ---\n{self.err[-2000:]}\n--- stdout ---\n{self.out[-800:]}"


def _alarm(_sig, _frame):
    raise _Hang()


def _snapshot(outdir: Path | None) -> dict[Path, tuple[int, int]]:
    if outdir is None or not outdir.exists():
        return {}
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in outdir.rglob("*") if p.is_file()}


def _scan_outputs(outdir: Path | None, out: str, before: dict[Path, tuple[int, int]]) -> str:
    """A reason string if any JSON text written (stdout, or a file the command created or changed) has
    NaN/Infinity, or stdout has NUL characters. The case's own input files are not scanned."""
    if "\x00" in out:
        return "NUL character on stdout"
    texts = [("stdout", out)]
    if outdir is not None and outdir.exists():
        for p, sig in sorted(_snapshot(outdir).items()):
            if before.get(p) == sig:
                continue
            if p.suffix in (".json", ".html") and p.stat().st_size < 50_000_000:
                texts.append((p.name, p.read_text(errors="replace")))
    for where, t in texts:
        for chunk in _json_chunks(t) if where == "stdout" else ([t] if where.endswith(".json") else []):
            m = BAD_JSON.search(chunk)
            if m:
                return f"{m.group(0)} in JSON written to {where}"
    return ""


def _json_chunks(text: str) -> list[str]:
    """The parts of stdout that are JSON documents (a whole-output document or a {...} block)."""
    s = text.strip()
    if s.startswith(("{", "[")):
        return [s]
    i = s.find("\n{")
    return [s[i:]] if i >= 0 else []


def run_case(argv: list[str], *, timeout_s: float = 20.0, expect: str = "any", outdir: Path | None = None) -> Outcome:
    """Run ``dsv3sim.cli.main(argv)`` with stdout/stderr captured and a wall-clock alarm."""
    from dsv3sim.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = _snapshot(outdir)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    rc: int | None = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv))
            except SystemExit as e:  # argparse usage errors, --help
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except _Hang:
        return Outcome("hang", None, out.getvalue(), err.getvalue(), f"> {timeout_s} s: {argv}")
    except Exception as e:  # noqa: BLE001 - the whole point: anything escaping main is a traceback
        return Outcome("traceback", None, out.getvalue(), err.getvalue() + traceback.format_exc(),
                       f"{type(e).__name__}: {str(e)[:200]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    o, e_ = out.getvalue(), err.getvalue()
    if rc not in (0, 2):
        return Outcome("traceback", rc, o, e_, f"exit code {rc}")
    if rc == 2:
        if "Traceback (most recent call last)" in e_:
            return Outcome("traceback", rc, o, e_, "traceback printed on stderr")
        return Outcome("error", rc, o, e_)
    bad = _scan_outputs(outdir, o, before)
    if bad:
        return Outcome("nonsense", rc, o, e_, bad)
    if expect == "error" and "INFEASIBLE" not in o and '"infeasible": "' not in o and not _infeasible_file(outdir):
        return Outcome("nonsense", rc, o, e_, f"known-invalid input accepted: {argv}")
    return Outcome("ok", rc, o, e_)


def _infeasible_file(outdir: Path | None) -> bool:
    if outdir is None or not outdir.exists():
        return False
    for p in outdir.rglob("*.json"):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("infeasible"):
            return True
    return False


def assert_clean(o: Outcome, label: str = "") -> None:
    """The property every fuzz case must have."""
    assert o.kind in ("ok", "error"), f"{label}: {o}"
    if o.kind == "error":
        lines = [ln for ln in o.err.strip().splitlines() if ln.strip()]
        # argparse prints usage + one error line; our commands print exactly one line
        assert lines and ("error:" in lines[-1]), f"{label}: {o}"
        assert sum("error:" in ln for ln in lines) == 1, f"{label}: {o}"


def run_case_isolated(argv: list[str], *, timeout_s: float = 20.0, expect: str = "any", outdir: Path | None = None,
                      max_bytes: int = 6 * 2**30) -> Outcome:
    """``run_case`` in a forked child with an address-space cap and a hard kill at the deadline: a hang inside
    C code, an allocation without bound or a crash is classified instead of taking the caller down, and
    caches of one case never leak into the next."""
    import os
    import resource
    import tempfile
    import time
    from dataclasses import asdict

    fd, res_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
            try:
                o = run_case(argv, timeout_s=timeout_s, expect=expect, outdir=outdir)
            except MemoryError:
                o = Outcome("traceback", None, detail="MemoryError (address space capped)")
            d = asdict(o)
            d["out"], d["err"] = d["out"][-4000:], d["err"][-4000:]
            Path(res_path).write_text(json.dumps(d))
        except BaseException:  # noqa: BLE001 - the child must never return into the caller's stack
            code = 1
        os._exit(code)
    deadline = time.monotonic() + timeout_s + 5.0
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        Path(res_path).unlink(missing_ok=True)
        return Outcome("hang", None, detail=f"killed after {timeout_s + 5:.0f} s: {argv}")
    try:
        d = json.loads(Path(res_path).read_text() or "null")
    finally:
        Path(res_path).unlink(missing_ok=True)
    if not d:
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        return Outcome("traceback", None, detail=f"child died (signal {sig}, status {status})")
    return Outcome(**d)
