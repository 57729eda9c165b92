"""Pipeline actions as compact strings: ``F0.3``, ``B1.2``, ``W0.7``, ``BW0.1`` and overlapped pairs ``F0.9&BW1.2``.

One *op* is one pass of one model chunk over one micro-batch:
  F{c}.{mb}   forward of chunk c on micro-batch mb
  B{c}.{mb}   backward for inputs only (activation gradients; zero-bubble split, Qi et al. 2024 §2)
  W{c}.{mb}   backward for weights (the deferred half of a split backward)
  BW{c}.{mb}  unsplit backward (input and weight gradients in one pass)
One *action* is what a rank runs in one slot: a single op, or two ops joined with ``&`` that the schedule
overlaps (DualPipe's forward-backward pairs, DeepSeek-V3 §3.2.1: the forward of one chunk hides the
all-to-all and PP communication of the backward of another, and vice versa). The chunk index c is the
model copy on the rank: 0 for 1F1B/ZB1P; for DualPipe 0 = the forward direction and 1 = the reverse
direction; for DualPipeV 0 = the descending arm of the V and 1 = the ascending arm (see schedules.py).

The same syntax is read by ``dsv3sim.validate.schedule.parse``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsv3sim.config.errors import ConfigError

KINDS = ("F", "B", "W", "BW")
_OP = re.compile(r"^(BW|F|B|W)(\d+)\.(\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class Op:
    """One pass: kind in F | B | W | BW, chunk (model copy on the rank), micro-batch index."""

    kind: str
    chunk: int
    mb: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"op kind must be one of {KINDS}, got {self.kind!r}")
        if self.chunk < 0 or self.mb < 0:
            raise ValueError(f"op chunk and micro-batch must be >= 0, got chunk={self.chunk} mb={self.mb}")

    def __str__(self) -> str:
        return f"{self.kind}{self.chunk}.{self.mb}"

    @property
    def is_backward(self) -> bool:
        """True for B and BW: the passes that produce input gradients (and free activations)."""
        return self.kind in ("B", "BW")


@dataclass(frozen=True, slots=True)
class Action:
    """One slot of a rank's list: one op, or two overlapped ops (``F0.9&BW1.2``)."""

    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.ops) <= 2:
            raise ValueError(f"an action holds 1 op or an overlapped pair of 2, got {len(self.ops)}: {self.ops}")
        if len(self.ops) == 2 and {o.kind for o in self.ops} & {"W"}:
            raise ValueError(f"an overlapped pair joins a forward and a backward, not a W: {self}")

    def __str__(self) -> str:
        return "&".join(str(o) for o in self.ops)

    @property
    def is_pair(self) -> bool:
        return len(self.ops) == 2

    @property
    def category(self) -> str:
        """Trace category: the op kind, or 'F&B' for an overlapped pair."""
        return "F&B" if self.is_pair else self.ops[0].kind


def parse_op(text: str) -> Op:
    m = _OP.match(text.strip())
    if not m:
        raise ConfigError(f"bad pipeline op {text!r}: expected F|B|W|BW<chunk>.<microbatch>, e.g. F0.3")
    return Op(m.group(1), int(m.group(2)), int(m.group(3)))


def parse_action(text: str) -> Action:
    """'F0.3' -> Action((Op('F',0,3),)); 'F0.9&BW1.2' -> an overlapped pair."""
    if isinstance(text, Action):
        return text
    return Action(tuple(parse_op(p) for p in str(text).split("&")))


def format_action(action: Action | Op) -> str:
    return str(action)


def act(*ops: Op) -> Action:
    return Action(tuple(ops))
