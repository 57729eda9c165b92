"""Mutated model configs (HF config.json) through ``dsv3sim stats CONFIG --json``: exit 0 or 2, never a
traceback, a hang or NaN/Infinity in the JSON.

Which values are refused is the model-config checks' business (dsv3sim/config/model.py and its own fuzz tests in
tests/config/); this file checks only the CLI property: "exit 2 or success, never a traceback".
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from cases import junk
from harness import assert_clean, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = json.loads(Path("model/deepseek-v2-lite.json").read_text()) if Path("model/deepseek-v2-lite.json").exists() \
    else {}
EXTRA = ["rope_scaling", "model_type", "quantization_config", "num_attention_heads", "num_hidden_layers",
         "num_nextn_predict_layers", "rms_norm_eps", "rope_theta", "routed_scaling_factor"]


@st.composite
def model_case(draw):
    cfg = dict(BASE)
    key = draw(st.sampled_from(sorted(set(cfg) | set(EXTRA))))
    v = draw(st.one_of(junk(), st.sampled_from([[0, 0], [128], {"type": "yarn"}, "deepseek_v3", [1]])))
    if key == "quantization_config":
        cfg[key] = draw(st.sampled_from([v, {"weight_block_size": v}, {"weight_block_size": [0, 0]}]))
    else:
        cfg[key] = v
    return cfg


@settings(derandomize=True, max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(model_case())
def test_fuzz_model_configs(cfg):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg, default=str))  # a date becomes its ISO string, as a JSON file would hold
        assert_clean(run_case(["stats", str(p), "--json"], timeout_s=20, outdir=Path(d)))
