"""Property-based fuzzing of model configs: any mutation of a committed config either loads into a model whose
statistics are finite and bounded, or is refused with one ConfigError line naming a field. Seed-pinned
(derandomized) so CI runs the same cases; ``-m slow`` runs a longer search."""

from __future__ import annotations

import json
import math
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsv3sim.commands.stats import compute
from dsv3sim.config import ConfigError, from_dict
from dsv3sim.config.model import resolve_model_path

MODELS = ("deepseek-v3", "kimi-k2", "deepseek-v2-lite-inference-16B", "qwen3-30b-a3b", "qwen1.5-moe-a2.7b",
          "mixtral-8x7b", "gpt-oss-120b", "llama3-70b")
BASE = {m: json.loads(resolve_model_path(m).read_text()) for m in MODELS}
EXTRA_KEYS = ("num_local_experts", "num_experts", "q_lora_rank", "sliding_window", "layer_types", "mlp_only_layers",
              "quantization_config", "rope_scaling", "architectures", "model_type", "head_dim",
              "shared_expert_intermediate_size", "decoder_sparse_step", "use_sliding_window", "attention_bias")

values = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 3), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0.0, -1.0, 0.5, 1e-6, 1e30, 1e12, 2.5, float("nan"), float("inf"), -float("inf")]),
    st.text(max_size=6), st.sampled_from(["yarn", "fp8", "mxfp4", "sigmoid", "softmax", "noaux_tc", "true"]),
    st.lists(st.one_of(st.integers(-2, 300), st.sampled_from(["sliding_attention", "full_attention"])),
             max_size=5),
    st.dictionaries(st.sampled_from(["type", "factor", "weight_block_size", "quant_method", "rope_type",
                                     "original_max_position_embeddings", "mscale"]),
                    st.one_of(st.integers(-5, 200), st.floats(allow_nan=True), st.text(max_size=4),
                              st.lists(st.integers(-1, 256), max_size=3)), max_size=3),
)


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(MODELS))
    raw = dict(BASE[name])
    keys = sorted(raw) + list(EXTRA_KEYS)
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.sampled_from(keys))
        if draw(st.booleans()) and k in raw:
            raw.pop(k)
        else:
            raw[k] = draw(values)
    return name, raw


def _finite(x, path="") -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            _finite(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for v in x:
            _finite(v, path)
    elif isinstance(x, float):
        assert math.isfinite(x), path


def _check(name, raw) -> None:
    t0 = time.perf_counter()
    try:
        cfg = from_dict(raw, "fuzz")
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith("fuzz: ") and "\n" not in msg and len(msg) < 2000
        return
    out = compute(cfg, 4096, 4096, 141 * 2 ** 30)
    _finite(out)
    assert out["params_total"] > 0 and out["params_activated"] <= out["params_total"]
    assert json.dumps(out, allow_nan=False)
    assert time.perf_counter() - t0 < 5.0


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_configs_load_or_refuse_cleanly(case):
    _check(*case)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_configs_long_run(case):
    _check(*case)
