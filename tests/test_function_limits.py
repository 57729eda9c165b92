"""Every function of the repository outside tests/ (the package, benchmarks/, scenarios/, ...) is short and
simple: at most 60 lines (decorators, signature, docstring and body) and cyclomatic complexity 20 (radon grade C
at worst). The checkers count what they must (methods and nested functions, a 61-line function and one with 21
branches flagged, a 60-line one not) over the files they must."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = {"tests", "build", "__pycache__"}  # and every hidden folder (.venv, .git, .dev-*)
MAX_LINES = 60
MAX_COMPLEXITY = 20  # radon grade C at worst


def _sources(root: Path = REPO) -> list[Path]:
    """Every .py of the repository outside tests/, build output and hidden folders: the package, benchmarks/,
    scenarios/, profiles/' scenario files, any top-level script."""
    return [p for p in sorted(root.rglob("*.py"))
            if not any(part in SKIP or part.startswith(".") for part in p.relative_to(root).parts[:-1])]



def _long(source: str, name: str) -> list[str]:
    return [f"{name}:{n.lineno} {n.name} {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_LINES]


def test_no_function_over_60_lines():
    over = [x for p in _sources() for x in _long(p.read_text(), str(p.relative_to(REPO)))]
    assert not over, over


def test_counter_flags_61_lines():
    def fn(n_body: int, indent: str = "") -> str:
        return f"{indent}def f():\n" + "".join(f"{indent}    x{i} = {i}\n" for i in range(n_body))

    assert _long(fn(59), "t.py") == []
    assert _long(fn(60), "t.py") == ["t.py:1 f 61 lines"]
    assert _long("class C:\n" + fn(60, "    "), "t.py") == ["t.py:2 f 61 lines"]
    assert _long("def g():\n" + fn(57, "    ") + "    return f\n", "t.py") == []  # 60 lines with f inside
    assert _long("def g():\n" + fn(60, "    ") + "    return f\n", "t.py") == ["t.py:1 g 63 lines", "t.py:2 f 61 lines"]


def test_scan_covers_the_repository_outside_tests(tmp_path):
    names = {str(p.relative_to(REPO)) for p in _sources()}
    assert {"dsv3sim/cli.py", "benchmarks/validate_error.py", "scenarios/studies.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", ".")) or "/." in n]
    for rel in ("a.py", "pkg/b.py", "tests/t.py", "pkg/tests/u.py", ".venv/lib/v.py", "pkg/.hidden/w.py",
                "pkg/__pycache__/x.py", "pkg/c.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert [str(p.relative_to(tmp_path)) for p in _sources(tmp_path)] == ["a.py", "pkg/b.py"]


def _radon():
    return pytest.importorskip("radon.complexity")



def _blocks(blocks):
    """Functions, classes and methods as radon lists them, and the closures it nests inside their function."""
    for b in blocks:
        yield b
        yield from _blocks(getattr(b, "closures", None) or [])


def _over(source: str, name: str) -> list[str]:
    return [f"{name}:{b.lineno} {b.fullname} {b.complexity}" for b in _blocks(_radon().cc_visit(source))
            if b.complexity > MAX_COMPLEXITY]


def test_no_block_above_grade_c():
    over = [x for p in _sources() for x in _over(p.read_text(), str(p.relative_to(REPO)))]
    assert not over, over


def test_checker_flags_21_branches():
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX_COMPLEXITY))
    assert _over(f"def f(x):\n{body}    return -1\n", "t.py") == ["t.py:1 f 21"]
    assert _over(f"class C:\n    def m(self, x):\n{body.replace('    ', '        ')}        return -1\n",
                 "t.py") == ["t.py:1 C 22", "t.py:2 C.m 21"]  # methods count (and their class)
    inner = body.replace("    ", "        ")
    assert _over(f"def g(x):\n    def h(x):\n{inner}        return -1\n    return h\n", "t.py") == ["t.py:2 h 21"]
    assert _over("def g(x):\n    return x\n", "t.py") == []
