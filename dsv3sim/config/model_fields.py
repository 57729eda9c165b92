"""Typed reading of model-config values: every field's type, finiteness and upper bound, one line per error.

A config file is untrusted input. Each value the loader reads goes through one of the readers below, which
accept exactly one JSON type (an integer may be written as an integral float, ``6.0``; a boolean must be a
JSON boolean, never the string ``"true"``; floats must be finite) and raise ``ConfigError`` naming the model,
the field and the value. Sizes are bounded (``MODEL_LIMITS``) so that a typo such as ``num_hidden_layers: 1e9``
is refused at load instead of allocating or looping for hours; the limits sit far above every published model
(DeepSeek-V3: 61 layers, 7168 hidden, 256 experts; Kimi K2: 384 experts) and are raised for one run with the
flag ``dsv3sim --limit num_hidden_layers=4096 ...``, the environment variable
``DSV3SIM_MODEL_LIMITS="num_hidden_layers=4096,n_routed_experts=100000"`` or the ``limits=`` argument of ``from_dict`` / ``load_model_config``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dsv3sim.config.errors import ConfigError

# Upper bounds of the size fields (inclusive).
MODEL_LIMITS: Mapping[str, int] = MappingProxyType({
    "vocab_size": 4_194_304,
    "hidden_size": 131_072,
    "intermediate_size": 1_048_576,
    "moe_intermediate_size": 1_048_576,
    "shared_expert_intermediate_size": 1_048_576,
    "num_hidden_layers": 1024,
    "num_attention_heads": 4096,
    "num_key_value_heads": 4096,
    "head_dim": 4096,
    "q_lora_rank": 131_072,
    "kv_lora_rank": 131_072,
    "qk_nope_head_dim": 4096,
    "qk_rope_head_dim": 4096,
    "v_head_dim": 4096,
    "n_routed_experts": 65_536,
    "n_shared_experts": 1024,
    "num_experts_per_tok": 1024,
    "n_group": 65_536,
    "topk_group": 65_536,
    "first_k_dense_replace": 1024,
    "moe_layer_freq": 1024,
    "num_nextn_predict_layers": 16,
    "max_position_embeddings": 1 << 31,
    "sliding_window": 1 << 31,
})
LIMITS_ENV = "DSV3SIM_MODEL_LIMITS"
SHARED_LIMITS_ENV = "DSV3SIM_LIMITS"  # dsv3sim.config.checks.LIMITS_ENV


def effective_limits(limits: Mapping[str, int] | None = None) -> dict[str, int]:
    """``MODEL_LIMITS`` updated by ``DSV3SIM_MODEL_LIMITS`` (``field=N,...``) and then by ``limits``."""
    out = dict(MODEL_LIMITS)
    env = os.environ.get(LIMITS_ENV, "").strip()
    if env:
        for item in env.split(","):
            key, _, val = item.partition("=")
            key = key.strip()
            if key not in MODEL_LIMITS or not val.strip().isdigit():
                raise ConfigError(f"{LIMITS_ENV}: expected field=N with field one of {', '.join(MODEL_LIMITS)}, "
                                  f"got {item.strip()!r}")
            out[key] = int(val)
    out.update(_shared_limits())
    for k, v in (limits or {}).items():
        if k not in MODEL_LIMITS:
            raise ConfigError(f"limits: unknown field {k!r}; known: {', '.join(MODEL_LIMITS)}")
        out[k] = int(v)
    return out


def _shared_limits() -> dict[str, int]:
    """Model-field entries of ``DSV3SIM_LIMITS``, which ``dsv3sim --limit NAME=N`` sets for one command
    (``dsv3sim.config.checks`` owns that variable and accepts these field names too)."""
    out: dict[str, int] = {}
    for item in filter(None, (x.strip() for x in os.environ.get(SHARED_LIMITS_ENV, "").split(","))):
        key, _, val = item.partition("=")
        key = key.strip()
        if key in MODEL_LIMITS:
            try:
                n = float(val)
            except ValueError:
                n = float("nan")
            if not math.isfinite(n) or n < 1 or n != int(n):
                raise ConfigError(f"limit {key}={val.strip()!r}: expected a positive integer")
            out[key] = int(n)
    return out


def check_limit(name: str, field: str, value: int, limits: Mapping[str, int]) -> None:
    lim = limits.get(field)
    if lim is not None and value > lim:
        raise ConfigError(f"{name}: field '{field}' = {value} exceeds the limit {lim} (raise it with "
                          f"`dsv3sim --limit {field}=N ...` or {LIMITS_ENV}=\"{field}=N\" if the model really is that large)")


def read_int(name: str, field: str, v: Any) -> int:
    """An integer (an integral finite float such as 6.0 or 1e3 is accepted as the integer it denotes)."""
    if isinstance(v, bool):
        raise ConfigError(f"{name}: field '{field}' must be an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    raise ConfigError(f"{name}: field '{field}' must be an integer, got {v!r}")


def read_float(name: str, field: str, v: Any) -> float:
    """A finite number (booleans, strings, NaN and infinities refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name}: field '{field}' must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ConfigError(f"{name}: field '{field}' must be finite, got {v!r}")
    return f


def _read_instance(name: str, field: str, v: Any, typ: type, what: str) -> Any:
    """``v`` itself when it is a ``typ``; otherwise one line saying the field must be ``what``."""
    if not isinstance(v, typ):
        raise ConfigError(f"{name}: field '{field}' must be {what}, got {v!r}")
    return v


def read_bool(name: str, field: str, v: Any) -> bool:
    return _read_instance(name, field, v, bool, "true or false")


def read_str(name: str, field: str, v: Any) -> str:
    return _read_instance(name, field, v, str, "a string")


def read_dict(name: str, field: str, v: Any) -> dict:
    """A JSON object, or null (-> {})."""
    if v is None:
        return {}
    return _read_instance(name, field, v, dict, "an object or null")


def read_list(name: str, field: str, v: Any) -> list:
    return _read_instance(name, field, v, list, "a list")


def read_value(name: str, field: str, v: Any, kind: str) -> Any:
    """Dispatch on a ModelConfig field's annotation ("int", "int | None", "float", "bool", "str")."""
    base = kind.replace(" | None", "")
    if v is None and kind.endswith("| None"):
        return None
    if base == "int":
        return read_int(name, field, v)
    if base == "float":
        return read_float(name, field, v)
    if base == "bool":
        return read_bool(name, field, v)
    if base == "str":
        return read_str(name, field, v)
    return v
