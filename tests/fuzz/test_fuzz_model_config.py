"""Mutated model configs (HF config.json) through ``dsv3sim stats CONFIG --json``: exit 0 or 2, never a
traceback, a hang or NaN/Infinity in the JSON.

Model-config validation (dsv3sim/config/model.py) lands separately; until both are merged this file runs only
with DSV3SIM_FUZZ_MODEL_CONFIG=1, and it checks only "exit 2 or success, never a traceback" (no expectation
about which values are refused). Enable it by deleting the skip once the model-config checks are in main.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from cases import junk
from harness import assert_clean, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(os.environ.get("DSV3SIM_FUZZ_MODEL_CONFIG") != "1",
                                reason="model-config validation lands separately; set DSV3SIM_FUZZ_MODEL_CONFIG=1")

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
        p.write_text(json.dumps(cfg))
        assert_clean(run_case(["stats", str(p), "--json"], timeout_s=20, outdir=Path(d)))
