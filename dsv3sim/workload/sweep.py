"""Sweeps: the cartesian product of scenario overrides, run in parallel; infeasible points stay as rows.

Keys (``known_keys``): a Scenario field (``gpu``, ``topology``, ``model``, ``seed``, ``comm_model``, ...) or a
dotted field of its parts: ``parallel.*`` (pp, dp, tp, ep, attn_tp), ``workload.*`` (the fields of the base
scenario's workload: TrainingWorkload, PrefillWorkload or DecodeWorkload) and ``perturb.*`` (what-ifs). A key
that is none of these is refused before anything runs (``check_keys``), naming the known keys.

``grid({"parallel.ep": [32, 64], "workload.node_limit": [2, 4]})`` -> list of override dicts; ``run_sweep``
applies each to a base Scenario (``Scenario.with_``), simulates it in a local process pool (or on a Ray
cluster when ``ray_address`` is given and ``ray`` is installed) and returns one flat row per point:
``{"scenario", "params": {...}, <headline metrics>, "infeasible": reason | absent}``. A configuration that
cannot exist (EP not dividing the experts, pp > layers) or does not fit (HBM) is a row with its reason.
Sweeps default to ``comm_model="bound"`` and no per-slice timelines (workload/NOTES.md says why).
Read back (``split_row``, ``sweep_axes``): each row's parameters, metrics and reason, and which parameters vary.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import fields

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import ParallelDims, Perturbation, Scenario
from dsv3sim.config.units import num

ROW_METRICS = ("step_time_s", "mfu", "tokens_per_s", "gpu_hours_per_trillion_tokens", "ib_utilisation",
               "nvlink_utilisation", "exposed_communication_s", "prefill_tokens_per_s_per_node",
               "decode_tokens_per_s_per_node", "prefill_tokens_per_s_per_gpu", "decode_tokens_per_s_per_gpu", "n_gpus",
               "ttft_s", "tpot_s", "batch_per_gpu", "sim_wall_s", "output_tokens_per_s_per_node",
               "output_tokens_per_s_per_gpu", "prefill_bound")


def parse_value(s: str):
    s = s.strip()
    if s in ("None", "none", "null"):
        return None
    if s in ("true", "True"):
        return True
    if s in ("false", "False"):
        return False
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """``["parallel.ep=32,64", "gpu=H800,H200"]`` -> {"parallel.ep": [32, 64], "gpu": ["H800", "H200"]}."""
    out: dict[str, list] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise ConfigError(f"grid item {it!r} must look like key=v1,v2 (e.g. parallel.ep=32,64)")
        out[k.strip()] = [parse_value(x) for x in v.split(",")]
    return out


PARTS = {"parallel": ParallelDims, "perturb": Perturbation}
FIXED = ("name", "parallel", "workload", "perturb", "record", "fast", "description", "sources")


def known_keys(base: Scenario | None = None) -> list[str]:
    """Every key a sweep accepts for ``base`` (workload keys of its workload class; all classes if None)."""
    from dsv3sim.config.scenario import DecodeWorkload, PrefillWorkload, TrainingWorkload

    keys = [f.name for f in fields(Scenario) if f.name not in FIXED]
    for head, cls in PARTS.items():
        keys += [f"{head}.{f.name}" for f in fields(cls)]
    wcls = [type(base.workload)] if base is not None else [TrainingWorkload, PrefillWorkload, DecodeWorkload]
    seen = set()
    for c in wcls:
        for f in fields(c):
            if f.name != "kind" and f.name not in seen:
                seen.add(f.name)
                keys.append(f"workload.{f.name}")
    return keys


def check_keys(axes: dict[str, list], base: Scenario | None = None) -> None:
    """ValueError naming an unknown key, a close match and the known keys (before anything runs)."""
    import difflib

    known = known_keys(base)
    for k in axes:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
            if not close and "." not in k:
                close = [c for c in known if c.endswith("." + k)][:1]
            hint = f" (did you mean {close[0]}?)" if close else ""
            wl = f" for a {type(base.workload).__name__}" if base is not None else ""
            raise ConfigError(f"unknown sweep key {k!r}{hint}; known keys{wl}: {', '.join(known)}")


def grid(axes: dict[str, list]) -> list[dict]:
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(axes[k] for k in keys))]


def apply(base: Scenario, point: dict) -> Scenario:
    groups: dict[str, dict] = {}
    top: dict = {}
    for k, v in point.items():
        head, _, rest = k.partition(".")
        if rest:
            if head not in ("parallel", "workload", "perturb"):
                raise ConfigError(f"unknown sweep key {k!r} "
                                  "(use parallel.*, workload.*, perturb.* or a Scenario field)")
            groups.setdefault(head, {})[rest] = v
        else:
            top[k] = v
    name = base.name + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"
    return base.with_(name=name, **groups, **top)


def _one(args: tuple[Scenario, dict]) -> dict:
    from dsv3sim.results import to_json
    from dsv3sim.workload import simulate

    base, point = args
    try:
        scn = apply(base, point)
        d = to_json(simulate(scn))
    except (ConfigError, TypeError) as e:  # invalid combination (ParallelDims rejects it, a value of the wrong
        # type): infeasible, kept with its reason
        return {"scenario": base.name, "params": point, "infeasible": f"{type(e).__name__}: {e}"
                if isinstance(e, TypeError) else str(e)}
    row = {"scenario": d.get("scenario", ""), "params": point, "comm_model": scn.comm_model}
    if d.get("infeasible"):
        row["infeasible"] = d["infeasible"]
        return row
    for k in ROW_METRICS:
        if k in d and isinstance(d[k], (int, float)):
            row[k] = d[k]
    bd = d.get("breakdown_s")
    if isinstance(bd, dict):
        row.update({f"breakdown.{k}": v for k, v in bd.items()})
    return row


def run_parallel(fn: Callable, jobs: list, *, workers: int = 2, ray_address: str | None = None,
                 progress: Callable[[int, int], None] | None = None, chunksize: int = 1) -> list:
    """``[fn(j) for j in jobs]`` in a local process pool (default), serially (``workers <= 1``) or on Ray.

    ``ray_address``: ``"local"`` starts a local Ray cluster in this process (``ray.init()``), anything else is
    the address of a running one (``ray.init(address=...)``). Results keep the order of ``jobs``. ``chunksize``
    sends consecutive jobs to one worker together, so jobs sorted by what they share reuse its caches."""
    out: list = [None] * len(jobs)
    if ray_address:
        try:
            import ray
        except ImportError as e:
            raise ConfigError("--ray needs the optional 'ray' package (pip install 'dsv3sim[ray]')") from e
        if not ray.is_initialized():
            if ray_address == "local":
                ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=ray_address, log_to_driver=False)
        remote = ray.remote(_batch)
        batches = [jobs[i:i + chunksize] for i in range(0, len(jobs), max(1, chunksize))]
        refs = [remote.remote(fn, b) for b in batches]
        done = 0
        pending = {r: i for i, r in enumerate(refs)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                i = pending.pop(r)
                res = ray.get(r)
                out[i * chunksize:i * chunksize + len(res)] = res
                done += len(res)
                if progress:
                    progress(done, len(jobs))
        return out
    if workers <= 1 or len(jobs) <= 1:
        for i, j in enumerate(jobs):
            out[i] = fn(j)
            if progress:
                progress(i + 1, len(jobs))
        return out
    # imported here: every CLI start imports this module (the sweep parser lists known_keys)
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers) as ex:
        batches = [(i, jobs[i:i + max(1, chunksize)]) for i in range(0, len(jobs), max(1, chunksize))]
        futs = {ex.submit(_batch, fn, b): i for i, b in batches}
        done = 0
        for f in as_completed(futs):
            res = f.result()
            i = futs[f]
            out[i:i + len(res)] = res
            done += len(res)
            if progress:
                progress(done, len(jobs))
    return out


def _batch(fn: Callable, jobs: list) -> list:
    return [fn(j) for j in jobs]


def run_sweep(base: Scenario, points: list[dict], *, workers: int = 2, ray_address: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Rows in the order of ``points``."""
    return run_parallel(_one, [(base, p) for p in points], workers=workers, ray_address=ray_address,
                        progress=progress)


