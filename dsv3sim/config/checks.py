"""Shared input checks: types, finiteness, ranges, known keys and size limits, each failing with one line.

Every loader (topologies, scenarios, traces, checkpoints) and every CLI flag goes through these, so a bad value
is refused the same way everywhere: a ``ConfigError`` (a ``ValueError``) whose message names the field and the
value in the form the model-config readers (``model_fields.py``) use too, "<field> must be <what>, got <value>",
which the CLI prints as one line with exit code 2.

Size limits keep a run bounded (minutes, not hours or an out-of-memory kill). Each limit has a name; raise one
with ``dsv3sim --limit NAME=N COMMAND ...`` or the environment variable ``DSV3SIM_LIMITS="NAME=N,NAME=N"``; NAME may
also be a model-config field, whose bounds live in ``dsv3sim/config/model_fields.py``.
The defaults and the time they correspond to on a 2-core CPU box (measured with the commands quoted):

* ``gpus`` 131,072: GPUs in a topology (n_nodes x gpus_per_node). A 16,384-node x 8 topology builds and runs one
  ``comm --kind dispatch --ep 64`` in 8 s; the graph grows linearly beyond.
* ``schedule_cells`` 131,072: pp x micro-batches of one pipeline schedule (``schedule 1f1b --pp 256
  --microbatches 512``: 8 s; pp 512 x 1,024 = 4x the cells: 50 s, superlinear).
* ``comm_tokens`` 16,777,216: tokens routed by one simulated all-to-all (tokens per rank x ranks:
  ``comm --ep 64 --tokens-per-rank 262144``: 16 s); relay chunks c beyond 8 count as (c/8)^2
  (``--chunks 256`` at 4,096 x 64 tokens: 52 s).
* ``collective_ranks`` 256: ranks of one simulated ring collective (flows grow as ranks^2: ``comm --kind
  all-reduce --ep 256``: 9 s; ``--ep 512``: 37 s).
* ``trace_tokens`` 4,194,304: expert selections of a synthesized trace (tokens x layers x top-k) or tokens x
  MoE layers of a captured one (``trace synth --tokens 1048576 --layers 2 --topk 8``, 4x the limit: 95 s, 2.9 GB).
* ``synth_cells`` 67,108,864: layers x experts x (tokens + 16 x windows) of a synthesized trace (its Zipf
  tables and per-token draws; a V3-sized ``trace synth --tokens 4096 --layers 58 --experts 256``, 61M: 4.4 s;
  ``--experts 1000000 --layers 2 --tokens 64``, 192M: over 8 s).
* ``file_bytes`` 4 GiB: a trace or load file read into memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model_fields import MODEL_LIMITS

LIMITS: Mapping[str, int] = MappingProxyType({
    "gpus": 131_072,
    "schedule_cells": 131_072,
    "comm_tokens": 16_777_216,
    "collective_ranks": 256,
    "trace_tokens": 4_194_304,
    "synth_cells": 67_108_864,
    "file_bytes": 4 * 2**30,
})
LIMITS_ENV = "DSV3SIM_LIMITS"


def _describe(v: Any) -> str:
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} ({type(v).__name__})"


def parse_limits(text: str) -> dict[str, int]:
    """``"gpus=262144,comm_tokens=1e8"`` -> {name: int}; unknown names and non-positive values are refused."""
    out: dict[str, int] = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        name, eq, val = part.partition("=")
        name = name.strip()
        if not eq or (name not in LIMITS and name not in MODEL_LIMITS):
            raise ConfigError(f"limit {part!r}: expected NAME=N with NAME one of {', '.join(LIMITS)} "
                              f"or a model-config field ({', '.join(MODEL_LIMITS)})")
        try:
            n = float(val)
        except ValueError:
            n = float("nan")
        if not math.isfinite(n) or n < 1 or n != int(n):
            raise ConfigError(f"limit {name}={val.strip()!r}: expected a positive integer")
        out[name] = int(n)
    return out


def limit(name: str) -> int:
    """The current value of size limit ``name`` (the default unless raised through ``DSV3SIM_LIMITS``)."""
    return parse_limits(os.environ.get(LIMITS_ENV, "")).get(name, LIMITS[name])


def check_limit(name: str, value: float, what: str) -> None:
    """Refuse ``value`` above limit ``name`` with a line saying how to raise it."""
    lim = limit(name)
    if value > lim:
        raise ConfigError(f"{what} = {value:,.0f} exceeds the size limit {name}={lim:,} (keeps a run bounded); "
                          f"raise it with `dsv3sim --limit {name}=N ...` or {LIMITS_ENV}={name}=N")


# ---------------------------------------------------------------- scalar checks

def integer(v: Any, field: str, *, lo: int | None = None, hi: int | None = None, strict: bool = False) -> int:
    """An integer (a float that is exactly integral is accepted unless ``strict``, as for a field kept as given;
    ``2.5``, ``True``, ``"3"``, None never are)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (strict and isinstance(v, float)):
        raise ConfigError(f"{field} must be an integer, got {_describe(v)}")
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise ConfigError(f"{field} must be an integer, got {v!r}")
        v = int(v)
    if lo is not None and v < lo:
        raise ConfigError(f"{field} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigError(f"{field} must be <= {hi:,}, got {v:,}")
    return int(v)


def number(v: Any, field: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> float:
    """A finite real number in [lo, hi] (open ends with ``lo_open``/``hi_open``); bools and strings are refused."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{field} must be a number, got {_describe(v)}")
    x = float(v)
    if not math.isfinite(x):
        raise ConfigError(f"{field} must be a finite number, got {v!r}")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise ConfigError(f"{field} must be {'>' if lo_open else '>='} {lo:g}, got {v!r}")
    if hi is not None and (x >= hi if hi_open else x > hi):
        raise ConfigError(f"{field} must be {'<' if hi_open else '<='} {hi:g}, got {v!r}")
    return x


def boolean(v: Any, field: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{field} must be true or false, got {_describe(v)}")
    return v


def string(v: Any, field: str, *, choices: Iterable[str] | None = None, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{field} must be a string, got {_describe(v)}")
    if not empty and not v.strip():
        raise ConfigError(f"{field} must be a non-empty string")
    if choices is not None:
        opts = tuple(choices)
        if v not in opts:
            raise ConfigError(f"{field} {v!r} unknown (one of {', '.join(opts)})")
    return v


def optional(check, v: Any, field: str, **kw: Any) -> Any:
    """``None`` or ``check(v, field, **kw)``."""
    return None if v is None else check(v, field, **kw)


def mapping(v: Any, field: str) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{field} must be a mapping, got {_describe(v)}")
    return v


def known_keys(d: Mapping, known: Iterable[str], where: str) -> None:
    """Refuse keys not in ``known`` (a typo would otherwise be silently ignored)."""
    known = set(known)
    extra = sorted(str(k) for k in d if k not in known)
    if extra:
        raise ConfigError(f"{where}: unknown keys {extra} (known: {sorted(known)})")


def string_list(v: Any, field: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{field} must be a list of strings, got {_describe(v)}")
    return tuple(v)


# ---------------------------------------------------------------- files

def one_line(e: BaseException | str, max_len: int = 300) -> str:
    """An exception's message on one line (parsers print multi-line messages with carets)."""
    s = " ".join(str(e).split())
    return s if len(s) <= max_len else s[: max_len - 3] + "..."


def read_text(path, what: str, *, max_bytes: int = 16 * 2**20) -> str:
    """A small text file (a config) read as UTF-8, refused with one line when too big, binary or unreadable."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a directory, expected a file")
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{what} {str(p)!r} is {size:,} bytes, more than a config file can be ({max_bytes:,})")
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(p)!r} cannot be read ({e.strerror or one_line(e)})") from None
