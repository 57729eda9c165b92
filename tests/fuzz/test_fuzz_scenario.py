"""Scenario overrides: any junk value in any field of a Scenario, its workload, layout or perturbation is
either accepted or refused with a one-line ValueError naming the field (never TypeError, never a crash later);
the same seed gives byte-identical result JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from cases import INVALID, junk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsv3sim.config.scenario import (
    DecodeWorkload,
    ParallelDims,
    Perturbation,
    PrefillWorkload,
    Scenario,
    TrainingWorkload,
)

FAST = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
PARTS = {"workload": (TrainingWorkload, PrefillWorkload, DecodeWorkload), "parallel": (ParallelDims,),
         "perturb": (Perturbation,)}


@st.composite
def override(draw):
    part = draw(st.sampled_from(["scenario", *PARTS]))
    cls = Scenario if part == "scenario" else draw(st.sampled_from(PARTS[part]))
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("kind", "workload", "parallel", "perturb")]
    return part, cls, draw(st.sampled_from(names)), draw(junk())


@FAST
@given(override())
def test_scenario_overrides(ov):
    part, cls, name, v = ov
    try:
        if part == "scenario":
            Scenario(name="s", **{name: v}) if name != "name" else Scenario(name=v)
        else:
            Scenario(name="s", **{part: cls(**{name: v})})
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and msg
        assert name in msg or type(v).__name__ in msg or "Scenario" in msg, msg
        return
    if v in INVALID[:6] or (isinstance(v, float) and math.isnan(v)):  # None/[]/list/dict/str/"" and NaN: never valid
        assert v is None and name in ("gpu", "n_gpus", "node_limit", "routing_trace", "routing_layers",
                                      "batch_per_gpu", "mtp_acceptance", "straggler_gpu", "degraded_link") or \
            isinstance(v, str) and name in ("description", "gpu", "routing_trace", "degraded_link", "model",
                                            "topology"), (part, name, v)


WALL_CLOCK = ("sim_wall_s",)  # the only wall-clock field of a result: seconds the simulation itself took


def _strip(d):
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in WALL_CLOCK}
    if isinstance(d, list):
        return [_strip(x) for x in d]
    return d


TINY = """from dsv3sim.config.scenario import *


def f():
    return Scenario(name="t", model="tiny", topology="local-cpu", parallel=ParallelDims(dp=2, ep=2), seed=7,
                    workload=TrainingWorkload(global_batch_sequences=8, seq_len=64, schedule="1f1b", node_limit=None))
"""


@pytest.mark.parametrize("spec", ["scenarios/deepseek_v3_serving.py:prefill", "TINY:f"])
def test_same_seed_byte_identical_json(spec, tmp_path):
    from dsv3sim.cli import main

    if spec.startswith("TINY"):
        (tmp_path / "tiny_scn.py").write_text(TINY)
        spec = str(tmp_path / "tiny_scn.py:f")
    outs = []
    for i in range(2):
        p = tmp_path / f"r{i}.json"
        assert main(["run", spec, "--json", str(p)]) == 0
        outs.append(json.dumps(_strip(json.loads(p.read_text())), sort_keys=True).encode())
    assert outs[0] == outs[1]
    assert b"NaN" not in outs[0] and b"Infinity" not in outs[0]
