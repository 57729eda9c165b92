"""The calibrated ``local-cpu`` topology: the p2p alpha-beta fit written into the scale-up link fields of
``topologies/local-cpu.yaml`` (the committed file is left alone; the calibrated copy goes to the run's
output folder and, with ``--save-profile``, to ``profiles/cpu-local/``).

Mapping: one-way p2p time t(n) = alpha + n / beta; the topology charges 2 hops of ``latency_us`` per
transfer (GPU -> switch -> GPU), so latency_us = alpha / 2 and bandwidth_GBps = beta. The whole-collective
fits (all_to_all against the off-rank bytes a rank sends, all_reduce against the buffer bytes) go under
``collectives``, which ``workload/measured_step.py`` prices the run's all-to-alls and all-reduces with.
A single-process run has no transport to fit: the link keeps the base file's values (marked uncalibrated).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dsv3sim.validate.atomic import write_text


def calibrated_topology(fits: dict[str, dict[str, float]], world: int, when: str, gpu: str = "cpu") -> dict:
    base = Path(__file__).resolve().parents[2] / "topologies" / "local-cpu.yaml"
    raw = yaml.safe_load(base.read_text()) if base.is_file() else {"name": "local-cpu", "gpu": "cpu", "n_nodes": 1,
                                                                        "scale_up": {"kind": "shm"}}
    p2p = fits.get("p2p")
    raw["gpu"] = gpu
    raw["gpus_per_node"] = max(int(raw.get("gpus_per_node", 1)), world)
    su = dict(raw.get("scale_up") or {})
    if p2p is not None:
        su.update(bandwidth_GBps=round(p2p["bandwidth_GBps"], 6), latency_us=round(p2p["latency_us"] / 2, 3),
                  message_latency_us=0.0, achievable_fraction=1.0,
                  note=f"calibrated: true ({when}; p2p ping-pong, dsv3sim validate)")
    raw["scale_up"] = su
    raw["collectives"] = {k: {"latency_us": round(v["latency_us"], 3), "bandwidth_GBps": round(v["bandwidth_GBps"], 6)}
                          for k, v in fits.items() if k != "p2p"}
    raw["sources"] = [f"dsv3sim validate calibration {when}: gloo p2p alpha-beta fit "
                      f"(all_to_all: {fits.get('all_to_all')}, all_reduce: {fits.get('all_reduce')})"]
    return raw


def write_topology(raw: dict, path: str | Path) -> Path:
    return write_text(path, "# written by dsv3sim validate (calibrated transport of this machine)\n"
                      + yaml.safe_dump(raw, sort_keys=False))
