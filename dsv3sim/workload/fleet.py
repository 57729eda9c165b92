"""A day of serving on an autoscaled fleet: from per-node capacity (what the step model gives) to the 24-hour
average per node and the node count, with no published per-node figure or node count as input.

A published per-node figure such as DeepSeek's Day 6 (73.7k input / 14.8k output tokens/s per H800 node) is the
day's tokens over the node-hours spent. Capacity overstates it because the fleet is sized ahead of the load.
This module prices that gap from first principles:

1. **Load curve** (``DiurnalLoad``): the day's token totals spread over 24 h by a parametric shape with mean 1
   and a peak-to-mean ratio r (a scenario parameter: the default is an assumption, not a measurement):
   ``flat``; ``sinusoid`` 1 + (r - 1) cos(w (t - t_peak)), w = 2 pi / 24 h (the classic diurnal fit of
   arrival-rate functions, Calzarossa & Serazzi, IEEE TC 1985); ``two-peak`` 1 + (r - 1) (cos x + cos 2x) / 2
   (a morning and an evening peak), x = w (t - t_peak).
2. **SLA batch** (``Pool``): each pool (prefill, decode) runs at most its SLA batch per GPU, the largest batch
   whose step meets TTFT / TPOT (decode: DeepSeek's published 20-22 tokens/s per user sets TPOT); at that batch
   a node delivers ``capacity_tokens_per_s_per_node`` and holds ``slots_per_node`` requests in service
   (decode: batch x GPUs; prefill: the requests one step carries).
3. **Burst headroom**: requests arrive as a Poisson process. The requests in service at once (decode: M/G/inf
   occupancy, Little: m = lambda x request time) or arriving during one prefill step (m = lambda x step) are
   Poisson(m); the pool needs slots for its p-quantile, m + z_p sqrt(m) (normal approximation of the Poisson
   tail; z_0.99 = 2.326), else requests wait a further step (TTFT) or a decode slot (TPOT/TTFT).
   Nodes needed at load lambda: n(lambda) = (m + z sqrt(m)) / slots_per_node with m = lambda slots / capacity.
4. **Autoscaling** (``Autoscaler``): the fleet changes every ``scale_interval_h`` hours (DeepSeek Day 6: all
   nodes by day, fewer at night, the rest lent to research/training), sized for the interval's largest need,
   in whole deployment units (Day 6 / V3 §3.4: prefill 4 nodes, decode 18 nodes), never below the warm minimum.
   ``services`` models copies deployed separately (Day 6's fleet serves V3 and R1) on equal shares of the load.
5. **Result**: node-hours = sum over intervals of nodes x hours; average tokens/s per node = tokens served /
   node-seconds; average nodes = node-hours / 24 h; inside an interval the batch per GPU follows the load (the
   pool's throughput-vs-batch curve inverted at lambda / nodes), so the per-node rate falls when load is low.

Closed forms (tested): flat load, no bursts, unit -> 0: average = capacity. Sinusoid, no bursts, unit -> 0:
interval -> 0 gives node-hours = tokens / capacity; a 12 h day/night split centred on the peak gives
node-hours = 12 h x mean / capacity x (2 + (r - 1)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.workload.fleet_defaults import (
    DEFAULT_BURST_QUANTILE,
    DEFAULT_PEAK_TO_MEAN,
    DEFAULT_SCALE_INTERVAL_H,
    DEFAULT_SHAPE,
    SHAPES,
)

DAY_H = 24.0
BINS_PER_HOUR = 60  # one-minute resolution of the load curve
DAY6_PREFILL_UNIT_NODES = 4  # Day 6 / V3 §3.4.1: a prefill deployment unit is 4 nodes (EP32)
DAY6_DECODE_UNIT_NODES = 18  # Day 6: a decode deployment unit is 18 nodes (EP144)


def z_quantile(p: float) -> float:
    """Standard normal quantile z_p."""
    if not 0.5 <= p < 1:
        raise ConfigError(f"burst quantile must be in [0.5, 1), got {p}")
    return NormalDist().inv_cdf(p)


@dataclass(frozen=True, kw_only=True, slots=True)
class DiurnalLoad:
    """The shape of the day's load, mean 1 over 24 h (see the module docstring)."""

    shape: str = DEFAULT_SHAPE
    peak_to_mean: float = DEFAULT_PEAK_TO_MEAN
    peak_hour: float = 14.0
    source: str = f"assumption: a sinusoid with peak {DEFAULT_PEAK_TO_MEAN:g} x mean (vary --peak-to-mean)"

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ConfigError(f"load shape {self.shape!r} unknown (known: {', '.join(SHAPES)})")
        top = {"flat": 1.0, "sinusoid": 2.0, "two-peak": 1 + 1 / 0.5625}[self.shape]
        if not 1.0 <= self.peak_to_mean <= top:
            raise ConfigError(f"peak_to_mean {self.peak_to_mean} must be in [1, {top:.3g}] for the {self.shape} "
                              "shape (the trough must stay >= 0)")

    def factor(self, t_h: np.ndarray) -> np.ndarray:
        a = self.peak_to_mean - 1.0
        x = 2 * np.pi * (t_h - self.peak_hour) / DAY_H
        if self.shape == "flat" or a == 0:
            return np.ones_like(t_h)
        if self.shape == "sinusoid":
            return 1.0 + a * np.cos(x)
        return 1.0 + a * 0.5 * (np.cos(x) + np.cos(2 * x))  # max 1 + a at x = 0, min 1 - 0.5625 a


