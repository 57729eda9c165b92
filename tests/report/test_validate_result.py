"""A `dsv3sim validate` result (dsv3sim/validate/compare.py layout) renders with its measured trace beside it."""

from __future__ import annotations

import json

from dsv3sim.report import render


def validate_like() -> tuple[dict, dict]:
    ev = {str(r): [{"name": n, "t0": t0 + r * 1e-4, "t1": t1 + r * 1e-4, "mb": 0, "layer": 0, "stream": s}
                   for n, t0, t1, s in (("attn(F)", 0.0, 1e-3, "compute"), ("dispatch(F)", 1e-3, 1.5e-3, "comm"),
                                        ("mlp(F)", 1.5e-3, 3e-3, "compute"), ("combine(F)", 3e-3, 3.4e-3, "comm"))]
          for r in range(2)}
    result = {
        "kind": "validation", "scenario": {"name": "validate tiny nproc=2 ep=2", "model": "tiny", "nproc": 2},
        "measured_step_s": 0.010, "predicted_step_s": 0.011, "error": 0.1,
        "measured_steps_s": [0.0101, 0.0099, 0.0100], "predicted_steps_s": [0.011, 0.011, 0.011],
        "timeline": {"per_rank": ev},
        "validation": [{"name": "step time", "predicted": 0.011, "measured": 0.010, "unit": "s", "source": "real"},
                       {"name": "attn(F)", "predicted": 0.002, "measured": 0.0025, "unit": "s", "source": "real"}],
    }
    measured = {"traceEvents": [{"ph": "X", "name": e["name"], "pid": int(r), "tid": e["stream"],
                                 "ts": e["t0"] * 1.1e6, "dur": (e["t1"] - e["t0"]) * 1.1e6}
                                for r, es in ev.items() for e in es]}
    return result, measured


def test_validate_result_renders(tmp_path):
    result, measured = validate_like()
    tr = tmp_path / "measured_timeline.trace.json"
    tr.write_text(json.dumps(measured))
    out = render(result, tmp_path / "v.html", chrome_trace=tr, update_index=False)
    html = out.read_text()
    assert "<title>dsv3sim: validate tiny nproc=2 ep=2</title>" in html
    assert "+10.0 %" in html and "-20.0 %" in html  # step time and attn(F) errors vs measured
    assert 'data-section="timeline"' in html and 'data-section="compare"' in html
    assert (tmp_path / "v.sim+real.trace.json").exists()
    assert "Step time per measured step" in html
