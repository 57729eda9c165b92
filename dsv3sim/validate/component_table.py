"""The calibration as ordinary artefacts ``dsv3sim run`` reads: a component table of this machine
(``workload/measured_step.py`` documents the format and the step composed from it), the calibrated topology
YAML with the collective fits, and a scenario file that names both.

From the calibration phase only (never the run's timings): per rank, the mean of every component's forward
and backward samples pooled over all probes (the full profile + the quick probe before each measured step),
the routed-expert fit t = a + b * rows, the autograd start-up per backward call, the optimizer step, the
gradient all-reduce on the run's buffers, and the relative spread cv of the component samples (time-weighted
mean of stdev / mean). Transport: alpha-beta fits over rank 0's pooled sweep points (``calibrate.fit``).
From the run: its stage split and its routing (rows per EP rank pair per micro-batch and MoE layer, mean over
the measured steps and micro-batches), as a routing trace would give it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from dsv3sim.validate.alpha_beta import fit
from dsv3sim.validate.atomic import write_json, write_text
from dsv3sim.validate.calibrate import GAP_S
from dsv3sim.validate.ep import row_bytes
from dsv3sim.validate.layout import Coord, rank_of
from dsv3sim.workload.measured_step import COMPONENTS, FORMAT, VERSION

TABLE = "components.json"
SCENARIO = "scenario.py"


def transport_fits(calib: list[dict]) -> dict[str, dict[str, float]]:
    """{kind: {latency_us, bandwidth_GBps}} over rank 0's pooled sweep points (it is in every pattern)."""
    first = min(calib, key=lambda c: c["rank"])
    pts: dict[str, list] = defaultdict(list)
    for p in first["probes"]:
        for k, v in p.get("points", {}).items():
            pts[k] += v
    out = {k: fit([x for x, _ in v], [t for _, t in v]).to_dict() for k, v in pts.items()
           if len({x for x, _ in v}) >= 2}
    if "all_to_all" in out and any(k.startswith("all_to_all@") for k in out):  # the default sweep's gap, by name
        out[f"all_to_all@{GAP_S * 1e6:.0f}"] = out["all_to_all"]
    return out


def _component_means(comps: list[dict], cvs: list[float], wts: list[float]) -> dict[str, list[float]]:
    """{component: [mean F_s, mean B_s]} over the probes; each repeated component's CV (weight: its mean) is
    appended to ``cvs`` / ``wts``."""
    out: dict[str, list[float]] = {}
    for k in (k for k in COMPONENTS if any(k in cc for cc in comps)):
        fb = []
        for key in ("F_s", "B_s"):
            xs = [x for cc in comps if k in cc for x in cc[k][key]]
            m = statistics.fmean(xs) if xs else 0.0
            fb.append(m)
            if len(xs) > 1 and m > 0:
                cvs.append(statistics.pstdev(xs) / m)
                wts.append(m)
        out[k] = fb
    return out


def _expert_fit(comps: list[dict], cvs: list[float], wts: list[float]) -> dict[str, list[float]]:
    """{fwd|bwd: [a_s, b_s_per_row]} averaged over the probes; the relative spread of each repeated fit is
    appended to ``cvs`` (weight: its fixed cost a_s)."""
    ex = [cc["expert"] for cc in comps if "expert" in cc]
    if not ex:
        return {"fwd": [0.0, 0.0], "bwd": [0.0, 0.0]}
    for e in ex:
        for d, key in (("fwd", "F_rel"), ("bwd", "B_rel")):
            if len(e[key]) > 1:
                cvs.append(statistics.pstdev(e[key]))
                wts.append(e[d]["a_s"])
    return {d: [statistics.fmean(e[d]["a_s"] for e in ex), statistics.fmean(e[d]["b_s_per_row"] for e in ex)]
            for d in ("fwd", "bwd")}


def _rank_entry(c: dict) -> dict:
    comps = [p["components"] for p in c["probes"] if "components" in p]
    if not comps:
        raise ValueError(f"rank {c['rank']}: the calibration has no component profile")
    cvs: list[float] = []
    wts: list[float] = []
    out: dict = {"components": _component_means(comps, cvs, wts), "expert": _expert_fit(comps, cvs, wts)}
    out["bwd_start_s"] = statistics.fmean(cc.get("bwd_call_overhead_s", 0.0) for cc in comps)
    out["optim_s"] = statistics.fmean(x for cc in comps for x in cc["optim"]["F_s"])
    gs = [cc["grad_sync"]["F"] for cc in comps if "grad_sync" in cc]
    out["grad_sync_s"] = statistics.fmean(gs) if gs else 0.0
    out["cv"] = sum(c_ * w for c_, w in zip(cvs, wts)) / sum(wts) if wts and sum(wts) > 0 else 0.0
    return out


