"""Fleet sizing for a daily load: the step model's prefill / decode throughput-vs-batch curves -> the SLA batch
of each pool -> ``workload.fleet`` (diurnal load, Poisson burst headroom, autoscaling in deployment units).

SLA batch of each pool (the largest batch whose latency meets the SLA, interpolated between simulated points):
* decode: tokens/s per user >= the SLA's speed (1 / TPOT; DeepSeek Day 6 publishes 20-22 tokens/s per user);
  slots per node = batch x GPUs per node (requests decoding at once).
* prefill: p99 TTFT = the step a request arrives during (it waits for it to end, up to one step) + its own step
  = 2 x step <= TTFT (a tighter burst would wait one more step: the Poisson headroom of ``workload.fleet``
  keeps that below the quantile). Slots per node = requests one step carries = tokens per GPU x GPUs per node /
  computed tokens per request (ISL x (1 - cache hit)).
"""

from __future__ import annotations

from dsv3sim.config.errors import ConfigError
from dsv3sim.workload.fleet import Autoscaler, DiurnalLoad, Pool, fleet_day


def _interp_max(points: list[tuple[float, float, float]], ok) -> tuple[float, float] | None:
    """(batch, rate) at the largest batch whose latency passes ``ok``: the last passing point, or the linear
    interpolation towards the first failing one where the latency crosses the limit. Points: (batch, rate,
    latency) ascending in batch; ``ok(latency)`` -> slack (>= 0 passes)."""
    pts = sorted(points)
    best = None
    for i, (b, r, lat) in enumerate(pts):
        s = ok(lat)
        if s >= 0:
            best = (b, r)
            continue
        if best is not None:  # a point before this one passed
            b0, r0, l0 = pts[i - 1]
            s0 = ok(l0)
            f = s0 / (s0 - s) if s0 != s else 0.0
            best = (b0 + f * (b - b0), r0 + f * (r - r0))
        break
    return best


def _curve(points: list[tuple[float, float, float]], b: float, rate: float) -> tuple[tuple[float, float], ...]:
    """The pool's throughput-vs-batch curve: the simulated points up to the SLA batch, then the SLA point."""
    return tuple(sorted((pb, pr) for pb, pr, _ in points if pb <= b)) + ((b, rate),)


def decode_pool(points: list[tuple[float, float, float]], *, min_speed: float, unit_nodes: float,
                gpus_per_node: int, min_units: int = 1) -> Pool:
    """points: (batch per GPU, output tokens/s per node, tokens/s per user)."""
    sla = _interp_max(points, lambda u: u - min_speed)
    if sla is None:
        raise ConfigError(f"decode: no batch reaches {min_speed:g} tokens/s per user "
                          f"(best {max(u for _, _, u in points):.1f})")
    b, rate = sla
    return Pool(name="decode", capacity_tokens_per_s_per_node=rate, slots_per_node=b * gpus_per_node,
                unit_nodes=unit_nodes, min_units=min_units, sla_batch_per_gpu=b, gpus_per_node=gpus_per_node,
                curve=_curve(points, b, rate))


def prefill_pool(points: list[tuple[float, float, float]], *, ttft_s: float | None, isl: int,
                 cache_hit: float, unit_nodes: float, gpus_per_node: int, min_units: int = 1) -> Pool:
    """points: (tokens per GPU per step, input tokens/s per node incl. cache hits, step seconds). With no TTFT
    the highest-rate point is the SLA batch."""
    if ttft_s is None:
        b, rate, _ = max(points, key=lambda p: p[1])
    else:
        sla = _interp_max(points, lambda step: ttft_s - 2.0 * step)
        if sla is None:
            raise ConfigError(f"prefill: no batch meets p99 TTFT {ttft_s:g} s (2 x step; shortest step "
                              f"{min(p[2] for p in points):.2f} s)")
        b, rate = sla
    computed = isl * (1.0 - cache_hit)
    return Pool(name="prefill", capacity_tokens_per_s_per_node=rate, slots_per_node=b * gpus_per_node / computed,
                unit_nodes=unit_nodes, min_units=min_units, sla_batch_per_gpu=b, batch_unit="tokens",
                gpus_per_node=gpus_per_node,
                curve=_curve(points, b, rate))


def size_fleet(*, prefill: Pool, decode: Pool, daily_input_tokens: float, daily_output_tokens: float,
               load: DiurnalLoad, scaler: Autoscaler, gpus_per_node: int, price_per_gpu_hour: float,
               services: int = 1) -> dict:
    """``workload.fleet.fleet_day`` plus cost per day (node-hours x GPUs x price) and $ per million tokens."""
    day = fleet_day(prefill=prefill, decode=decode, daily_input_tokens=daily_input_tokens,
                    daily_output_tokens=daily_output_tokens, load=load, scaler=scaler, services=services)
    usd_h = gpus_per_node * price_per_gpu_hour
    out = dict(day, cost_usd_per_day=day["node_hours"] * usd_h, price_per_gpu_hour=price_per_gpu_hour)
    if daily_input_tokens:
        out["cost_usd_per_million_input_tokens"] = day["prefill"]["node_hours"] * usd_h / daily_input_tokens * 1e6
    if daily_output_tokens:
        out["cost_usd_per_million_output_tokens"] = day["decode"]["node_hours"] * usd_h / daily_output_tokens * 1e6
    return out
