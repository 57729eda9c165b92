"""Serving layout search under a TTFT/TPOT SLA: prefill and decode instances, composed into disaggregated
deployments on a GPU budget; Pareto frontier, $ per million tokens, fleet size for a daily load.

Instances come from the step model's public workloads (``dsv3sim.workload.simulate`` of a ``PrefillWorkload`` /
``DecodeWorkload``), each with the busiest-link all-to-all bound in the screen (``comm_model="bound"``):
* prefill: instance size S (EP = S, the MoE spans the instance), attention TP ``attn_tp`` x DP S/attn_tp, tokens
  per GPU per step, redundant experts (the fewest that make EP divide the experts: with uniform routing more
  replicas only add weights). TTFT (mean) = half a step (the step in flight when the request arrives) + its own
  step; burst queueing beyond that is priced by the fleet model's headroom. With a prefix-cache hit rate h only
  (1 - h) of each prompt is computed: input tokens/s = computed tokens/s / (1 - h), and the computed suffix
  attends the cached prefix too (``PrefillWorkload.cache_hit_rate``, workload/prefill.py).
* decode: instance size S, batch per GPU (or as many requests as the KV cache holds), MTP on/off, redundant
  experts; mean context ISL + OSL/2; TPOT from the step model (MTP: step / (1 + acceptance)).
The prefill instances of the best ``REFINE`` deployments are re-run with the event-simulated all-to-all (``run``'s
model) and those deployments rank first (``prefill_comm_model``); decode always uses the bound, as ``run`` does.
A disaggregated deployment is n_p prefill instances + n_d decode instances within the GPU budget; it serves
requests/s = min(prefill GPUs x prefill requests/s/GPU, decode GPUs x decode requests/s/GPU);
tokens/s/GPU = output tokens/s / GPUs used (AIConfigurator's definition), tokens/s/user = 1 / TPOT.
$ per million input tokens charges the prefill GPUs, $ per million output tokens the decode GPUs.
Aggregated serving (``AggregatedWorkload``, workload/aggregated.py: prefill chunks batched with the decode batch on
the same GPUs, SGLang/vLLM's default) is searched beside them: instance size S (EP = S, DP attention follows),
decode batch, chunk size, MTP on/off; as many instances as fit the budget; tokens/s/GPU over the GPUs used.
TPOT is the mean over a request's iterations; ``max_itl_ms`` (a tail inter-token limit) also bounds the iterations
that carry a prefill chunk (``tpot_chunk_s``) and searches the small chunks of ``ITL_CHUNKS`` instead.
It is reported under ``aggregated`` (best, ranked, Pareto), next to the disaggregated ``best``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import AggregatedWorkload, DecodeWorkload, ParallelDims, PrefillWorkload, Scenario
from dsv3sim.cost.pricing import DEFAULT_PRICE_PER_GPU_HOUR, check_price
from dsv3sim.workload.fleet_defaults import (
    DEFAULT_BURST_QUANTILE,
    DEFAULT_PEAK_TO_MEAN,
    DEFAULT_SCALE_INTERVAL_H,
    DEFAULT_SHAPE,
)

GPU_TOPOLOGY = {"H800": "h800-deepseek", "H200": "h200-hgx", "H100": "h100-roce", "B200": "gb200-nvl72"}
PREFILL_INFLIGHT_WAIT = 0.5  # mean wait for the prefill step in flight, in steps (uniform arrival within a step)
REFINE = 3  # prefill instances of the best deployments re-run with the event-simulated all-to-all
AGGREGATED_CHUNKS = (2048, 8192)  # chunked-prefill tokens per GPU per iteration (vLLM's and SGLang's defaults)
ITL_CHUNKS = (512, 1024, 2048)  # searched instead under a tail inter-token limit (--max-itl-ms): small chunks
AGGREGATED_NOTE = ("aggregated serving (prefill chunks batched with decode on the same GPUs, workload/aggregated.py) "
                   "is compared under `aggregated`; the table ranks disaggregated deployments")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeQuery:
    model: str = "deepseek-v3"
    gpu: str = "H200"
    topology: str | None = None
    gpus: int = 32
    isl: int = 4000
    osl: int = 1000
    ttft_ms: float = 2000.0
    tpot_ms: float = 50.0
    prefix_cache_hit: float = 0.0
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    mtp_acceptance: float | None = None
    instance_sizes: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 72, 96, 128, 144, 256, 320)
    attn_tp: tuple[int, ...] = (1, 2, 4, 8)
    prefill_tokens_per_gpu: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768)
    decode_batches: tuple[int | None, ...] = (1, 4, 16, 32, 48, 64, 96, 128, 192, 256, None)
    mtp: tuple[bool, ...] = (True, False)
    max_itl_ms: float | None = None  # tail inter-token limit: also the iterations a prefill chunk rides
    max_layouts: int = 5000

    def __post_init__(self) -> None:
        for n in ("gpus", "isl", "osl"):
            if getattr(self, n) < 1:
                raise ConfigError(f"--{n} must be >= 1, got {getattr(self, n)}")
        if self.max_itl_ms is not None and not self.max_itl_ms > 0:
            raise ConfigError(f"--max-itl-ms must be > 0, got {self.max_itl_ms}")
        for n in ("ttft_ms", "tpot_ms"):
            if not getattr(self, n) > 0:
                raise ConfigError(f"--{n.replace('_', '-')} must be > 0, got {getattr(self, n)}")
        if not 0 <= self.prefix_cache_hit < 1:
            raise ConfigError(f"--prefix-cache-hit must be in [0, 1), got {self.prefix_cache_hit}")
        check_price(self.price_per_gpu_hour)

    @property
    def topo(self) -> str:
        if self.topology:
            return self.topology
        if self.gpu not in GPU_TOPOLOGY:
            raise ConfigError(f"--gpu {self.gpu!r} has no default topology (known: {', '.join(GPU_TOPOLOGY)}); "
                             "pass --topology")
        return GPU_TOPOLOGY[self.gpu]


@dataclass(frozen=True, kw_only=True, slots=True)
class FleetQuery:
    """The load model's parameters for fleet sizing (``workload/fleet.py``; the defaults and their sources in
    ``workload/fleet_defaults.py``)."""

    load_shape: str = DEFAULT_SHAPE
    peak_to_mean: float = DEFAULT_PEAK_TO_MEAN
    scale_interval_h: float = DEFAULT_SCALE_INTERVAL_H
    burst_quantile: float = DEFAULT_BURST_QUANTILE
    min_prefill_units: int = 1
    min_decode_units: int = 1
    services: int = 1  # models deployed separately on equal shares of the load (Day 6: V3 and R1)
    whole_units: bool = True  # False: fractional instances (with flat load and no bursts: the capacity arithmetic)

    def __post_init__(self) -> None:
        from dsv3sim.workload.fleet import Autoscaler, DiurnalLoad

        DiurnalLoad(shape=self.load_shape, peak_to_mean=self.peak_to_mean)
        Autoscaler(scale_interval_h=self.scale_interval_h, burst_quantile=self.burst_quantile)
        if self.services < 1:
            raise ConfigError(f"--services must be >= 1, got {self.services}")
        for n in ("min_prefill_units", "min_decode_units"):
            if getattr(self, n) < 0:
                raise ConfigError(f"--{n.replace('_', '-')} must be >= 0, got {getattr(self, n)}")


def _redundant(n_experts: int, size: int) -> tuple[int, ...]:
    r0 = (-n_experts) % size
    return (r0, r0 + size) if r0 + size <= n_experts else (r0,)


def _instance_sizes(q: ServeQuery, gpn: int) -> list[int]:
    """Instance sizes within the GPU budget: a multi-node instance spans whole nodes."""
    return [s for s in q.instance_sizes if not (s > q.gpus or s % gpn and s > gpn)]


def prefill_jobs(q: ServeQuery, n_experts: int, gpn: int) -> list[dict]:
    out = []
    for s in _instance_sizes(q, gpn):
        for tp in q.attn_tp:
            if s % tp or tp > gpn:
                continue
            for tok in q.prefill_tokens_per_gpu:
                for red in _redundant(n_experts, s)[:1]:  # uniform routing: more replicas only add weights
                    out.append({"phase": "prefill", "size": s, "attn_tp": tp, "tokens_per_gpu": tok,
                                "redundant_experts": red})
    return out


def decode_jobs(q: ServeQuery, n_experts: int, gpn: int) -> list[dict]:
    out = []
    for s in _instance_sizes(q, gpn):
        for b in q.decode_batches:
            for m in q.mtp:
                for red in _redundant(n_experts, s):
                    out.append({"phase": "decode", "size": s, "batch_per_gpu": b, "mtp": m, "redundant_experts": red})
    return out


def aggregated_jobs(q: ServeQuery, n_experts: int, gpn: int) -> list[dict]:
    out = []
    for s in _instance_sizes(q, gpn):
        for b in q.decode_batches:
            for c in ITL_CHUNKS if q.max_itl_ms else AGGREGATED_CHUNKS:
                for m in q.mtp:
                    out.append({"phase": "aggregated", "size": s, "batch_per_gpu": b, "chunk_tokens": c, "mtp": m,
                                "redundant_experts": _redundant(n_experts, s)[0]})
    return out


def scenario_of(q: ServeQuery, job: dict) -> Scenario:
    s = job["size"]
    if job["phase"] == "aggregated":
        return Scenario(name=f"plan-aggregated[{_key(job)}]", model=q.model, topology=q.topo, gpu=q.gpu,
                        parallel=ParallelDims(ep=s),
                        workload=AggregatedWorkload(prompt_len=q.isl, output_len=q.osl,
                                                    batch_per_gpu=job["batch_per_gpu"],
                                                    chunk_tokens=job["chunk_tokens"],
                                                    cache_hit_rate=q.prefix_cache_hit, mtp=job["mtp"],
                                                    mtp_acceptance=q.mtp_acceptance,
                                                    redundant_experts=job["redundant_experts"]),
                        comm_model="bound", record=False)
    if job["phase"] == "prefill":
        tp = job["attn_tp"]
        # the prompt's computed part per request; the step runs tokens_per_gpu of them per GPU
        return Scenario(name=f"plan-prefill[{_key(job)}]", model=q.model, topology=q.topo, gpu=q.gpu,
                        parallel=ParallelDims(dp=s // tp, attn_tp=tp, ep=s),
                        workload=PrefillWorkload(prompt_len=q.isl, tokens_per_gpu=job["tokens_per_gpu"],
                                                 redundant_experts=job["redundant_experts"],
                                                 cache_hit_rate=q.prefix_cache_hit),
                        comm_model=job.get("comm_model", "bound"), record=False)
    return Scenario(name=f"plan-decode[{_key(job)}]", model=q.model, topology=q.topo, gpu=q.gpu,
                    parallel=ParallelDims(dp=s, ep=s),
                    workload=DecodeWorkload(context_len=q.isl + q.osl // 2, output_len=q.osl,
                                            batch_per_gpu=job["batch_per_gpu"], mtp=job["mtp"],
                                            mtp_acceptance=q.mtp_acceptance,
                                            redundant_experts=job["redundant_experts"]),
                    comm_model="bound", record=False)


def _key(job: dict) -> str:
    if job["phase"] == "aggregated":
        b = job["batch_per_gpu"] if job["batch_per_gpu"] is not None else "kvmax"
        return f"A{job['size']} b{b} chunk{job['chunk_tokens']} {'mtp' if job['mtp'] else 'nomtp'}"
    if job["phase"] == "prefill":
        return f"P{job['size']} tp{job['attn_tp']} {job['tokens_per_gpu']}tok/gpu r{job['redundant_experts']}"
    b = job["batch_per_gpu"] if job["batch_per_gpu"] is not None else "kvmax"
    return f"D{job['size']} b{b} {'mtp' if job['mtp'] else 'nomtp'} r{job['redundant_experts']}"


def evaluate(args: tuple[ServeQuery, dict]) -> dict:
    from dsv3sim.workload import simulate

    q, job = args
    row = dict(job, key=_key(job), comm_model=job.get("comm_model", "bound"))
    try:
        res = simulate(scenario_of(q, job))
    except ValueError as e:
        return dict(row, infeasible=str(e))
    if not hasattr(res, "metrics"):
        return dict(row, infeasible=res.reason)
    m = res.metrics
    if job["phase"] == "aggregated":
        n = q.gpus // job["size"]
        usd_s = q.price_per_gpu_hour / 3600.0
        return dict(row, ttft_s=m["ttft_s"], tpot_s=m["tpot_s"], tokens_per_s_per_gpu=m["output_tokens_per_s_per_gpu"],
                    tokens_per_s_per_user=m["tokens_per_s_per_request"], batch=m["batch_per_gpu"],
                    n_instances=n, gpus_used=n * job["size"], prefill_bound=m["prefill_bound"],
                    tpot_chunk_s=m["tpot_chunk_s"],
                    cost_usd_per_million_output_tokens=usd_s / m["output_tokens_per_s_per_gpu"] * 1e6,
                    meets_sla=bool(m["ttft_s"] * 1e3 <= q.ttft_ms and m["tpot_s"] * 1e3 <= q.tpot_ms
                                   and (q.max_itl_ms is None or m["tpot_chunk_s"] * 1e3 <= q.max_itl_ms)))
    if job["phase"] == "prefill":
        computed = m["prefill_tokens_per_s_per_gpu"]
        inp = computed / (1 - q.prefix_cache_hit)
        # a request arrives during a step in flight and waits for it (half a step on average), then its own step
        ttft = PREFILL_INFLIGHT_WAIT * m["ttft_s"] + m["ttft_s"]
        return dict(row, ttft_s=ttft, step_s=m["ttft_s"], input_tokens_per_s_per_gpu=inp,
                    requests_per_s_per_gpu=inp / q.isl, exposed_communication_s=m["exposed_communication_s"],
                    meets_ttft=ttft * 1e3 <= q.ttft_ms, gpus_per_node=res.n_gpus / res.n_nodes)
    kv_bound = job["batch_per_gpu"] is None
    return dict(row, tpot_s=m["tpot_s"], output_tokens_per_s_per_gpu=m["decode_tokens_per_s_per_gpu"],
                tokens_per_s_per_user=m["tokens_per_s_per_request"], batch=m["batch_per_gpu"],
                max_batch_kv=m["max_batch_per_gpu_kv"], mtp_acceptance=m["mtp_acceptance"],
                requests_per_s_per_gpu=m["decode_tokens_per_s_per_gpu"] / q.osl,
                exposed_communication_s=m["exposed_communication_s"], step_s=m["step_time_s_decode"],
                meets_tpot=m["tpot_s"] * 1e3 <= min(q.tpot_ms, q.max_itl_ms or q.tpot_ms),
                limits="memory (KV cache)" if kv_bound or
                m["batch_per_gpu"] >= m["max_batch_per_gpu_kv"] else
                ("IB" if m["exposed_communication_s"] > 0.5 * m["step_time_s_decode"] else "compute"),
                gpus_per_node=res.n_gpus / res.n_nodes)


def compose(q: ServeQuery, pre: list[dict], dec: list[dict]) -> list[dict]:
    """Every (prefill, decode, n_p, n_d) within the budget; per (prefill, decode) pair the best split."""
    out = []
    for p in pre:
        for d in dec:
            best = None
            for n_p in range(1, q.gpus // p["size"] + 1):
                rest = q.gpus - n_p * p["size"]
                n_d = rest // d["size"]
                if n_d < 1:
                    continue
                g_p, g_d = n_p * p["size"], n_d * d["size"]
                rps = min(g_p * p["requests_per_s_per_gpu"], g_d * d["requests_per_s_per_gpu"])
                tps_gpu = rps * q.osl / (g_p + g_d)
                if best is None or tps_gpu > best[0]:
                    best = (tps_gpu, n_p, n_d, g_p, g_d, rps)
            if best is None:
                continue
            tps_gpu, n_p, n_d, g_p, g_d, rps = best
            usd_s = q.price_per_gpu_hour / 3600.0
            out.append({"prefill": p["key"], "decode": d["key"], "prefill_comm_model": p["comm_model"],
                        "n_prefill_instances": n_p,
                        "n_decode_instances": n_d, "prefill_gpus": g_p, "decode_gpus": g_d, "gpus_used": g_p + g_d,
                        "requests_per_s": rps, "tokens_per_s_per_gpu": tps_gpu,
                        "tokens_per_s_per_user": d["tokens_per_s_per_user"], "ttft_s": p["ttft_s"],
                        "tpot_s": d["tpot_s"], "meets_sla": bool(p["meets_ttft"] and d["meets_tpot"]),
                        "bottleneck_side": "prefill" if g_p * p["requests_per_s_per_gpu"] <
                        g_d * d["requests_per_s_per_gpu"] else "decode",
                        "limits": d["limits"] if g_p * p["requests_per_s_per_gpu"] >=
                        g_d * d["requests_per_s_per_gpu"] else "prefill capacity",
                        "cost_usd_per_million_input_tokens": g_p * usd_s / (rps * q.isl) * 1e6,
                        "cost_usd_per_million_output_tokens": g_d * usd_s / (rps * q.osl) * 1e6,
                        "miss": max(p["ttft_s"] * 1e3 / q.ttft_ms - 1, d["tpot_s"] * 1e3 / q.tpot_ms - 1, 0.0)})
    return out


def pareto(rows: list[dict]) -> list[dict]:
    """Non-dominated rows in (tokens/s/user up, tokens/s/GPU up), sorted by tokens/s/user."""
    pts = sorted(rows, key=lambda r: (-r["tokens_per_s_per_user"], -r["tokens_per_s_per_gpu"]))
    out, best_gpu = [], -1.0
    for r in pts:
        if r["tokens_per_s_per_gpu"] > best_gpu:
            out.append(r)
            best_gpu = r["tokens_per_s_per_gpu"]
    return sorted(out, key=lambda r: r["tokens_per_s_per_user"])


def _search_space(q: ServeQuery, gpn: int, n_exp: int) -> list[dict]:
    jobs = prefill_jobs(q, n_exp, gpn) + decode_jobs(q, n_exp, gpn) + aggregated_jobs(q, n_exp, gpn)
    if len(jobs) > q.max_layouts:
        raise ConfigError(f"serving search space has {len(jobs)} instance layouts > --max-layouts {q.max_layouts}")
    if not jobs:
        raise ConfigError(f"no instance size in {q.instance_sizes} fits --gpus {q.gpus}")
    return jobs


def _feasible(rows: list[dict], phase: str) -> list[dict]:
    return [r for r in rows if r["phase"] == phase and "infeasible" not in r]


def _refine_prefill(q: ServeQuery, pre: list[dict], dec: list[dict], combos: list[dict], ok: list[dict], *,
                    workers: int, ray_address: str | None) -> tuple[list[dict], list[dict], list[dict]]:
    """The prefill instances of the best deployments again with the event-simulated all-to-all (`run`'s model);
    decode keeps the bound, which is what the step model uses for decode everywhere."""
    from dsv3sim.workload.sweep import run_parallel

    top = list(dict.fromkeys(c["prefill"] for c in ok))[:REFINE]
    if not top:
        return pre, combos, ok
    jobs_sim = [dict({k: v for k, v in r.items() if k in ("phase", "size", "attn_tp", "tokens_per_gpu",
                                                           "redundant_experts")}, comm_model="sim")
                for r in pre if r["key"] in top]
    sim = {r["key"]: r for r in run_parallel(evaluate, [(q, j) for j in jobs_sim], workers=min(workers, len(top)),
                                             ray_address=ray_address) if "infeasible" not in r}
    pre = [sim.get(r["key"], r) for r in pre]
    combos = compose(q, pre, dec)
    ok = sorted((c for c in combos if c["meets_sla"]),
                key=lambda c: (c["prefill_comm_model"] != "sim", -c["tokens_per_s_per_gpu"]))
    return pre, combos, ok


def _sla_unmet(q: ServeQuery, rows: list[dict], pre: list[dict], dec: list[dict], combos: list[dict],
               ok: list[dict]) -> dict | None:
    if not pre or not dec:
        side = "prefill" if not pre else "decode"
        why = sorted({r["infeasible"] for r in rows if r["phase"] == side and "infeasible" in r})
        return {"message": f"no feasible {side} instance for {q.model} on {q.gpus} {q.gpu}: " + "; ".join(why[:3]),
                "closest": []}
    if ok:
        return None
    close, seen = [], set()
    for c in sorted(combos, key=lambda c: (c["miss"], -c["tokens_per_s_per_gpu"])):
        if c["decode"] not in seen:  # one row per decode layout (the prefill side rarely decides it)
            seen.add(c["decode"])
            close.append(c)
        if len(close) == 5:
            break
    return {"message": f"no layout on {q.gpus} {q.gpu} meets TTFT {q.ttft_ms:g} ms and TPOT {q.tpot_ms:g} ms",
            "closest": [dict(c, misses=_misses(q, c)) for c in close]}


def _fleet(q: ServeQuery, gpn: int, pre: list[dict], dec: list[dict], ok: list[dict], daily: tuple[float, float],
           node_rates: tuple[float, float] | None, fleet: FleetQuery | None = None) -> dict:
    """Nodes and $ per day for a daily load. With the search's rates: the load model (``plan/fleet.py``,
    ``workload/fleet.py``: diurnal curve, burst headroom, autoscaling in instance-sized units) on the best
    SLA-meeting instances' throughput-vs-batch curves; ``capacity`` keeps the flat-load, full-batch arithmetic.
    With given per-node rates (measured averages): that arithmetic only."""
    from dsv3sim.cost.pricing import fleet_size

    def capacity(inp_node: float, out_node: float) -> dict:
        """The flat-load, full-batch arithmetic at these per-node rates (``cost.pricing.fleet_size``)."""
        return fleet_size(daily_input_tokens=daily[0], daily_output_tokens=daily[1],
                          input_tokens_per_s_per_node=inp_node, output_tokens_per_s_per_node=out_node,
                          gpus_per_node=gpn, price_per_gpu_hour=q.price_per_gpu_hour,
                          prefix_cache_hit=q.prefix_cache_hit)

    best = ok[0] if ok else None
    if node_rates is not None:
        return dict(capacity(*node_rates), rates_from="given per-node throughputs")
    if best is None:
        return {"infeasible": "no SLA-meeting layout"}
    p = next(r for r in pre if r["key"] == best["prefill"])
    d = next(r for r in dec if r["key"] == best["decode"])
    src = f"best SLA-meeting instances ({best['prefill']}; {best['decode']})"
    cap = capacity(p["input_tokens_per_s_per_gpu"] * gpn, d["output_tokens_per_s_per_gpu"] * gpn)
    f = fleet or FleetQuery()
    try:
        day = _load_model_day(q, gpn, pre, dec, p, d, daily, f)
    except ValueError as e:
        return dict(cap, rates_from=src, load_model={"infeasible": str(e)})
    return {"nodes": day["average_nodes"], "prefill_nodes": day["prefill"]["average_nodes"],
            "decode_nodes": day["decode"]["average_nodes"], "peak_nodes": day["peak_nodes"],
            "nodes_to_buy": math.ceil(day["peak_nodes"]), "gpus": day["average_nodes"] * gpn,
            "cost_usd_per_day": day["cost_usd_per_day"], "price_per_gpu_hour": q.price_per_gpu_hour,
            "input_tokens_per_s_per_node": day["prefill"]["tokens_per_s_per_node_average"],
            "output_tokens_per_s_per_node": day["decode"]["tokens_per_s_per_node_average"],
            "daily_input_tokens": daily[0], "daily_output_tokens": daily[1], "prefix_cache_hit": q.prefix_cache_hit,
            **{k: day[k] for k in ("cost_usd_per_million_input_tokens", "cost_usd_per_million_output_tokens")
               if k in day},
            "rates_from": src, "load_model": day, "capacity": cap}


def _load_model_day(q: ServeQuery, gpn: int, pre: list[dict], dec: list[dict], p: dict, d: dict,
                    daily: tuple[float, float], f: FleetQuery) -> dict:
    """The best instances' curves (same instance layout, every batch the search ran) into the load model."""
    from dsv3sim.plan.fleet import decode_pool, prefill_pool, size_fleet
    from dsv3sim.workload.fleet import Autoscaler, DiurnalLoad

    same_p = [r for r in pre if (r["size"], r["attn_tp"], r["redundant_experts"]) ==
              (p["size"], p["attn_tp"], p["redundant_experts"])]  # refined rows replace their screened ones
    same_d = [r for r in dec if (r["size"], r["mtp"], r["redundant_experts"]) ==
              (d["size"], d["mtp"], d["redundant_experts"])]
    dp = decode_pool([(r["batch"], r["output_tokens_per_s_per_gpu"] * gpn, r["tokens_per_s_per_user"])
                      for r in same_d], min_speed=1e3 / q.tpot_ms, unit_nodes=d["size"] / gpn,
                     gpus_per_node=gpn, min_units=f.min_decode_units)
    pp = prefill_pool([(r["tokens_per_gpu"], r["input_tokens_per_s_per_gpu"] * gpn, r["step_s"]) for r in same_p],
                      ttft_s=q.ttft_ms / 1e3, isl=q.isl, cache_hit=q.prefix_cache_hit,
                      unit_nodes=p["size"] / gpn, gpus_per_node=gpn, min_units=f.min_prefill_units)
    # the default load keeps DiurnalLoad's own source line (the assumption); any other was given on the command line
    given = {} if (f.load_shape, f.peak_to_mean) == (DEFAULT_SHAPE, DEFAULT_PEAK_TO_MEAN) else {
        "source": "given (--load-shape, --peak-to-mean)"}
    return size_fleet(prefill=pp, decode=dp, daily_input_tokens=daily[0], daily_output_tokens=daily[1],
                      load=DiurnalLoad(shape=f.load_shape, peak_to_mean=f.peak_to_mean, **given),
                      scaler=Autoscaler(scale_interval_h=f.scale_interval_h, burst_quantile=f.burst_quantile,
                                        whole_units=f.whole_units),
                      gpus_per_node=gpn, price_per_gpu_hour=q.price_per_gpu_hour, services=f.services)


