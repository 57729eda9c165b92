"""A pipeline schedule as data: per rank, the ordered list of actions it runs, plus where each chunk sits.

Three layouts of model stages over ranks (P ranks):
  linear         1F1B, ZB1P: one chunk per rank, stage = rank; every micro-batch flows rank 0 -> P-1.
  bidirectional  DualPipe (DeepSeek-V3 §3.2.1): each rank holds two copies (chunks) of the model:
                 chunk 0 = stage r of the forward-direction pipeline (micro-batches enter at rank 0),
                 chunk 1 = stage P-1-r of the reverse-direction pipeline (micro-batches enter at rank P-1).
                 The M micro-batches are split in half, M/2 per direction; ``F0.3`` and ``F1.3`` are two
                 different micro-batches (mb numbers count within a direction, as DualPipe's counters do).
  v              DualPipeV (deepseek-ai/DualPipe dualpipev.py, "cut-in-half"): 2P stages on P ranks;
                 chunk 0 of rank r = stage r, chunk 1 = stage 2P-1-r; micro-batch mb runs chunk 0 down
                 ranks 0..P-1, then chunk 1 back up ranks P-1..0 (loss on rank 0).

A *flow* is one micro-batch's trip through the stages: ``path(flow)`` lists its (rank, chunk) positions in
stage order; dependencies (check.py, executor.py) follow that path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsv3sim.config.errors import ConfigError
from dsv3sim.parallel.actions import Action, parse_action

LAYOUTS = ("linear", "bidirectional", "v")
Position = tuple[int, int]   # (rank, chunk)
Flow = tuple[int, int]       # (direction, micro-batch); direction is 0 except DualPipe's reverse pipeline


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """Per-rank action lists of one pipeline schedule (``actions[rank]`` in execution order)."""

    name: str
    pp: int                 # pipeline ranks (devices)
    microbatches: int       # micro-batches per step, over both directions for DualPipe
    layout: str
    actions: dict[int, tuple[Action, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"schedule layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.pp < 1 or self.microbatches < 1:
            raise ConfigError(f"schedule needs pp >= 1 and microbatches >= 1, got pp={self.pp} "
                             f"microbatches={self.microbatches}")
        if self.layout == "bidirectional" and (self.pp % 2 or self.microbatches % 2):
            raise ConfigError(f"a bidirectional schedule needs even pp and microbatches, got pp={self.pp} "
                             f"microbatches={self.microbatches}")
        if sorted(self.actions) != list(range(self.pp)):
            raise ValueError(f"schedule {self.name}: action lists for ranks {sorted(self.actions)}, "
                             f"expected 0..{self.pp - 1}")

    # -- geometry -------------------------------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        """Model chunks held per rank (= parameter copies per device, in units of one stage)."""
        return 1 if self.layout == "linear" else 2

    @property
    def n_stages(self) -> int:
        """Model stages a micro-batch passes through."""
        return 2 * self.pp if self.layout == "v" else self.pp

    def stage_of(self, rank: int, chunk: int) -> int:
        """Model stage index held by chunk ``chunk`` on ``rank`` (in its own direction for DualPipe)."""
        if self.layout == "linear":
            return rank
        if self.layout == "bidirectional":
            return rank if chunk == 0 else self.pp - 1 - rank
        return rank if chunk == 0 else 2 * self.pp - 1 - rank

    def flows_per_direction(self) -> int:
        return self.microbatches // 2 if self.layout == "bidirectional" else self.microbatches

    def flow_of(self, chunk: int, mb: int) -> Flow:
        return (chunk, mb) if self.layout == "bidirectional" else (0, mb)

    def flows(self) -> list[Flow]:
        dirs = (0, 1) if self.layout == "bidirectional" else (0,)
        return [(d, m) for d in dirs for m in range(self.flows_per_direction())]

    def path(self, flow: Flow) -> list[Position]:
        """(rank, chunk) positions of a flow in stage order."""
        d, _ = flow
        down = [(r, 0) for r in range(self.pp)]
        if self.layout == "linear":
            return down
        if self.layout == "bidirectional":
            return down if d == 0 else [(r, 1) for r in reversed(range(self.pp))]
        return down + [(r, 1) for r in reversed(range(self.pp))]

    # -- views ----------------------------------------------------------------------------------------
    def as_strings(self) -> dict[int, list[str]]:
        return {r: [str(a) for a in acts] for r, acts in self.actions.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "pp": self.pp, "microbatches": self.microbatches, "layout": self.layout,
                "n_stages": self.n_stages, "ranks": {str(r): v for r, v in self.as_strings().items()}}


def from_strings(name: str, pp: int, microbatches: int, layout: str, ranks: dict) -> Schedule:
    """Build a Schedule from ``{rank: ["F0.0", "F0.1&BW0.0", ...]}`` (e.g. a hand-written schedule)."""
    acts = {int(r): tuple(parse_action(a) for a in v) for r, v in ranks.items()}
    return Schedule(name=name, pp=pp, microbatches=microbatches, layout=layout, actions=acts)
