"""Training layout search: enumerate, prune by memory, screen with the step model, refine the best, price them.

``plan_training(TrainQuery)`` answers "how should I lay out this model on these GPUs and what will the run cost":

1. Enumerate layouts (``space.training_layouts``): PP, EP, DP = GPUs / PP, micro-batch, schedule, GEMM dtype,
   recomputation, node limit, for every GPU count from ``gpus`` to ``gpus_max`` (doubling). A space larger than
   ``max_layouts`` is refused before anything runs.
2. Structural checks (Scenario and ParallelDims validation: EP divides DP and the experts, DualPipe needs an even
   PP and micro-batch count, the global batch divides) and the analytic memory model (``plan.memory``, the step
   model's own itemisation) drop layouts that cannot exist or do not fit, each keeping its reason.
3. Every remaining layout runs through ``dsv3sim.workload`` (the step model ``run`` uses) with the busiest-link
   all-to-all bound (``comm_model="bound"``, workload/NOTES.md: bound <= simulation <= 1.35 x bound) in a
   process pool or on Ray.
4. The ``refine`` best are simulated again with the event-simulated all-to-all (``comm_model="sim"``, what
   ``run`` uses) and ranked on those numbers; every row says which all-to-all model produced it.
Each candidate gets step time, MFU, memory headroom, days, GPU-hours, dollars and what limits it (``limits``).
A user layout that does not fit gets the nearest feasible layout (fewest changed knobs, then closest sizes).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import SCHEDULES, ParallelDims, Perturbation, Scenario, TrainingWorkload
from dsv3sim.cost.pricing import DEFAULT_PRICE_PER_GPU_HOUR, SECONDS_PER_DAY, check_price, cost_usd, gpu_hours
from dsv3sim.plan.limits import training_limits
from dsv3sim.plan.memory import GiB, peak_bytes
from dsv3sim.plan.totals import run_totals

DEFAULT_MAX_LAYOUTS = 20_000


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainLayout:
    n_gpus: int
    pp: int
    ep: int
    micro_batch: int = 1
    schedule: str = "dualpipe"
    dtype: str = "fp8"
    recompute: bool = True
    node_limit: int | None = 4

    @property
    def dp(self) -> int:
        return self.n_gpus // self.pp

    @property
    def key(self) -> str:
        return (f"{self.n_gpus}g pp{self.pp} dp{self.dp} ep{self.ep} mb{self.micro_batch} {self.schedule} "
                f"{self.dtype}{' rc' if self.recompute else ''} M={self.node_limit or 'all'}")

    def to_dict(self) -> dict:
        return dict(asdict(self), dp=self.dp)


LAYOUT_KEYS = ("pp", "ep", "micro_batch", "schedule", "dtype", "recompute", "node_limit", "n_gpus")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainQuery:
    model: str = "deepseek-v3"
    gpu: str | None = None  # None: the topology's
    topology: str = "h800-deepseek"
    gpus: int = 2048
    gpus_max: int | None = None
    tokens: float = 14.8e12  # DeepSeek-V3 §4.1: 14.8T pre-training tokens
    deadline_days: float | None = None
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    global_batch: int = 15360
    seq_len: int = 4096
    pp: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    ep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    micro_batch: tuple[int, ...] = (1, 2)
    schedules: tuple[str, ...] = SCHEDULES
    dtypes: tuple[str, ...] = ("fp8", "bf16")
    recompute: tuple[bool, ...] = (True, False)
    node_limits: tuple[int | None, ...] = (1, 2, 4, 8)
    refine: int = 3  # best layouts re-simulated with the event-simulated all-to-all
    max_layouts: int = DEFAULT_MAX_LAYOUTS
    user_layout: TrainLayout | None = None
    extension_phases: tuple[tuple[float, int, int], ...] = ()  # (tokens, seq_len, global batch sequences)
    post_training_gpu_hours: float | None = None

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ConfigError(f"--gpus must be >= 1, got {self.gpus}")
        if self.gpus_max is not None and self.gpus_max < self.gpus:
            raise ConfigError(f"--gpus-max {self.gpus_max} must be >= --gpus {self.gpus}")
        if not self.tokens > 0:
            raise ConfigError(f"--tokens must be > 0, got {self.tokens}")
        if self.deadline_days is not None and not self.deadline_days > 0:
            raise ConfigError(f"--deadline-days must be > 0, got {self.deadline_days}")
        check_price(self.price_per_gpu_hour)
        bad = [s for s in self.schedules if s not in SCHEDULES]
        if bad:
            raise ConfigError(f"schedule(s) {bad} unknown (the step model knows {', '.join(SCHEDULES)})")

    def gpu_counts(self) -> list[int]:
        out, n = [], self.gpus
        while n <= (self.gpus_max or self.gpus):
            out.append(n)
            n *= 2
        return out


def enumerate_layouts(q: TrainQuery, gpus_per_node: int) -> list[TrainLayout]:
    """The cartesian product of the knobs, without duplicates (a node limit >= the EP group's nodes is one)."""
    seen, out = set(), []
    for n in q.gpu_counts():
        for pp in q.pp:
            if n % pp:
                continue
            for ep in q.ep:
                nodes = max(1, math.ceil(ep / gpus_per_node))
                for M in q.node_limits:
                    m_eff = None if M is None or nodes <= M else M
                    for mb in q.micro_batch:
                        for sch in q.schedules:
                            for dt in q.dtypes:
                                for rc in q.recompute:
                                    lay = TrainLayout(n_gpus=n, pp=pp, ep=ep, micro_batch=mb, schedule=sch, dtype=dt,
                                                      recompute=rc, node_limit=m_eff)
                                    if lay not in seen:
                                        seen.add(lay)
                                        out.append(lay)
    return out


def count_layouts(q: TrainQuery) -> int:
    return (len(q.gpu_counts()) * len(q.pp) * len(q.ep) * len(q.micro_batch) * len(q.schedules) * len(q.dtypes)
            * len(q.recompute) * len(q.node_limits))


def scenario_of(q: TrainQuery, lay: TrainLayout, comm_model: str) -> Scenario:
    """The Scenario of a layout (raises ValueError for a layout that cannot exist)."""
    return Scenario(name=f"plan[{lay.key}]", model=q.model, topology=q.topology, gpu=q.gpu,
                    parallel=ParallelDims(pp=lay.pp, dp=lay.dp, ep=lay.ep),
                    workload=TrainingWorkload(global_batch_sequences=q.global_batch, seq_len=q.seq_len,
                                              micro_batch_sequences=lay.micro_batch, schedule=lay.schedule,
                                              gemm_dtype=lay.dtype, dispatch_dtype=lay.dtype if lay.dtype == "bf16"
                                              else "fp8", node_limit=lay.node_limit, recompute=lay.recompute),
                    comm_model=comm_model, record=False)


def prescreen(q: TrainQuery, lay: TrainLayout, hbm_bytes: float, n_experts: int, n_layers: int) -> str | None:
    """Why the layout cannot run (structure or memory), or None. Pure arithmetic, no simulation."""
    if n_experts and n_experts % lay.ep:
        return f"EP degree {lay.ep} does not divide {n_experts} experts"
    if lay.pp > n_layers:
        return f"pp={lay.pp} > {n_layers} layers"
    try:
        scn = scenario_of(q, lay, "bound")
    except ConfigError as e:  # a layout the scenario refuses (EP not dividing the GPUs...)
        return str(e)
    try:  # the schedule generator has its own conditions (DualPipe: micro-batches >= 2 pp)
        need = peak_bytes(model=q.model, pp=lay.pp, dp=lay.dp, ep=lay.ep, schedule=lay.schedule,
                          microbatches=scn.microbatches, mb_tokens=lay.micro_batch * q.seq_len,
                          recompute=lay.recompute)
    except ConfigError as e:
        return str(e)
    if need > hbm_bytes:
        return f"memory: needs {need / GiB:.1f} GiB > {hbm_bytes / GiB:.1f} GiB HBM"
    return None


def evaluate(job: tuple[TrainQuery, TrainLayout, str]) -> dict:
    """One layout through the step model (``dsv3sim.workload.simulate``) -> a priced candidate row."""
    from dsv3sim.workload import simulate

    q, lay, comm_model = job
    row = {"layout": lay.to_dict(), "key": lay.key, "comm_model": comm_model}
    try:
        res = simulate(scenario_of(q, lay, comm_model))
    except ConfigError as e:  # refused before simulating; infeasible layouts come back as results
        return dict(row, infeasible=str(e), limits="memory" if "HBM" in str(e) else "structure")
    if not hasattr(res, "step_time_s"):
        reason = res.reason
        return dict(row, infeasible=reason, limits="memory" if "HBM" in reason else "structure")
    return dict(row, **price_training(res, q))


def price_training(res, q: TrainQuery) -> dict:
    """Step metrics, memory headroom, run length and cost, and what limits the step."""
    mem = max(m["total_bytes"] for m in res.memory_per_gpu)
    hbm = res.memory_per_gpu[0]["hbm_bytes"]
    seconds = q.tokens / res.tokens_per_s
    gph = gpu_hours(res.n_gpus, seconds)
    lim = training_limits(res, 1 - mem / hbm)
    out = {"n_gpus": res.n_gpus, "step_time_s": res.step_time_s, "mfu": res.mfu, "tokens_per_s": res.tokens_per_s,
           "memory_peak_GiB": mem / GiB, "hbm_GiB": hbm / GiB, "memory_headroom": 1 - mem / hbm,
           "days": seconds / SECONDS_PER_DAY, "gpu_hours": gph, "cost_usd_run": cost_usd(gph, q.price_per_gpu_hour),
           "cost_usd_per_trillion_tokens": cost_usd(res.gpu_hours_per_trillion_tokens, q.price_per_gpu_hour),
           "gpu_hours_per_trillion_tokens": res.gpu_hours_per_trillion_tokens,
           "bubble_s": res.breakdown_s.get("bubble_s", 0.0), "exposed_communication_s": res.exposed_communication_s,
           "ib_utilisation": res.ib_utilisation, "nvlink_utilisation": res.nvlink_utilisation, **lim}
    if q.deadline_days is not None:
        out["meets_deadline"] = out["days"] <= q.deadline_days
        if not out["meets_deadline"]:
            out["misses_deadline_by_days"] = out["days"] - q.deadline_days
    return out


def _objective(q: TrainQuery, r: dict) -> tuple:
    """Rank: layouts meeting the deadline first; then dollars with a deadline (cheapest that makes it), else days."""
    late = 0 if r.get("meets_deadline", True) else 1
    return (late, r["cost_usd_run"], r["days"]) if q.deadline_days else (late, r["days"], r["cost_usd_run"])


def _distance(a: TrainLayout, b: TrainLayout) -> tuple:
    ka, kb = asdict(a), asdict(b)
    changed = [k for k in ka if ka[k] != kb[k]]
    size = sum(abs(math.log2(ka[k] / kb[k])) for k in ("pp", "ep", "micro_batch", "n_gpus")
               if isinstance(ka[k], int) and isinstance(kb[k], int) and ka[k] > 0 and kb[k] > 0)
    return len(changed), size, changed


def nearest_feasible(user: TrainLayout, feasible: list[dict]) -> dict | None:
    """The feasible candidate with the fewest changed knobs (then the smallest log2 size change)."""
    best = None
    for r in feasible:
        lay = TrainLayout(**{k: v for k, v in r["layout"].items() if k != "dp"})
        n, size, changed = _distance(user, lay)
        if best is None or (n, size, r["step_time_s"]) < best[0]:
            best = ((n, size, r["step_time_s"]), r, changed)
    if best is None:
        return None
    return {"key": best[1]["key"], "changed": best[2], "step_time_s": best[1]["step_time_s"],
            "days": best[1]["days"], "cost_usd_run": best[1]["cost_usd_run"], "layout": best[1]["layout"]}


@dataclass(kw_only=True, slots=True)
class TrainPlan:
    query: dict
    candidates: list  # ranked feasible rows, then infeasible rows
    best: dict | None
    user: dict | None
    totals: dict | None
    counts: dict
    wall_s: float
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"schema": "dsv3sim.plan/1", "type": "plan", "kind": "train", "query": self.query,
                "best": self.best, "user_layout": self.user, "totals": self.totals, "counts": self.counts,
                "candidates": self.candidates, "wall_s": self.wall_s, "notes": self.notes,
                "price_per_gpu_hour": self.query["price_per_gpu_hour"]}


