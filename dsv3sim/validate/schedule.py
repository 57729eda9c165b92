"""Pipeline action lists for the real run: parse, fetch from ``dsv3sim.parallel``, and a 1F1B fallback.

Action strings (shared with ``dsv3sim.parallel``): ``F{c}.{mb}`` forward of chunk c on microbatch mb,
``B{c}.{mb}`` backward (input grads), ``W{c}.{mb}`` weight grads, ``BW{c}.{mb}`` full backward, and
``A&B`` two actions the schedule overlaps (DualPipe's F&B pairs; run back to back here). The real run does
full backward at ``B``/``BW`` and treats ``W`` as a no-op (PyTorch computes weight grads with input grads);
the predictor does the same, so the comparison is like for like.

1F1B (PipeDream-flush; Narayanan et al., SC'21, §2.2): stage s of P runs min(P-1-s, M) warm-up forwards,
then alternates one forward / one backward, then drains the remaining backwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACT = re.compile(r"^(BW|F|B|W)(\d+)\.(\d+)$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    kind: str  # F | B | W | BW
    chunk: int
    mb: int


def parse(item: str) -> list[Action]:
    """'F0.3' -> [Action]; 'F0.9&B1.2' -> two actions, in order."""
    out = []
    for part in str(item).split("&"):
        m = _ACT.match(part.strip())
        if not m:
            raise ValueError(f"bad pipeline action {part!r} in {item!r}: expected F|B|W|BW<chunk>.<microbatch>")
        out.append(Action(kind=m.group(1), chunk=int(m.group(2)), mb=int(m.group(3))))
    return out


def one_f_one_b(pp: int, microbatches: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for s in range(pp):
        warm = min(pp - 1 - s, microbatches)
        acts = [f"F0.{m}" for m in range(warm)]
        f, b = warm, 0
        while f < microbatches:
            acts += [f"F0.{f}", f"B0.{b}"]
            f, b = f + 1, b + 1
        acts += [f"B0.{m}" for m in range(b, microbatches)]
        out[s] = acts
    return out


def generate(name: str, pp: int, microbatches: int) -> tuple[dict[int, list[str]], str]:
    """Action lists per pipeline rank and where they came from."""
    if pp < 1 or microbatches < 1:
        raise ValueError(f"pipeline needs pp >= 1 and microbatches >= 1, got pp={pp} microbatches={microbatches}")
    if name == "1f1b" and pp > 1 and microbatches < pp:
        raise ValueError(f"1F1B with pp={pp} needs microbatches >= pp, got {microbatches}")
    try:
        from dsv3sim.parallel import generate as par_generate  # type: ignore[attr-defined]
        acts = par_generate(name, pp, microbatches)
        lists = {int(r): [str(a) for a in v] for r, v in _as_lists(acts).items()}
        for v in lists.values():
            for a in v:
                parse(a)
        return lists, f"dsv3sim.parallel.generate({name!r})"
    except (ImportError, AttributeError, TypeError, KeyError):
        if name != "1f1b":
            raise ValueError(f"schedule {name!r} needs dsv3sim.parallel, which is not available; use 1f1b")
        return one_f_one_b(pp, microbatches), "validate.schedule.one_f_one_b (dsv3sim.parallel not available)"


def _as_lists(acts) -> dict:
    if isinstance(acts, dict):
        return acts
    if hasattr(acts, "actions"):
        return _as_lists(acts.actions)
    if isinstance(acts, (list, tuple)):
        return dict(enumerate(acts))
    raise TypeError(f"unknown schedule object {type(acts).__name__}")


def chunk_stage(name: str, pp_rank: int, chunk: int, pp: int) -> int:
    """Which model stage a rank's chunk holds: 1F1B: its own index; DualPipe: i (chunk 0) and P-1-i (chunk 1)."""
    if chunk == 0:
        return pp_rank
    if name.startswith("dualpipe") and chunk == 1:
        return pp - 1 - pp_rank
    raise ValueError(f"schedule {name!r}: chunk {chunk} on pipeline rank {pp_rank} is not supported")
