"""argparse ``type=`` functions shared by the commands: every flag value checked where it is parsed.

A bad value makes argparse print the usage and one ``error: argument --x: ...`` line, exit code 2, before any
work starts. Numbers are finite (``nan``/``inf`` refused) and in range; counts are integers >= 1 unless said;
output paths must not be directories. ``device`` checks that CUDA is there when asked for.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dsv3sim.config.host import host_memory_bytes


def _num(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_range(lo: int | None = 1, hi: int | None = None):
    """An integer in [lo, hi]."""
    def parse(text: str) -> int:
        v = _int(text)
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A finite float in [lo, hi] (open ends with ``lo_open``/``hi_open``)."""
    def parse(text: str) -> float:
        x = _num(text)
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text}")
        if hi is not None and (x >= hi if hi_open else x > hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}, got {text}")
        return x
    parse.__name__ = "number"
    return parse


pos_int = int_range(1)  # a count >= 1
nonneg_int = int_range(0)  # a count >= 0
seed = int_range(0, 2**63 - 1)  # numpy/torch seeds
pos_float = float_range(0, lo_open=True)  # a finite number > 0
nonneg_float = float_range(0)  # a finite number >= 0
finite_float = float_range()  # any finite number
fraction = float_range(0, 1)  # in [0, 1]


def out_path(text: str) -> str:
    """An output file: not an existing directory, and not a path under an existing file."""
    p = Path(text)
    if not text or p.is_dir() or text.endswith(("/", "\\")):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is a file, not a folder")
            break
    return text


def device(text: str) -> str:
    """A torch device string; ``cuda``/``cuda:N`` only where CUDA is available (torch imported lazily)."""
    kind, _, idx = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (idx and not idx.isdigit()):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} asked for but CUDA is not available here (use cpu)")
        if idx and int(idx) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if kind == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} asked for but MPS is not available here (use cpu)")
    return text


def threads(text: str) -> int:
    """Torch CPU threads: 1 .. 4096."""
    return int_range(1, 4096)(text)


# Bytes per parameter that building the executable model needs (FP32 parameters; training adds the gradient and
# AdamW's two moments: 4 + 4 + 8).
BYTES_PER_PARAM = {"build": 4, "train": 16}


def memory_bytes(dev: str) -> int:
    """Memory of the device a command builds the model on: the GPU's, or this machine's physical RAM."""
    if dev.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(dev)).total_memory)
    return host_memory_bytes()


def check_model_fits(cfg, dev: str, use: str) -> None:
    """Refuse, before allocating, a model whose parameters (x ``BYTES_PER_PARAM[use]``) exceed the device's
    memory: building DeepSeek-V3 on a laptop is a clear error, not an out-of-memory kill."""
    from dsv3sim.config.errors import ConfigError
    from dsv3sim.cost.params import count_params

    n = count_params(cfg).total_with_mtp
    need, have = n * BYTES_PER_PARAM[use], memory_bytes(dev)
    if need > have:
        raise ConfigError(f"{cfg.name}: {n / 1e9:,.2f}B parameters need {need / 2**30:,.1f} GiB to {use} "
                          f"({BYTES_PER_PARAM[use]} B/param) but {dev} has {have / 2**30:,.1f} GiB; use a smaller "
                          f"config (e.g. tiny) or the simulator (`dsv3sim run`) for full-size models")
