"""Kernel timing done the careful way (METHOD.md of the device docs; triton.testing.do_bench).

GPU: CUDA events around a captured CUDA graph of ``n_calls`` launches, each call on a different input set
(``sets`` rotate, so L2 (60 MB on H200) never holds the next call's operands: weights of a real layer are not
cache-resident either). Graph replay removes the Python launch gaps that would dominate kernels of a few
microseconds. The graph is replayed ``reps`` times after warm-up; the per-call time is the median replay time
divided by ``n_calls``; p10/p90 over replays are kept as the spread. If capture fails (an op that syncs or
allocates on the host), eager launches between events are timed instead (``mode='eager'``).

CPU: ``time.perf_counter`` around single calls, rotating sets, median of ``reps``.

Random inputs only (never zeros: zeros run ~13% faster on an H200 bf16 GEMM, device METHOD.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

L2_FLUSH_BYTES = 256 * 2**20  # rotate enough input sets to cover >4x the H200's 60 MB L2


@dataclass(frozen=True, kw_only=True, slots=True)
class Timing:
    time_s: float  # median per call
    p10_s: float
    p90_s: float
    n_calls: int  # launches per timed sample
    reps: int
    mode: str  # "graph" | "eager" | "cpu"


def n_sets_for(bytes_per_set: float, lo: int = 2, hi: int = 48) -> int:
    """How many distinct input sets to rotate so they span L2_FLUSH_BYTES."""
    return int(min(hi, max(lo, -(-L2_FLUSH_BYTES // max(1, int(bytes_per_set))))))


def _quantiles(xs: Sequence[float]) -> tuple[float, float, float]:
    s = sorted(xs)
    q = lambda f: s[min(len(s) - 1, max(0, round(f * (len(s) - 1))))]
    return statistics.median(s), q(0.1), q(0.9)


def time_cpu(fn: Callable[..., Any], sets: Sequence[tuple], reps: int = 7, warmup: int = 1) -> Timing:
    for i in range(warmup):
        fn(*sets[i % len(sets)])
    ts = []
    for i in range(reps):
        args = sets[i % len(sets)]
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    med, p10, p90 = _quantiles(ts)
    return Timing(time_s=med, p10_s=p10, p90_s=p90, n_calls=1, reps=reps, mode="cpu")


def _eager_once(fn: Callable[..., Any], sets: Sequence[tuple], n: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(n):
        fn(*sets[i % len(sets)])
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3 / n


def time_cuda(fn: Callable[..., Any], sets: Sequence[tuple], *, target_s: float = 1e-3, reps: int = 10,
              use_graph: bool = True) -> Timing:
    """Median per-call seconds of ``fn(*set)`` rotating over ``sets`` (see module docstring)."""
    fn(*sets[0])  # compile / heuristics / handles
    torch.cuda.synchronize()
    est = _eager_once(fn, sets, len(sets))  # includes launch gaps: an upper bound
    n_calls = len(sets) * max(1, min(64, int(target_s / max(est, 1e-7) / len(sets))))
    if est * n_calls * reps > 1.5:  # long kernels: fewer replays (each still >= 2 calls)
        reps = max(5, int(1.5 / (est * n_calls)))
    if use_graph:
        try:
            g = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                fn(*sets[0])  # warm on the side stream (cuBLAS workspace)
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            with torch.cuda.graph(g):
                for i in range(n_calls):
                    fn(*sets[i % len(sets)])
            for _ in range(2):
                g.replay()
            torch.cuda.synchronize()
            ts = []
            for _ in range(reps):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                g.replay()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b) * 1e-3 / n_calls)
            del g
            med, p10, p90 = _quantiles(ts)
            return Timing(time_s=med, p10_s=p10, p90_s=p90, n_calls=n_calls, reps=reps, mode="graph")
        except Exception:  # noqa: BLE001 - capture unsupported for this op: fall back to eager
            torch.cuda.synchronize()
    ts = [_eager_once(fn, sets, n_calls) for _ in range(reps)]
    med, p10, p90 = _quantiles(ts)
    return Timing(time_s=med, p10_s=p10, p90_s=p90, n_calls=n_calls, reps=reps, mode="eager")


def time_fn(fn: Callable[..., Any], sets: Sequence[tuple], device: str, *, graph: bool = True, **kw: Any) -> Timing:
    if device == "cpu":
        return time_cpu(fn, sets, reps=kw.get("reps", 5))
    return time_cuda(fn, sets, use_graph=graph, **kw)
