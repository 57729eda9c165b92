"""Shared fixtures and markers. GPU tests skip without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # One torch thread per test process: the CI machine has 2 cores and oversubscription slows tests 10-30x.
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for it in items:
        if "gpu" in it.keywords and not has_cuda:
            it.add_marker(skip)


@pytest.fixture
def repo() -> Path:
    return REPO