def plan_serving(q: ServeQuery, *, workers: int = 2, ray_address: str | None = None, progress=None,
                 daily: tuple[float, float] | None = None, node_rates: tuple[float, float] | None = None,
                 fleet: FleetQuery | None = None) -> dict:
    from dsv3sim.config.model import load_model_config
    from dsv3sim.config.topology import load_topology_config
    from dsv3sim.workload.sweep import run_parallel

    t0 = time.perf_counter()
    cfg = load_model_config(q.model)
    gpn = load_topology_config(q.topo).gpus_per_node
    jobs = _search_space(q, gpn, cfg.n_routed_experts)
    rows = run_parallel(evaluate, [(q, j) for j in jobs], workers=workers, ray_address=ray_address,
                        progress=progress, chunksize=max(1, len(jobs) // (4 * max(1, workers))))
    pre, dec, agg = _feasible(rows, "prefill"), _feasible(rows, "decode"), _feasible(rows, "aggregated")
    agg_ok = sorted((r for r in agg if r["meets_sla"]), key=lambda r: -r["tokens_per_s_per_gpu"])
    combos = compose(q, pre, dec)
    ok = sorted((c for c in combos if c["meets_sla"]), key=lambda c: -c["tokens_per_s_per_gpu"])
    pre, combos, ok = _refine_prefill(q, pre, dec, combos, ok, workers=workers, ray_address=ray_address)
    front = pareto(combos)
    result = {"schema": "dsv3sim.plan/1", "type": "plan", "kind": "serve", "query": dict(asdict(q), topology=q.topo),
              "mode": "disaggregated",
              "aggregated": {"best": agg_ok[0] if agg_ok else None, "ranked": agg_ok[:20], "pareto": pareto(agg),
                             "feasible": len(agg), "meeting_sla": len(agg_ok)}, "notes": [AGGREGATED_NOTE,
              ("screening: busiest-link all-to-all bound for every instance; the prefill instances of the best "
              f"{REFINE} deployments re-run with the event-simulated all-to-all (prefill_comm_model says which; "
              "decode uses the bound in `run` too)")],
              "counts": {"instance_layouts": len(jobs), "feasible_instances": len(pre) + len(dec),
                         "deployments": len(combos), "meeting_sla": len(ok)},
              "best": ok[0] if ok else None, "ranked": ok[:50], "pareto": front,
              "instances": rows, "price_per_gpu_hour": q.price_per_gpu_hour}
    unmet = _sla_unmet(q, rows, pre, dec, combos, ok)
    if unmet is not None:
        result["sla_unmet"] = unmet
    if daily is not None:
        result["fleet"] = _fleet(q, gpn, pre, dec, ok, daily, node_rates, fleet)
    result["wall_s"] = time.perf_counter() - t0
    return result


def _misses(q: ServeQuery, c: dict) -> str:
    parts = []
    if c["ttft_s"] * 1e3 > q.ttft_ms:
        parts.append(f"TTFT {c['ttft_s'] * 1e3:.0f} ms > {q.ttft_ms:g} ms (+{c['ttft_s'] * 1e3 / q.ttft_ms - 1:.0%})")
    if c["tpot_s"] * 1e3 > q.tpot_ms:
        parts.append(f"TPOT {c['tpot_s'] * 1e3:.1f} ms > {q.tpot_ms:g} ms (+{c['tpot_s'] * 1e3 / q.tpot_ms - 1:.0%})")
    return "; ".join(parts) or "meets"

