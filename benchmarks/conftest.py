"""Shared set-up of the speed benchmarks: caches emptied before each round, so a round measures a cold run
(what one ``dsv3sim run`` pays), and the scenarios the benchmarks simulate."""

from __future__ import annotations

import functools
import sys

import pytest


def clear_caches() -> None:
    """Empty every ``functools`` cache of the loaded dsv3sim modules (routing plans, kernel times, topologies)."""
    for name, mod in list(sys.modules.items()):
        if not name.startswith("dsv3sim") or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, functools._lru_cache_wrapper):
                obj.cache_clear()


@pytest.fixture
def cold(benchmark):
    """``cold(fn, rounds)``: the benchmark of ``fn()`` with every cache emptied before each round."""

    def run(fn, rounds: int = 3):
        return benchmark.pedantic(fn, setup=clear_caches, rounds=rounds, iterations=1, warmup_rounds=0)

    return run


@pytest.fixture(scope="session")
def pretrain():
    from dsv3sim.workload.loader import load

    return load(None)["deepseek-v3-pretrain"]
