"""RunSpec: everything a validation job's workers need, passed to them as one JSON file.

The launcher (``launch.py``) writes it; every torchrun worker (``worker.py``) reads it. Faults for the
robustness tests (kill a rank, hang a rank, raise in a rank) are part of the spec so tests stay bounded
and need no environment tricks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dsv3sim.config.errors import ConfigError

JOBS = ("calibrate", "train")
FAULT_KINDS = ("kill", "hang", "raise")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """Inject a failure into one rank at one step (tests of the failure paths)."""

    kind: str  # kill (SIGKILL itself) | hang (sleep forever outside any collective) | raise (RuntimeError)
    rank: int
    step: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.rank < 0 or self.step < 0:
            raise ConfigError(f"fault rank and step must be >= 0, got rank={self.rank} step={self.step}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSpec:
    """One validation job. World size = nproc * nnodes = ep * pp * dp."""

    job: str  # calibrate | train
    model: str = "tiny"
    nproc: int = 2
    nnodes: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    steps: int = 3
    warmup: int = 1
    device: str = "cpu"
    seq_len: int = 64
    micro_batch: int = 2
    microbatches: int = 0  # 0 -> 2 * pp when pp > 1, else 1
    schedule: str = "1f1b"
    gpus_per_node: int = 0  # virtual node size for node-limited routing; 0 -> ep (one node)
    fp8: bool = False  # FP8 dispatch payload (e4m3, 1x128 tiles), BF16 combine
    fp8_compute: bool = False  # block-scaled FP8 GEMMs in every FP8-capable linear and the routed experts
    seed: int = 0
    threads: int = 1
    collective_timeout_s: float = 60.0
    out_dir: str = ""
    fault: Fault | None = None
    calib_sizes: tuple[int, ...] = field(default=(1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22))
    calib_iters: int = 10
    profile_reps: int = 8  # samples per component in a full probe (quick probes take 3)
    calibrate_first: bool = True  # train job: run the calibration phase first in the same processes

    def __post_init__(self) -> None:
        if self.job not in JOBS:
            raise ConfigError(f"job must be one of {JOBS}, got {self.job!r}")
        for name in ("nproc", "nnodes", "ep", "pp", "dp", "steps", "seq_len", "micro_batch", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.warmup < 0 or self.warmup >= self.steps and self.job == "train":
            raise ConfigError(f"warmup ({self.warmup}) must be >= 0 and < --steps ({self.steps})")
        if self.job == "train" and self.ep * self.pp * self.dp != self.world_size:
            raise ConfigError(f"--ep ({self.ep}) x --pp ({self.pp}) x --dp ({self.dp}) = "
                             f"{self.ep * self.pp * self.dp} must equal the world size nproc ({self.nproc}) "
                             f"x nnodes ({self.nnodes}) = {self.world_size}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        if self.gpus_per_node and self.ep % self.gpus_per_node:
            raise ConfigError(f"--ep ({self.ep}) must be a multiple of --gpus-per-node ({self.gpus_per_node}) "
                             "to define virtual nodes for node-limited routing")
        if self.microbatches < 0:
            raise ConfigError(f"--microbatches must be >= 0, got {self.microbatches}")
        if self.collective_timeout_s <= 0:
            raise ConfigError(f"collective timeout must be > 0 s, got {self.collective_timeout_s}")

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def n_microbatches(self) -> int:
        if self.microbatches:
            return self.microbatches
        return 2 * self.pp if self.pp > 1 else 1

    @property
    def node_size(self) -> int:
        """EP ranks per (virtual) node for node-limited routing (DeepSeek-V3 §2.1.2: at most M nodes a token)."""
        return self.gpus_per_node or self.ep

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @staticmethod
    def from_json(text: str) -> RunSpec:
        d = json.loads(text)
        if d.get("fault"):
            d["fault"] = Fault(**d["fault"])
        d["calib_sizes"] = tuple(d.get("calib_sizes", ()))
        return RunSpec(**d)

    @staticmethod
    def load(path: str | Path) -> RunSpec:
        return RunSpec.from_json(Path(path).read_text())
