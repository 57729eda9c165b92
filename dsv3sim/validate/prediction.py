"""The prediction of a validation run, through ``dsv3sim.workload`` like every other prediction: the
calibration becomes a topology YAML + a component table + a scenario file (``component_table.py``), the
scenario is loaded the way ``dsv3sim run`` loads it and simulated by ``dsv3sim.workload.simulate``.
``dsv3sim run <scenario_path>`` therefore gives the same step time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.validate.component_table import transport_fits, write_artefacts
from dsv3sim.validate.topology_out import calibrated_topology, write_topology

METHOD = ("dsv3sim.workload.simulate on the scenario this command wrote (scenario_path): "
          "workload/measured_step.py over this machine's component table (calibration phase) and the calibrated "
          "topology (p2p, all_to_all, all_reduce alpha-beta fits); pipeline by dsv3sim.parallel.execute; "
          "routing replayed from the real run")


def _gpu(device: str, train: list[dict]) -> str:
    if device != "cuda":
        return "cpu"
    from dsv3sim.validate.gpu_tables import gpu_name

    try:
        return gpu_name(train[0].get("device_name", ""))
    except ValueError:
        return "cpu"


def predict(spec, train: list[dict], calib: list[dict], out_dir: Path) -> dict:
    from dsv3sim.workload import simulate
    from dsv3sim.workload.loader import load

    fits = transport_fits(calib)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    topo_path = out_dir / f"local-{spec.device}.calibrated.yaml"
    write_topology(calibrated_topology(fits, spec.world_size, when, gpu=_gpu(spec.device, train)), topo_path)
    machine = f"{spec.device}, {spec.world_size} processes, {spec.threads} threads each"
    table, scen = write_artefacts(spec, train, calib, out_dir, topo_path, machine)
    (scn,) = load(str(scen)).values()
    res = simulate(scn)
    if not hasattr(res, "step_time_s"):
        raise ConfigError(f"the validation scenario {scen} is infeasible: {res.reason}")
    per_rank: dict[int, list[dict]] = {}
    for e in res.timeline["events"]:
        if e.get("replica", 0) == 0:
            per_rank.setdefault(e["rank"], []).append({"name": e["name"], "t0": e["start_s"], "t1": e["end_s"]})
    return {"predicted_step_s": res.step_time_s, "components_mean_over_ranks": dict(res.breakdown_s),
            "components_cpu_mean_over_ranks": dict(res.breakdown_cpu_s),
            "events_last_step": per_rank, "prediction_method": METHOD, "transport": fits,
            "scenario_path": str(scen), "component_table": str(table), "topology_calibrated": str(topo_path)}