def _prescreen_layouts(q: TrainQuery, layouts: list, hbm: float, n_exp: int,
                       n_layers: int) -> tuple[list[dict], list]:
    """(rows rejected before simulation, layouts to simulate)."""
    rows_bad, todo = [], []
    for lay in layouts:
        why = prescreen(q, lay, hbm, n_exp, n_layers)
        if why:
            rows_bad.append({"layout": lay.to_dict(), "key": lay.key, "infeasible": why, "stage": "pre-screen",
                             "limits": "memory" if why.startswith("memory") else "structure"})
        else:
            todo.append(lay)
    return rows_bad, todo


def _screen(q: TrainQuery, todo: list, *, workers: int, ray_address: str | None,
            progress) -> tuple[list[dict], list[dict]]:
    """Every layout with the busiest-link all-to-all bound: (feasible rows by objective, infeasible rows)."""
    from dsv3sim.workload.sweep import run_parallel

    # similar layouts next to each other so a worker's caches (EP plans, chunk runs) are reused
    todo.sort(key=lambda lay: (lay.n_gpus, lay.ep, lay.node_limit or 0, lay.micro_batch, lay.dtype, lay.pp))
    chunk = max(1, len(todo) // (4 * max(1, workers)))
    screened = run_parallel(evaluate, [(q, lay, "bound") for lay in todo], workers=workers, ray_address=ray_address,
                            progress=progress, chunksize=chunk)
    ok = [r for r in screened if "infeasible" not in r]
    bad = [dict(r, stage="screen") for r in screened if "infeasible" in r]
    ok.sort(key=lambda r: _objective(q, r))
    return ok, bad


def _refine(q: TrainQuery, ok: list[dict], *, workers: int, ray_address: str | None) -> tuple[list[dict], list]:
    """The best layouts (and the user's) re-run with the event-simulated all-to-all and ranked first:
    (ranked rows, re-simulated layouts)."""
    from dsv3sim.workload.sweep import run_parallel

    refined = []
    top = [TrainLayout(**{k: v for k, v in r["layout"].items() if k != "dp"}) for r in ok[:q.refine]]
    if q.user_layout is not None and q.user_layout not in top and any(r["key"] == q.user_layout.key for r in ok):
        top.append(q.user_layout)
    if top:
        refined = run_parallel(evaluate, [(q, lay, "sim") for lay in top], workers=min(workers, len(top)),
                               ray_address=ray_address)
    by_key = {r["key"]: r for r in refined if "infeasible" not in r}
    final = []
    for r in ok:
        if r["key"] in by_key:
            s = dict(by_key[r["key"]], step_time_s_bound=r["step_time_s"])
            final.append(s)
        else:
            final.append(r)
    final.sort(key=lambda r: (0 if r["comm_model"] == "sim" else 1,) + _objective(q, r))
    for i, r in enumerate(final, 1):
        r["rank"] = i
    return final, top


def _user_summary(q: TrainQuery, final: list[dict], rejected: list[dict], best: dict | None) -> dict | None:
    if q.user_layout is None:
        return None
    u = next((r for r in final if r["key"] == q.user_layout.key), None)
    if u is None:
        u = next((r for r in rejected if r["key"] == q.user_layout.key), None)
        return {"key": q.user_layout.key, "feasible": False, "reason": u["infeasible"] if u else "not evaluated",
                "nearest_feasible": nearest_feasible(q.user_layout, final)}
    user = {"key": u["key"], "feasible": True, "rank": u["rank"], "step_time_s": u["step_time_s"],
            "days": u["days"], "cost_usd_run": u["cost_usd_run"]}
    if best is not None:
        user["vs_best_step"] = u["step_time_s"] / best["step_time_s"] - 1
    return user


def _notes(q: TrainQuery, n_screened: int, n_refined: int, final: list[dict]) -> list[str]:
    notes = [(f"screening: busiest-link all-to-all bound for {n_screened} layouts; the best {n_refined} re-simulated "
             "with the event-simulated all-to-all (what `dsv3sim run` uses) and ranked first on those numbers; the "
             "other rows keep the bound, which is optimistic (bound <= simulation <= 1.35 x bound); each row's "
             "comm_model says which")]
    if "dualpipev" not in SCHEDULES:
        notes.append("DualPipeV is generated by dsv3sim.parallel but not accepted by the step model's "
                     "TrainingWorkload, so it is not searched")
    if q.deadline_days and not any(r.get("meets_deadline") for r in final):
        notes.append(f"no layout meets the {q.deadline_days:g}-day deadline; the closest are ranked first "
                     "with misses_deadline_by_days")
    return notes


def _query_dict(q: TrainQuery) -> dict:
    qd = {k: v for k, v in asdict(q).items() if k != "user_layout"}
    qd["user_layout"] = q.user_layout.to_dict() if q.user_layout else None
    return qd


def plan_training(q: TrainQuery, *, workers: int = 2, ray_address: str | None = None, progress=None) -> TrainPlan:
    from dsv3sim.config.model import load_model_config
    from dsv3sim.workload import comm as C
    from dsv3sim.workload.kernels import gpu_perf

    t0 = time.perf_counter()
    n_space = count_layouts(q)
    if n_space > q.max_layouts:
        raise ConfigError(f"search space has {n_space} layouts > --max-layouts {q.max_layouts}; narrow it "
                         f"(--pp, --ep, --schedules, --gpus-max) or raise --max-layouts")
    cfg = load_model_config(q.model)
    topo = C.build_topology(q.topology, q.gpu, Perturbation(), max(q.gpu_counts()))
    gpn = topo.cfg.gpus_per_node
    hbm = gpu_perf(topo.cfg.gpu).hbm_bytes
    layouts = enumerate_layouts(q, gpn)
    if q.user_layout is not None and q.user_layout not in layouts:
        layouts.append(q.user_layout)
    n_exp = cfg.n_routed_experts if cfg.is_moe else 0
    rows_bad, todo = _prescreen_layouts(q, layouts, hbm, n_exp, cfg.num_hidden_layers)
    ok, bad = _screen(q, todo, workers=workers, ray_address=ray_address, progress=progress)
    final, top = _refine(q, ok, workers=workers, ray_address=ray_address)
    best = final[0] if final else None
    user = _user_summary(q, final, rows_bad + bad, best)
    totals = run_totals(q, best, layout=TrainLayout(**{k: v for k, v in best["layout"].items() if k != "dp"}),
                        evaluate=evaluate) if best else None
    counts = {"space": n_space, "layouts": len(layouts), "pruned_before_simulation": len(rows_bad),
              "simulated_bound": len(todo), "simulated_event": len(top), "feasible": len(final),
              "infeasible": len(rows_bad) + len(bad)}
    return TrainPlan(query=_query_dict(q), candidates=final + bad + rows_bad, best=best, user=user, totals=totals,
                     counts=counts, wall_s=time.perf_counter() - t0, notes=_notes(q, len(todo), len(top), final))