@dataclass(frozen=True, kw_only=True, slots=True)
class Pool:
    """A serving pool at its SLA batch: per-node capacity, requests in service per node, deployment unit, and
    (optionally) its throughput-vs-batch curve for the batch at lower load."""

    name: str
    capacity_tokens_per_s_per_node: float
    slots_per_node: float
    unit_nodes: float
    min_units: int = 1
    sla_batch_per_gpu: float | None = None
    curve: tuple[tuple[float, float], ...] = ()  # (batch per GPU, tokens/s per node), batch ascending
    batch_unit: str = "requests"  # decode: requests per GPU; prefill: tokens per GPU per step
    gpus_per_node: int = 8

    def __post_init__(self) -> None:
        for n in ("capacity_tokens_per_s_per_node", "slots_per_node", "unit_nodes"):
            if not getattr(self, n) > 0:
                raise ConfigError(f"{self.name} pool: {n} must be > 0, got {getattr(self, n)}")
        if self.min_units < 0:
            raise ConfigError(f"{self.name} pool: min_units must be >= 0, got {self.min_units}")

    def nodes_needed(self, lam: np.ndarray, z: float) -> np.ndarray:
        """Nodes (continuous) whose slots cover the z-quantile of Poisson(m), m = lam x slots / capacity."""
        m = lam * self.slots_per_node / self.capacity_tokens_per_s_per_node
        return (m + z * np.sqrt(m)) / self.slots_per_node

    def batch_at(self, rate_per_node: np.ndarray) -> np.ndarray | None:
        """Batch per GPU at which a node delivers ``rate_per_node`` (the curve inverted, linear between points,
        proportional below the first)."""
        if not self.curve:
            return None
        b = np.array([0.0] + [c[0] for c in self.curve])
        r = np.array([0.0] + [c[1] for c in self.curve])
        r = np.maximum.accumulate(r)
        return np.interp(rate_per_node, r, b)


@dataclass(frozen=True, kw_only=True, slots=True)
class Autoscaler:
    scale_interval_h: float = DEFAULT_SCALE_INTERVAL_H
    burst_quantile: float = DEFAULT_BURST_QUANTILE
    align_to_peak: bool = True  # an interval is centred on the load peak (the operator knows the daily rhythm)
    whole_units: bool = True  # False: fractional deployments (the capacity arithmetic's continuous node count)

    def __post_init__(self) -> None:
        if not 0 < self.scale_interval_h <= DAY_H:
            raise ConfigError(f"scale_interval_h must be in (0, 24], got {self.scale_interval_h}")
        z_quantile(self.burst_quantile)


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolDay:
    name: str
    tokens: float
    node_hours: float
    average_nodes: float
    peak_nodes: float
    min_nodes: float
    capacity_tokens_per_s_per_node: float
    tokens_per_s_per_node_average: float
    utilisation: float
    unit_nodes: float
    mean_batch_per_gpu: float | None
    sla_batch_per_gpu: float | None
    mean_tokens_per_s_per_request: float | None  # decode: token-weighted output speed a user sees over the day
    node_hours_by_cause: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _interval_index(t_h: np.ndarray, load: DiurnalLoad, sc: Autoscaler) -> np.ndarray:
    off = (load.peak_hour - sc.scale_interval_h / 2) if sc.align_to_peak else 0.0
    return np.floor(((t_h - off) % DAY_H) / sc.scale_interval_h).astype(int)


def _deployed(need: np.ndarray, idx: np.ndarray, unit: float, min_units: int, *, whole_units: bool) -> np.ndarray:
    """Nodes deployed per bin: each interval's largest need, in whole units, at least the warm minimum."""
    out = np.empty_like(need)
    for k in np.unique(idx):
        sel = idx == k
        n = need[sel].max()
        n = math.ceil(n / unit - 1e-9) * unit if whole_units else n
        out[sel] = max(n, min_units * unit if whole_units else 0.0)
    return out


