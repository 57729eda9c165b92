"""Pipeline plan for the real run: the action lists of ``dsv3sim.parallel`` plus the geometry the executor
needs (which model stage a rank's chunk holds, where a micro-batch comes from and goes to).

Action strings (``dsv3sim.parallel.actions``): ``F{c}.{mb}`` forward of chunk c on micro-batch mb, ``B``
input-grad backward, ``W`` weight-grad backward, ``BW`` full backward, ``A&B`` an overlapped pair (run back
to back here). The real run does the full backward at ``B``/``BW`` and treats ``W`` as a no-op (PyTorch
computes weight grads with input grads); the predictor does the same, so the comparison is like for like.
Layouts: linear (1F1B, ZB1P), bidirectional (DualPipe: chunk 1 = reverse pipeline, its micro-batches are
distinct), v (DualPipeV: 2P stages). A flow's path lists its (rank, chunk) positions in stage order.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsv3sim.config.errors import ConfigError
from dsv3sim.parallel.actions import Op, parse_action


def parse(item: str) -> list[Op]:
    """'F0.3' -> [Op]; 'F0.9&B1.2' -> two ops, in order (``dsv3sim.parallel.actions``' grammar and checks)."""
    return list(parse_action(item).ops)


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    name: str
    pp: int
    microbatches: int
    layout: str  # linear | bidirectional | v
    actions: dict[int, list[str]]
    source: str

    @property
    def n_stages(self) -> int:
        return 2 * self.pp if self.layout == "v" else self.pp

    def stage_of(self, rank: int, chunk: int) -> int:
        if self.layout == "linear" or chunk == 0:
            return rank
        return self.pp - 1 - rank if self.layout == "bidirectional" else 2 * self.pp - 1 - rank

    def path(self, chunk: int) -> list[tuple[int, int]]:
        """(pipeline rank, chunk) positions of a micro-batch of ``chunk``'s flow, in stage order."""
        down = [(r, 0) for r in range(self.pp)]
        if self.layout == "linear":
            return down
        if self.layout == "bidirectional":
            return down if chunk == 0 else [(r, 1) for r in reversed(range(self.pp))]
        return down + [(r, 1) for r in reversed(range(self.pp))]

    def neighbours(self, rank: int, chunk: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        p = self.path(chunk)
        i = p.index((rank, chunk))
        return (p[i - 1] if i else None), (p[i + 1] if i + 1 < len(p) else None)

    def data_index(self, chunk: int, mb: int) -> int:
        """Global micro-batch index (DualPipe's reverse direction counts its own micro-batches)."""
        return mb + (self.microbatches // 2 if self.layout == "bidirectional" and chunk == 1 else 0)

    def stages_of(self, rank: int) -> list[int]:
        return sorted({self.stage_of(rank, a.chunk) for it in self.actions[rank] for a in parse(it)})


def plan(name: str, pp: int, microbatches: int) -> Plan:
    if pp < 1 or microbatches < 1:
        raise ConfigError(f"pipeline needs pp >= 1 and microbatches >= 1, got pp={pp} microbatches={microbatches}")
    sched = _from_parallel(name, pp, microbatches)
    lists = {int(r): [str(a) for a in v] for r, v in sched.actions.items()}
    return Plan(name=name, pp=pp, microbatches=microbatches, layout=sched.layout, actions=lists,
                source=f"dsv3sim.parallel ({name})")


def _from_parallel(name: str, pp: int, microbatches: int):
    from dsv3sim.parallel import generate

    return generate(name, pp, microbatches)