TOP_PARAMS = ("scenario", "n_gpus")  # numbers of a row that name the point rather than measure it
NOT_METRICS = ("sim_wall_s", "infeasible")


def split_row(row: dict, max_chars: int = 40) -> tuple[dict, dict, str | None]:
    """(params, metrics, infeasible reason) of one row: params are the ``params`` group, the scenario, ``n_gpus`` and
    any other non-numeric scalar up to ``max_chars`` long (longer strings, notes and sources, are neither); metrics
    every other number."""
    params, metrics = {}, {}
    for k, v in row.items():
        if k == "params" and isinstance(v, dict):
            params.update({kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
        elif k not in NOT_METRICS and k != "params" and not isinstance(v, (dict, list)):
            if k in TOP_PARAMS or num(v) is None:
                params[k] = v
            else:
                metrics[k] = num(v)
    params = {k: v for k, v in params.items() if not (isinstance(v, str) and len(v) > max_chars)}
    return params, metrics, (str(row["infeasible"]) if row.get("infeasible") else None)


def _distinct(flat: list, k: str) -> int:
    return len({repr(p.get(k)) for p, _, _ in flat})


def sweep_axes(rows: list[dict], flat: list) -> tuple[list[str], list[str]]:
    """(the parameters that vary across ``rows`` (``flat``: their ``split_row``), those that make an x axis: not the
    row-naming ones, i.e. those with a distinct non-numeric value on every row of more than three). Rows with a
    ``params`` group (``run_sweep``'s) vary only in its keys and the row-naming ones; derived columns stay tabled."""
    varying = [k for k in dict.fromkeys(k for p, _, _ in flat for k in p) if _distinct(flat, k) > 1]
    ident = {k for k in varying if len(flat) > 3 and _distinct(flat, k) == len(flat)
             and any(num(p.get(k)) is None for p, _, _ in flat)}
    if knobs := {k for r in rows if isinstance(r.get("params"), dict) for k in r["params"]}:
        varying = [k for k in varying if k in knobs or k in ident]
    return varying, [k for k in varying if k not in ident] or varying
