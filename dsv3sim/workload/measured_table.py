"""The component table a validation run writes and the measured step model reads (``measured_step``): its format
name and version, the profiled components of every rank, and ``load_table``, which checks a file before use.
Written by ``dsv3sim.validate.component_table``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dsv3sim.config.errors import ConfigError

FORMAT = "dsv3sim-component-table"
VERSION = 1
COMPONENTS = ("attn", "mlp_dense", "shared", "gate", "head", "embed", "glue")


class TableError(ConfigError):
    """A component table that cannot be used (missing keys, other layout than the scenario)."""


def load_table(path: str | Path) -> dict:
    """The component table at ``path`` (JSON, untrusted): its format and version, the keys the step model reads,
    and the optional transport times (finite, >= 0); ``TableError`` naming the file and the key otherwise."""
    p = Path(path)
    try:
        t = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TableError(f"component_table {p}: cannot read ({e})") from None
    if not isinstance(t, dict) or t.get("format") != FORMAT or t.get("version") != VERSION:
        raise TableError(f"component_table {p}: not a {FORMAT} v{VERSION} file")
    for k in ("ranks", "stages", "routing", "hidden", "elt_bytes", "tokens_per_microbatch", "row_bytes", "pp", "ep",
              "dp", "schedule", "microbatches"):
        if k not in t:
            raise TableError(f"component_table {p}: missing key {k!r}")
    for k in ("p2p_hop_s", "p2p_notify_s", "p2p_isend_s", "cores"):  # optional
        v = t.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise TableError(f"component_table {p}: {k} must be a finite number >= 0, got {v!r}")
    return t
