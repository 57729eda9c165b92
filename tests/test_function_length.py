"""No function of the package longer than 60 lines (decorators, signature, docstring and body), and the counter
counts what it must (methods and nested functions, a 61-line function flagged, a 60-line one not)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dsv3sim"
MAX_LINES = 60


def _long(source: str, name: str) -> list[str]:
    return [f"{name}:{n.lineno} {n.name} {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_LINES]


def test_no_function_over_60_lines():
    over = [x for p in sorted(PACKAGE.rglob("*.py")) for x in _long(p.read_text(), str(p.relative_to(PACKAGE)))]
    assert not over, over


def test_counter_flags_61_lines():
    def fn(n_body: int, indent: str = "") -> str:
        return f"{indent}def f():\n" + "".join(f"{indent}    x{i} = {i}\n" for i in range(n_body))

    assert _long(fn(59), "t.py") == []
    assert _long(fn(60), "t.py") == ["t.py:1 f 61 lines"]
    assert _long("class C:\n" + fn(60, "    "), "t.py") == ["t.py:2 f 61 lines"]
    assert _long("def g():\n" + fn(57, "    ") + "    return f\n", "t.py") == []  # 60 lines with f inside
    assert _long("def g():\n" + fn(60, "    ") + "    return f\n", "t.py") == ["t.py:1 g 63 lines", "t.py:2 f 61 lines"]