def pool_day(pool: Pool, daily_tokens: float, load: DiurnalLoad, sc: Autoscaler) -> PoolDay:
    """One pool's day (see the module docstring)."""
    return _pool_day(pool, daily_tokens, load, sc)[0]


def _pool_day(pool: Pool, daily_tokens: float, load: DiurnalLoad, sc: Autoscaler) -> tuple[PoolDay, np.ndarray]:
    if daily_tokens < 0:
        raise ConfigError(f"{pool.name}: daily tokens must be >= 0, got {daily_tokens}")
    n_bins = int(DAY_H * BINS_PER_HOUR)
    t = (np.arange(n_bins) + 0.5) / BINS_PER_HOUR
    lam = daily_tokens / (DAY_H * 3600.0) * load.factor(t)  # tokens/s
    idx = _interval_index(t, load, sc)
    z = z_quantile(sc.burst_quantile)
    dt_h = 1.0 / BINS_PER_HOUR
    ideal = pool.nodes_needed(lam, 0.0)
    burst = pool.nodes_needed(lam, z)
    steps = {"ideal (load / capacity)": ideal,
             "+ burst headroom": burst,
             "+ interval sizing": _deployed(burst, idx, pool.unit_nodes, 0, whole_units=False),
             "+ whole units, warm minimum": _deployed(burst, idx, pool.unit_nodes, pool.min_units,
                                                      whole_units=sc.whole_units)}
    causes = {k: float(v.sum() * dt_h) for k, v in steps.items()}
    nodes = steps["+ whole units, warm minimum"]
    nodes_total = nodes.sum()
    node_h = float(nodes_total * dt_h)
    avg = daily_tokens / (node_h * 3600.0) if node_h > 0 else 0.0
    rate = np.divide(lam, nodes, out=np.zeros_like(lam), where=nodes > 0)
    b = pool.batch_at(rate)
    mean_b = float((b * nodes).sum() / nodes_total) if b is not None and nodes_total > 0 else None
    speed = None
    if b is not None and pool.batch_unit == "requests" and lam.sum() > 0:
        per_req = np.divide(rate, b * pool.gpus_per_node, out=np.zeros_like(rate), where=b > 0)
        speed = float((per_req * lam).sum() / lam.sum())
    return PoolDay(name=pool.name, tokens=daily_tokens, node_hours=node_h, average_nodes=node_h / DAY_H,
                   peak_nodes=float(nodes.max()), min_nodes=float(nodes.min()),
                   capacity_tokens_per_s_per_node=pool.capacity_tokens_per_s_per_node,
                   tokens_per_s_per_node_average=avg, utilisation=avg / pool.capacity_tokens_per_s_per_node,
                   unit_nodes=pool.unit_nodes, mean_batch_per_gpu=mean_b, sla_batch_per_gpu=pool.sla_batch_per_gpu,
                   mean_tokens_per_s_per_request=speed,
                   node_hours_by_cause=causes), nodes


def _services_day(pool: Pool, tokens: float, load: DiurnalLoad, sc: Autoscaler, services: int):
    """``services`` independently deployed copies (different weights: e.g. V3 and R1) sharing the tokens
    equally: each rounds to its own units and keeps its own warm minimum."""
    one, nodes = _pool_day(pool, tokens / services, load, sc)
    if services == 1:
        return one, nodes
    d = one.to_dict()
    for k in ("tokens", "node_hours", "average_nodes", "peak_nodes", "min_nodes"):
        d[k] *= services
    d["node_hours_by_cause"] = {k: v * services for k, v in d["node_hours_by_cause"].items()}
    return PoolDay(**d), nodes * services


def fleet_day(*, prefill: Pool, decode: Pool, daily_input_tokens: float, daily_output_tokens: float,
              load: DiurnalLoad = DiurnalLoad(), scaler: Autoscaler = Autoscaler(), services: int = 1) -> dict:
    """Both pools over a day: per-pool ``PoolDay`` and the fleet's average and peak nodes. The pools follow the
    same load curve (a request's prompt and its output belong to the same hour)."""
    if services < 1:
        raise ConfigError(f"services must be >= 1, got {services}")
    p, n_p = _services_day(prefill, daily_input_tokens, load, scaler, services)
    d, n_d = _services_day(decode, daily_output_tokens, load, scaler, services)
    avg = p.average_nodes + d.average_nodes
    peak = float((n_p + n_d).max())
    return {"prefill": p.to_dict(), "decode": d.to_dict(), "average_nodes": avg, "peak_nodes": peak,
            "peak_to_average_nodes": peak / avg if avg else None, "node_hours": p.node_hours + d.node_hours,
            "services": services, "load": asdict(load), "autoscaler": asdict(scaler)}
