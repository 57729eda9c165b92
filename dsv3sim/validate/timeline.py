"""Per-rank measured timeline: forward spans, backward spans (via autograd markers) and bytes on the wire.

Forward: ``with tl.span("attn(F)", layer=i):`` records that span (and a profiler range when profiling).
Backward: the identity autograd function ``mark(x, tl, "attn", i, edge)`` placed on a component's input
(edge "in") and output (edge "out") records when the gradient reaches its output (backward starts) and
leaves its input (backward ends) -> ``attn(B)``.
On CPU the autograd engine runs backward on the calling thread, so host timestamps are the compute times;
on CUDA every timestamp synchronises the device first (serialises streams; fine for validation).
Names follow deepseek-ai/profile-data: ``attn(F)``, ``mlp(F)``, ``dispatch(F)``, ``combine(F)``, ``(B)``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    name: str  # e.g. "attn(F)", "dispatch(B)", "p2p", "allreduce", "optim"
    t0: float
    t1: float
    step: int
    mb: int
    layer: int
    cpu: float = 0.0  # this thread's CPU seconds inside the span (compute spans; the calibration's stage profile)

    @property
    def dur(self) -> float:
        return self.t1 - self.t0


class Timeline:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.events: list[Event] = []
        self.bytes: dict[str, int] = defaultdict(int)  # wire bytes this rank SENT to other ranks, by kind
        self.bytes_self: dict[str, int] = defaultdict(int)  # rows kept on this rank (no wire)
        self.step = -1
        self.mb = 0
        self.recording = True
        self.profiling = False
        self._open: dict[tuple, float] = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, name: str, t0: float, t1: float, layer: int = -1, cpu: float = 0.0) -> None:
        if self.recording:
            self.events.append(Event(name=name, t0=t0, t1=t1, step=self.step, mb=self.mb, layer=layer, cpu=cpu))

    def count_bytes(self, kind: str, wire: int, kept: int = 0) -> None:
        if self.recording:
            self.bytes[kind] += int(wire)
            self.bytes_self[kind] += int(kept)

    @contextmanager
    def span(self, name: str, layer: int = -1):
        t0, c0 = self.now(), time.thread_time()
        rf = torch.profiler.record_function(name) if self.profiling else None
        if rf is not None:
            rf.__enter__()
        try:
            yield
        finally:
            if rf is not None:
                rf.__exit__(None, None, None)
            t1 = self.now()
            self.add(name, t0, t1, layer, time.thread_time() - c0)

    def bwd_edge(self, name: str, layer: int, mb: int, edge: str) -> None:
        key = (name, layer, mb)
        if edge == "out":
            self._open[key] = (self.now(), time.thread_time())
        elif key in self._open:
            t0, c0 = self._open.pop(key)
            saved = self.mb
            self.mb = mb
            t1 = self.now()
            self.add(f"{name}(B)", t0, t1, layer, time.thread_time() - c0)
            self.mb = saved


class _Mark(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tl, name, layer, mb, edge):
        ctx.info = (tl, name, layer, mb, edge)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        tl, name, layer, mb, edge = ctx.info
        tl.bwd_edge(name, layer, mb, edge)
        return g, None, None, None, None, None


def mark(x: torch.Tensor, tl: Timeline, name: str, layer: int, edge: str) -> torch.Tensor:
    """Identity whose backward timestamps the gradient passing ``edge`` ("in" or "out") of a component."""
    if not x.requires_grad:
        return x
    return _Mark.apply(x, tl, name, layer, tl.mb, edge)
