"""Measured vs predicted: the result JSON of ``dsv3sim validate``.

Step time: the run's step k takes max over ranks of (end - start) of that step; ``measured_step_s`` is the
median over measured steps (``measured_step_low_s``: their lower quartile); ``predicted_step_s`` the step
model's step (``prediction.py``); ``error`` = (predicted - measured) / measured. Components: per step, the mean
over each rank's middle half of steps by duration (``central_steps``; ``measured_median_s``: the median over all
steps), mean over ranks, summed over layers and micro-batches. Backward of gate, head and embedding is not
timed separately in the run; it is inside ``other`` (step - timed spans) there, and ``other`` on the predicted
side is the step model's ``framework`` component (their profiled sum + the autograd start-up of every backward
call). The run's ``allreduce`` span holds the wait for the slowest member: it is compared with the model's
``allreduce`` + ``allreduce_wait`` (``predicted_components_s`` keeps the model's components apart).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from dsv3sim.validate.atomic import write_json
from dsv3sim.validate.load import summary as load_summary
from dsv3sim.validate.robust import low, median_ci

COMM = ("dispatch", "combine", "layout", "allreduce", "p2p_wait")
UNTIMED_IN_RUN = ("framework", "layout(B)")  # not a span of the run (older runs: layout(B)): inside its other
IN_RUN_ALLREDUCE = ("allreduce", "allreduce_wait")


def stream_of(name: str) -> str:
    return "comm" if name.startswith(COMM) else "compute"


def measured_steps(train: list[dict]) -> list[float]:
    return [max(x) for x in zip(*[r["step_s"] for r in train])]


def central_steps(step_s: list[float]) -> list[int]:
    """The indices of a rank's typical steps: the middle half by duration (all of them below 4 steps)."""
    n = len(step_s)
    order = sorted(range(n), key=lambda i: step_s[i])
    return sorted(order[n // 4: n - n // 4]) if n >= 4 else list(range(n))


def _measured_components(train: list[dict], stat: str = "central") -> dict[str, float]:
    """Per-step component time of the run, mean over ranks; ``other`` = step - the timed spans, per step.
    ``stat`` "central": the mean over the rank's typical steps (``central_steps``), so the components add up to
    the mean of those steps, which is close to the median step and free of the few steps a load spike of other
    jobs doubled. Per-component medians ("median") do not add up: a preemption hits a few of a step's ~100
    spans, different ones each step, so every span's median misses it while every step pays some (summed 10 %
    under the steps on the shared 2-core box, MEASUREMENTS.md), which hid where a prediction's deficit was.
    Older results without per-step spans: the mean over steps."""
    n = len(train)
    mcomp: dict[str, float] = defaultdict(float)
    for r in train:
        by = r.get("component_s_by_step") or {}
        if by:
            steps, (idx, agg) = r["step_s"], _typical_steps(r, stat)
            for k, v in _typical([r], "component_s_by_step", stat).items():
                mcomp[k] += v / n
            mcomp["other"] += agg([steps[i] - sum(v[i] for v in by.values()) for i in idx]) / n
        else:
            for k, v in r["component_s_per_step"].items():
                mcomp[k] += v / n
            mcomp["other"] += (statistics.fmean(r["step_s"]) - sum(r["component_s_per_step"].values())) / n
    return mcomp


def _typical_steps(r: dict, stat: str = "central"):
    """(the step indices a rank's per-step series are aggregated over, the aggregate): its typical steps and the
    mean ("central", ``central_steps``), or every step and the median ("median")."""
    if stat == "central":
        return central_steps(r["step_s"]), statistics.fmean
    return range(len(r["step_s"])), statistics.median


def _typical(train: list[dict], key: str, stat: str = "central") -> dict[str, float]:
    """Each per-step series under ``key`` of every rank aggregated over its typical steps (``_typical_steps``),
    mean over ranks."""
    out: dict[str, float] = defaultdict(float)
    for r in train:
        idx, agg = _typical_steps(r, stat)
        for k, v in (r.get(key) or {}).items():
            out[k] += agg([v[i] for i in idx]) / len(train)
    return out


def _measured_cpu(train: list[dict]) -> dict[str, float]:
    """Per-step CPU seconds of each compute span (its own thread's CPU), mean over each rank's typical steps,
    mean over ranks: beside the wall time it splits a compute miss into the work (CPU per call: caches, context)
    and the core the rank got (wall / CPU: the load)."""
    return _typical(train, "component_cpu_s_by_step")


def _add_cpu(rows: list[dict], measured: dict[str, float], predicted: dict[str, float]) -> None:
    """``measured_cpu_s`` / ``predicted_cpu_s`` on the compute rows both sides have (a CPU run's table)."""
    for row in rows:
        k = row["name"]
        if stream_of(k) == "compute" and k in predicted and measured.get(k):
            row.update(measured_cpu_s=measured[k], predicted_cpu_s=predicted[k])


def _predicted_components(pred: dict, measured: dict[str, float]) -> dict[str, float]:
    """The model's components regrouped as the run times them (``other``, ``allreduce`` with its wait); a run
    recorded before its gate weights' backward exchange had a span has ``layout(B)`` inside its ``other``."""
    pcomp = dict(pred["components_mean_over_ranks"])
    pcomp["other"] = sum(pcomp.pop(k, 0.0) for k in UNTIMED_IN_RUN if k not in measured)
    if any(k in pcomp for k in IN_RUN_ALLREDUCE):
        pcomp["allreduce"] = sum(pcomp.pop(k, 0.0) for k in IN_RUN_ALLREDUCE)
    return pcomp


def _component_rows(mcomp: dict[str, float], pcomp: dict[str, float], median: dict[str, float]) -> list[dict]:
    names = [k for k in ("embed(F)", "attn(F)", "mlp(F)", "shared(F)", "gate(F)", "layout(F)", "dispatch(F)",
                         "combine(F)", "head(F)", "attn(B)", "mlp(B)", "shared(B)", "dispatch(B)", "combine(B)",
                         "layout(B)", "p2p_wait", "allreduce", "optim", "requant", "other") if k in mcomp or k in pcomp]
    return [dict(name=k, measured_s=mcomp.get(k, 0.0), predicted_s=pcomp.get(k, 0.0),
                 error=(pcomp.get(k, 0.0) - mcomp[k]) / mcomp[k] if mcomp.get(k) else None,
                 measured_median_s=median.get(k, 0.0)) for k in names]


def step_ci95(steps: list[float], predicted_s: float) -> dict[str, list[float]]:
    """The measured median's distribution-free 95 % interval (``robust.median_ci``) and the error were the median
    at either end of it."""
    ci = median_ci(steps)
    return {"measured_step_ci95_s": list(ci), "error_ci95": sorted((predicted_s - m) / m for m in ci)}


def _a2a_bandwidth(train: list[dict]) -> dict[str, float]:
    """Algorithmic bandwidth (GB/s) of each all-to-all kind, as DeepEP's tests report it: bytes a rank moved
    off-rank / the time it spent in that all-to-all (waits for peers included), mean over ranks."""
    bw = {}
    for k in ("dispatch(F)", "combine(F)", "dispatch(B)", "combine(B)"):
        vals = [r["bytes_per_step"][k] / r["component_s_per_step"][k] for r in train
                if r["bytes_per_step"].get(k) and r["component_s_per_step"].get(k)]
        if vals:
            bw[k] = statistics.fmean(vals) / 1e9
    return bw


def _scenario(spec) -> dict:
    return {"name": f"validate {spec.model} nproc={spec.nproc} ep={spec.ep} pp={spec.pp} dp={spec.dp}",
            "model": spec.model, "device": spec.device, "nproc": spec.nproc, "nnodes": spec.nnodes,
            "world_size": spec.world_size, "ep": spec.ep, "pp": spec.pp, "dp": spec.dp,
            "schedule": spec.schedule, "microbatches": spec.n_microbatches, "micro_batch": spec.micro_batch,
            "seq_len": spec.seq_len, "fp8_dispatch": spec.fp8, "fp8_compute": spec.fp8_compute,
            "gpus_per_node": spec.node_size,
            "steps": spec.steps, "warmup": spec.warmup, "threads_per_rank": spec.threads}


def _validation_rows(spec, pstep: float, meas: float, comps: list[dict]) -> list[dict]:
    src = f"real {spec.device} run, {spec.world_size} ranks (torchrun)"
    rows = [dict(name="step time", predicted=pstep, measured=meas, unit="s", source=src)]
    rows += [dict(name=c["name"], predicted=c["predicted_s"], measured=c["measured_s"], unit="s", source=src)
             for c in comps if c["measured_s"] > 0]
    return rows


def build_result(spec, train: list[dict], calib: list[dict], pred: dict, *, out_dir: Path,
                 wall_s: float) -> dict:
    steps = measured_steps(train)
    meas = statistics.median(steps)
    pstep = pred["predicted_step_s"]
    mcomp = _measured_components(train)
    comps = _component_rows(mcomp, _predicted_components(pred, mcomp),
                            _measured_components(train, "median"))
    _add_cpu(comps, _measured_cpu(train), pred.get("components_cpu_mean_over_ranks", {}))
    a2a = {str(r["rank"]): dict(r["bytes_per_step"]) for r in train}
    r0 = next(r for r in train if r["rank"] == 0)
    return {
        "kind": "validation",
        "scenario": _scenario(spec),
        "measured_step_s": meas,
        "predicted_step_s": pstep,
        "error": (pstep - meas) / meas,
        "measured_steps_s": steps,
        "measured_step_low_s": low(steps),
        **step_ci95(steps, pstep),  # measured_step_ci95_s, error_ci95
        "measured_statistic": "median over the measured steps (measured_step_low_s: their lower quartile)",
        "predicted_steps_s": [pstep] * len(steps),  # one step model: the same prediction for every measured step
        "components": comps,
        "predicted_components_s": dict(pred["components_mean_over_ranks"]),
        "machine_load": load_summary([r.get("load_per_step", []) for r in train]),
        "scenario_path": pred["scenario_path"],
        "component_table": pred["component_table"],
        "a2a_bytes_per_rank_per_step": a2a,
        "a2a_bandwidth_GBps": _a2a_bandwidth(train),
        "prediction_method": pred["prediction_method"],
        "model_source": r0["model_source"],
        "schedule_source": r0["schedule_source"],
        "transport_calibrated": pred["transport"],
        "profiler_top_ops_rank0": r0["profiler_top_ops"],
        "profiler_traces": sorted(str(p.name) for p in out_dir.glob("trace_rank*.json")),
        "measured_trace": "measured_timeline.trace.json",
        "timeline": {"per_rank": {str(r): [dict(e, stream=stream_of(e["name"])) for e in evs]
                                  for r, evs in pred["events_last_step"].items()}},
        "validation": _validation_rows(spec, pstep, meas, comps),
        "out_dir": str(out_dir),
        "wall_s": wall_s,
    }


def measured_chrome_trace(train: list[dict]) -> dict:
    """The run's timed spans of its last measured step as Chrome Trace Events (pid = rank, tid = stream)."""
    ev = []
    for r in train:
        ev.append({"ph": "M", "name": "process_name", "pid": r["rank"], "args": {"name": f"rank {r['rank']}"}})
        for e in r["last_step_events"]:
            ev.append({"ph": "X", "name": e["name"], "pid": r["rank"], "tid": stream_of(e["name"]),
                       "ts": e["t0"] * 1e6, "dur": (e["t1"] - e["t0"]) * 1e6,
                       "args": {"microbatch": e["mb"], "layer": e["layer"]}})
    return {"traceEvents": ev, "displayTimeUnit": "ms"}


def write_outputs(result: dict, train: list[dict], out_dir: Path, report: str | None) -> None:
    """result.validation.json and the measured trace (atomic), then the HTML report (temp file + rename)."""
    write_json(out_dir / "measured_timeline.trace.json", measured_chrome_trace(train))
    write_json(out_dir / "validation.json", result)
    if report:
        if importlib.util.find_spec("plotly") is None:  # a bare GPU box: keep the JSON, render later
            print(f"dsv3sim validate: no report (plotly is not installed); render it later: "
                  f"dsv3sim validate --from-run {out_dir} --report {report}", file=sys.stderr)
            return
        from dsv3sim.report import render

        dest = Path(report)
        tmp = dest.with_name(f".{dest.stem}.partial.html")
        try:
            render(result, tmp, chrome_trace=out_dir / "measured_timeline.trace.json", update_index=False)
            tmp.replace(dest)
            side = tmp.with_name(tmp.stem + ".sim+real.trace.json")
            if side.exists():
                side.replace(dest.with_name(dest.stem + ".sim+real.trace.json"))
        finally:
            tmp.unlink(missing_ok=True)


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
