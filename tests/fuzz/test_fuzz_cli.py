"""Property-based fuzzing of the real CLI entry point (``dsv3sim.cli.main`` in-process).

The property, for every generated case: exit 0 or 2 (or an infeasible result), never a traceback, never a hang
(a per-case alarm), never NaN/Infinity in JSON, never a known-invalid input accepted, and nothing in a crafted
file executed. Seed-pinned (``derandomize=True``) and bounded so the default suite stays fast; the ``slow``
variants run many more examples (``python -m pytest -m slow tests/fuzz``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from cases import file_case, flag_case, scenario_case, topology_case
from harness import assert_clean, run_case
from hypothesis import HealthCheck, given, settings

FAST = settings(derandomize=True, max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(FAST, max_examples=400)


def check(case, timeout_s: float = 20.0):
    argv, expect, files, label = case
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        o = run_case([a.replace("{TMP}", d) for a in argv], timeout_s=timeout_s, expect=expect, outdir=tmp)
    assert "EXECUTED-FROM-FILE" not in o.out, f"{label}: a crafted file ran code"
    assert_clean(o, label)
    return o


@FAST
@given(topology_case())
def test_fuzz_topologies(case):
    check(case)


@FAST
@given(flag_case())
def test_fuzz_flags(case):
    check(case)


@settings(FAST, max_examples=40)
@given(file_case())
def test_fuzz_files(case):
    check(case)


@settings(FAST, max_examples=8)
@given(scenario_case())
def test_fuzz_scenario_files(case):
    check(case)


@pytest.mark.slow
@LONG
@given(scenario_case())
def test_fuzz_scenario_files_long(case):
    check(case)


@pytest.mark.slow
@LONG
@given(topology_case())
def test_fuzz_topologies_long(case):
    check(case)


@pytest.mark.slow
@LONG
@given(flag_case())
def test_fuzz_flags_long(case):
    check(case)


@pytest.mark.slow
@LONG
@given(file_case())
def test_fuzz_files_long(case):
    check(case)
