"""Profile tables on disk (no torch): the CSV schema and a typed, cached reader.

Committed tables live in ``profiles/<gpu>/`` (``kernels.csv`` = lattice + model shapes, ``heldout.csv`` =
shapes kept out of the predictor, used only to check it). One row = one operator at one shape and dtype:
``time_s`` (median per call), its p10/p90 spread, FLOPs and bytes (``ops.py`` conventions), achieved
``tflops`` and ``gbps``; rows with an ``error`` were not measurable (kept to show what failed).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHAPE_KEYS = ("m", "n", "k", "e", "b", "s", "t", "h", "d", "dqk", "dv", "dc", "dr", "n_group", "topk_group",
              "top_k", "dist", "impl", "kvh")
COLUMNS = ("op", "dtype", "role", "set", *SHAPE_KEYS, "kernel", "time_s", "p10_s", "p90_s", "n_calls", "reps", "mode",
           "flops", "bytes", "tflops", "gbps", "error")
_STR_KEYS = {"op", "dtype", "role", "set", "dist", "impl", "kernel", "mode", "error"}

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    op: str
    dtype: str
    role: str
    set: str
    shape: tuple[tuple[str, Any], ...]  # sorted (key, value) of the non-empty shape keys
    time_s: float
    flops: float
    bytes: float

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.shape).get(key, default)


def _parse(v: str, key: str) -> Any:
    if key in _STR_KEYS or v == "":
        return v
    f = float(v)
    return int(f) if f.is_integer() and key in SHAPE_KEYS else f


@functools.lru_cache(maxsize=32)
def read_rows(path: str | Path) -> tuple[Row, ...]:
    """The measured rows of one CSV (errors dropped), parsed once per process."""
    rows = []
    with Path(path).open(newline="") as f:
        for raw in csv.DictReader(f):
            if raw.get("error") or not raw.get("time_s"):
                continue
            shape = tuple(sorted((k, _parse(raw[k], k)) for k in SHAPE_KEYS if raw.get(k, "") != ""))
            rows.append(Row(op=raw["op"], dtype=raw["dtype"], role=raw.get("role", ""), set=raw.get("set", ""),
                            shape=shape, time_s=float(raw["time_s"]), flops=float(raw["flops"] or 0),
                            bytes=float(raw["bytes"] or 0)))
    return tuple(rows)


def read_raw(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def profile_dir(gpu: str) -> Path:
    return PROFILES_DIR / gpu.lower()
