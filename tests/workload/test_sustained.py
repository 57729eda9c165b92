"""The power-limited GEMM ceilings re-derived from the committed H200 probes (two ways agree)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from dsv3sim.workload.sustained import PARTIAL_SM_EXPONENT, SUSTAINED_FRACTION, ceiling_time

H200 = Path(__file__).resolve().parents[2] / "profiles" / "h200"
PEAK = {"bf16": 989.4e12, "fp8": 1978.9e12}


def test_full_gpu_ceiling_is_the_fastest_sustained_probe():
    rows = [r for r in json.loads((H200 / "sustained_clock.json").read_text())["rows"] if "sustained_s" in r and "dtype" in r]
    for dt in ("bf16", "fp8"):
        best = max(r["flops"] / r["sustained_s"] for r in rows if r["dtype"] == dt)
        assert SUSTAINED_FRACTION[dt] * PEAK[dt] == pytest.approx(best, rel=0.01)


def test_partial_sm_exponent_is_the_probe_median():
    d = json.loads((H200 / "sustained_partial.json").read_text())
    rows = [r for r in d["rows"] if "tflops" in r]
    rate = {(r["dtype"], r["m"], r["n"], r["k"], r["way"]): r["tflops"] for r in rows}
    gammas = []
    for dt, m, n, k, way in rate:
        if way == "part+copy":
            s = next(r["sms"] for r in rows if r["way"] == way) / d["sms_total"]
            gammas.append(math.log(rate[dt, m, n, k, way] / rate[dt, m, n, k, "all"] / s) / math.log(1 / s))
    assert len(gammas) >= 3 and pytest.approx(statistics.median(gammas), abs=2e-3) == PARTIAL_SM_EXPONENT


def test_ceiling_on_part_of_the_sms():
    f = 1e15
    full = ceiling_time("gemm", "fp8", f, PEAK["fp8"])
    part = ceiling_time("gemm", "fp8", f, PEAK["fp8"], 112 / 132)
    # slower than on every SM, faster than the SM fraction alone (the clock rises), measured 0.867-0.888
    assert full < part < full * 132 / 112 and full / part == pytest.approx(0.887, abs=0.02)
    assert ceiling_time("attn", "fp8", f, PEAK["fp8"]) == 0.0
