"""Fixtures for the report tests: hand-built results (tests/report/fixtures.py) written to tmp files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("report_fixtures", Path(__file__).with_name("fixtures.py"))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


@pytest.fixture
def train_result() -> dict:
    return fixtures.training_result()


@pytest.fixture
def sweep_result() -> dict:
    return fixtures.sweep_result()


@pytest.fixture
def train_json(tmp_path, train_result) -> Path:
    p = tmp_path / "train.json"
    p.write_text(json.dumps(train_result))
    return p


def torch_like_trace() -> dict:
    """A small trace in torch.profiler's export_chrome_trace layout (CPU ops, GPU kernels, metadata)."""
    ev = [
        {"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "GPU 0"}},
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": 7, "args": {"name": "stream 7"}},
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": 20, "args": {"name": "stream 20"}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1234, "tid": 1, "ts": 1000.0, "dur": 50.0},
        {"ph": "X", "cat": "user_annotation", "name": "attn(F)", "pid": 1234, "tid": 1, "ts": 1000.0, "dur": 300.0},
        {"ph": "X", "cat": "gpu_user_annotation", "name": "attn(F)", "pid": 0, "tid": 7, "ts": 1010.0, "dur": 200.0},
        {"ph": "X", "cat": "kernel", "name": "sm90_xmma_gemm_bf16", "pid": 0, "tid": 7, "ts": 1010.0, "dur": 120.0},
        {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_SendRecv", "pid": 0, "tid": 20, "ts": 1100.0,
         "dur": 400.0},
        {"ph": "X", "cat": "kernel", "name": "flash_fwd_kernel", "pid": 0, "tid": 7, "ts": 1130.0, "dur": 80.0},
    ]
    return {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H200"}], "traceEvents": ev}