def _routing(spec, train: list[dict]) -> dict[str, list[dict]]:
    """{layer: [per DP replica {send_rows: [[rows e -> e'] ...], expert_rows: [rows received per EP rank]}]}."""
    by_rank = {m["rank"]: m for m in train}
    layers = sorted({int(L) for m in train for L in m["routing"]})
    out: dict[str, list[dict]] = {}
    for L in layers:
        reps = []
        for d in range(spec.dp):
            send, rows = [], []
            for e in range(spec.ep):
                ents = [x for p in range(spec.pp)
                        for x in by_rank[rank_of(Coord(dp=d, pp=p, ep=e), spec.ep, spec.pp)]["routing"].get(str(L), [])]
                if not ents:
                    raise ValueError(f"no routing recorded for layer {L} replica {d} EP rank {e}")
                send.append([statistics.fmean(x["send_rows"][j] for x in ents) for j in range(spec.ep)])
                rows.append(statistics.fmean(sum(x["expert_rows"]) for x in ents))
            reps.append({"send_rows": send, "expert_rows": rows})
        out[str(L)] = reps
    return out


def build_table(spec, train: list[dict], calib: list[dict], machine: str) -> dict:
    import torch

    m0 = train[0]
    D, elt = m0["hidden"], m0["elt_bytes"]
    dt = torch.float32 if elt == 4 else torch.bfloat16
    return {"format": FORMAT, "version": VERSION, "machine": machine,
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "device": spec.device, "model": spec.model,
            "pp": spec.pp, "ep": spec.ep, "dp": spec.dp, "schedule": spec.schedule, "microbatches": m0["microbatches"],
            "tokens_per_microbatch": m0["tokens_per_mb"], "hidden": D, "elt_bytes": elt,
            "fp8_compute": spec.fp8_compute, "fp8_dispatch": spec.fp8,
            "row_bytes": {w: row_bytes(D, w, dt) for w in ("fp8", "bf16", "native")},
            "stages": dict(sorted({s: v for m in train for s, v in m["stages"].items()}.items(),
                                  key=lambda kv: int(kv[0]))),
            "routing": _routing(spec, train),
            "ranks": {str(c["rank"]): _rank_entry(c) for c in calib}}


def write_scenario(spec, out_dir: Path, topology: Path, table: Path) -> Path:
    """A scenario file reproducing the prediction: ``dsv3sim run <it> --json -``."""
    name = f"validate-{Path(spec.model).stem}-ep{spec.ep}-pp{spec.pp}-dp{spec.dp}-{spec.schedule}"
    gbs = spec.micro_batch * spec.n_microbatches * spec.dp * spec.ep
    text = f'''"""Written by dsv3sim validate: the step it predicted, on this machine's calibration
(topology {topology.name}, component table {table.name}). Reproduce: dsv3sim run {out_dir / SCENARIO} --json -"""

from pathlib import Path

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

HERE = Path(__file__).resolve().parent


def DEFAULT() -> Scenario:
    return Scenario(
        name={name!r}, model={spec.model!r}, topology=str(HERE / {topology.name!r}),
        parallel=ParallelDims(pp={spec.pp}, dp={spec.dp * spec.ep}, ep={spec.ep}),
        workload=TrainingWorkload(
            global_batch_sequences={gbs}, seq_len={spec.seq_len}, micro_batch_sequences={spec.micro_batch},
            schedule={spec.schedule!r}, gemm_dtype={"fp8" if spec.fp8_compute else "bf16"!r},
            dispatch_dtype={"fp8" if spec.fp8 else "bf16"!r}, node_limit=None, zero1=False,
            component_table=str(HERE / {table.name!r})))
'''
    return write_text(out_dir / SCENARIO, text)


def write_artefacts(spec, train: list[dict], calib: list[dict], out_dir: Path, topology: Path,
                    machine: str) -> tuple[Path, Path]:
    """(component table, scenario file) in ``out_dir``."""
    table = out_dir / TABLE
    write_json(table, build_table(spec, train, calib, machine))
    return table, write_scenario(spec, out_dir, topology, table)
