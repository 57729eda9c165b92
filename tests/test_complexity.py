"""No function of the repository outside tests/ (the package, benchmarks/, scenarios/, ...) above cyclomatic
complexity 20 (radon grade C at worst), and the checker counts what it must (a function with 21 branches is
flagged) over the files it must."""

from __future__ import annotations

from pathlib import Path

import pytest

cc = pytest.importorskip("radon.complexity")

REPO = Path(__file__).resolve().parents[1]
SKIP = {"tests", "build", "__pycache__"}  # and every hidden folder (.venv, .git, .dev-*)


def _sources(root: Path = REPO) -> list[Path]:
    """Every .py of the repository outside tests/, build output and hidden folders: the package, benchmarks/,
    scenarios/, profiles/' scenario files, any top-level script."""
    return [p for p in sorted(root.rglob("*.py"))
            if not any(part in SKIP or part.startswith(".") for part in p.relative_to(root).parts[:-1])]
MAX = 20


def _blocks(blocks):
    """Functions, classes and methods as radon lists them, and the closures it nests inside their function."""
    for b in blocks:
        yield b
        yield from _blocks(getattr(b, "closures", None) or [])


def _over(source: str, name: str) -> list[str]:
    return [f"{name}:{b.lineno} {b.fullname} {b.complexity}" for b in _blocks(cc.cc_visit(source))
            if b.complexity > MAX]


def test_no_block_above_grade_c():
    over = [x for p in _sources() for x in _over(p.read_text(), str(p.relative_to(REPO)))]
    assert not over, over


def test_checker_flags_21_branches():
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX))
    assert _over(f"def f(x):\n{body}    return -1\n", "t.py") == ["t.py:1 f 21"]
    assert _over(f"class C:\n    def m(self, x):\n{body.replace('    ', '        ')}        return -1\n",
                 "t.py") == ["t.py:1 C 22", "t.py:2 C.m 21"]  # methods count (and their class)
    inner = body.replace("    ", "        ")
    assert _over(f"def g(x):\n    def h(x):\n{inner}        return -1\n    return h\n", "t.py") == ["t.py:2 h 21"]
    assert _over("def g(x):\n    return x\n", "t.py") == []


def test_scan_covers_the_repository_outside_tests():
    names = {str(p.relative_to(REPO)) for p in _sources()}
    assert {"dsv3sim/cli.py", "benchmarks/extract_profile_data.py", "scenarios/studies.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", ".")) or "/." in n]
