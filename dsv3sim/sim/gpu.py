"""Gpu: one compute stream plus a communication partition of SMs that slows compute while comm kernels run.

DeepSeek-V3 §3.2.2: dispatch/combine kernels of DualPipe's overlapped chunks occupy 20 of the H800's 132
SMs, so compute that overlaps communication runs on the remaining 112. We model compute work in
*full-GPU seconds* (the time it would take on all SMs) progressing at rate ``(n_sms - comm_sms) / n_sms``
while at least one communication kernel is active and 1 otherwise (compute-bound kernels scale with SMs;
a memory-bound kernel would slow less, so this is the pessimistic end). Concurrent communication kernels
share the one partition (DeepEP runs dispatch and combine of different micro-batches on the same SMs).

The compute stream is FIFO like a CUDA stream: ``compute(work)`` calls run one after another.
``comm_kernel(event)`` marks a communication kernel running from now until ``event`` fires.
"""

from __future__ import annotations

import simpy

from dsv3sim.config.errors import ConfigError


class Gpu:
    def __init__(self, env: simpy.Environment, *, rank: int, n_sms: int, comm_sms: int,
                 record: bool = True) -> None:
        if not 0 <= comm_sms < n_sms:
            raise ConfigError(f"comm_sms={comm_sms} must be in 0..n_sms-1={n_sms - 1}")
        self.env, self.rank, self.n_sms, self.comm_sms = env, rank, n_sms, comm_sms
        self.stream = simpy.Resource(env, capacity=1)
        self.n_comm = 0
        self._changed = env.event()
        self.timeline: list[tuple[str, str, float, float]] | None = [] if record else None  # stream, tag, t0, t1
        self.compute_busy = 0.0
        self.comm_busy = 0.0
        self._comm_since = 0.0

    @property
    def compute_rate(self) -> float:
        return (self.n_sms - self.comm_sms) / self.n_sms if self.n_comm else 1.0

    def _state_changed(self) -> None:
        ev, self._changed = self._changed, self.env.event()
        ev.succeed()

    def comm_kernel(self, done: simpy.Event, tag: str = "comm") -> None:
        """A communication kernel holds the comm SM partition from now until ``done`` fires."""
        now = self.env.now
        if self.n_comm == 0:
            self._comm_since = now
        self.n_comm += 1
        self._state_changed()

        def _end(_e, t0=now):
            self.n_comm -= 1
            if self.n_comm == 0:
                self.comm_busy += self.env.now - self._comm_since
            if self.timeline is not None:
                self.timeline.append(("comm", tag, t0, self.env.now))
            self._state_changed()

        done.callbacks.append(_end)

    def compute(self, work: float, tag: str = "compute") -> simpy.Process:
        """Queue ``work`` full-GPU seconds on the compute stream; the Process fires when it is done."""
        if work < 0:
            raise ValueError(f"compute work must be >= 0 s, got {work}")
        return self.env.process(self._run(work, tag))

    def _run(self, work: float, tag: str):
        with self.stream.request() as req:
            yield req
            env, t0, left = self.env, self.env.now, float(work)
            while left > 0:
                rate, t = self.compute_rate, env.now
                done = env.timeout(left / rate)
                yield done | self._changed
                if done.triggered and done.processed or env.now >= t + left / rate:
                    left = 0.0
                else:
                    left = max(0.0, left - (env.now - t) * rate)
            self.compute_busy += env.now - t0
            if self.timeline is not None:
                self.timeline.append(("compute", tag, t0, env.now))
