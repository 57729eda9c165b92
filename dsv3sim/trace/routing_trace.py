"""RoutingTrace: which experts each token chose in each MoE layer, and its .npz serialisation.

One trace = per MoE layer ``l`` and token ``t`` the top-k expert ids and gate weights, plus the token's
sequence and position; metadata (model, EP layout, seed, node limit) travels as JSON inside the file.
A trace may instead carry only per-layer expert loads (imported from EPLB / SGLang, which record counts,
not tokens); then the per-token arrays are None. The on-disk layout is documented in FORMAT.md.

Dimension legend: L = MoE layers in the trace, T = tokens, k = experts per token, E = routed experts,
S = load-recording steps (SGLang dumps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.layout import EpLayout, group_of

FORMAT_NAME = "dsv3sim-routing-trace"
FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class RoutingTrace:
    """Routing decisions (or only expert loads) of one model over some tokens."""

    n_experts: int
    layers: np.ndarray                      # [L] model layer index of each traced MoE layer
    expert_ids: np.ndarray | None = None    # [L, T, k] int
    weights: np.ndarray | None = None       # [L, T, k] float32 gate weights (after norm / scaling)
    seq_ids: np.ndarray | None = None       # [T] which sequence each token belongs to
    positions: np.ndarray | None = None     # [T] position inside its sequence
    token_ids: np.ndarray | None = None     # [T] vocabulary id (captured traces only)
    load_counts: np.ndarray | None = None   # [L, E] loads when there are no per-token arrays
    step_counts: np.ndarray | None = None   # [S, L, E] loads per recording step (SGLang), optional
    n_group: int = 1
    layout: EpLayout | None = None
    node_limit: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_scalars()
        self._check_dtypes()
        if self.expert_ids is None and self.load_counts is None:
            raise ConfigError("a RoutingTrace needs expert_ids [L,T,k] or load_counts [L,E]")
        if self.expert_ids is not None:
            self._check_token_shapes()
        self._check_count_shapes()
        if self.layout is not None and self.layout.n_experts != self.n_experts:
            raise ConfigError(f"layout has {self.layout.n_experts} experts, trace has {self.n_experts}")
        if self.n_experts % self.n_group:
            raise ConfigError(f"n_experts ({self.n_experts}) must be divisible by n_group ({self.n_group})")

    def _check_scalars(self) -> None:
        for name in ("n_experts", "n_group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"trace {name} must be a positive integer, got {v!r}")
        v = self.node_limit
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ConfigError(f"trace node_limit must be a positive integer or null, got {v!r}")

    def _check_dtypes(self) -> None:
        """Integer layers, ids and token columns; numeric, non-negative weights and counts."""
        if not isinstance(self.layers, np.ndarray) or self.layers.ndim != 1 or self.layers.dtype.kind not in "iu":
            raise ConfigError(f"trace layers must be a 1-D integer array, got {getattr(self.layers, 'shape', '?')} "
                             f"{getattr(self.layers, 'dtype', type(self.layers).__name__)}")
        for name in ("expert_ids", "seq_ids", "positions", "token_ids"):
            _check_array(getattr(self, name), name, "iu")
        for name in ("weights", "load_counts", "step_counts"):
            _check_array(getattr(self, name), name, "iuf")
        for name in ("load_counts", "step_counts"):
            a = getattr(self, name)
            if a is not None and a.size and a.min() < 0:
                raise ConfigError(f"trace {name} must be >= 0, got a minimum of {a.min()}")

    def _check_token_shapes(self) -> None:
        """expert_ids [L, T, k] with ids in range; weights like it; per-token columns [T]."""
        ids, L = self.expert_ids, len(self.layers)
        if ids.ndim != 3 or ids.shape[0] != L:
            raise ConfigError(f"expert_ids must be [L={L}, T, k], got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_experts):
            raise ConfigError(f"expert ids must lie in [0, {self.n_experts}), got [{ids.min()}, {ids.max()}]")
        if self.weights is not None and self.weights.shape != ids.shape:
            raise ConfigError(f"weights shape {self.weights.shape} != expert_ids shape {ids.shape}")
        for name in ("seq_ids", "positions", "token_ids"):
            a = getattr(self, name)
            if a is not None and a.shape != (ids.shape[1],):
                raise ConfigError(f"{name} must be [T={ids.shape[1]}], got shape {a.shape}")

    def _check_count_shapes(self) -> None:
        L, E = len(self.layers), self.n_experts
        if self.step_counts is not None and (self.step_counts.ndim != 3 or self.step_counts.shape[1:] != (L, E)):
            raise ConfigError(f"step_counts must be [S, L={L}, E={E}], got {self.step_counts.shape}")
        if self.load_counts is not None and self.load_counts.shape != (L, E):
            raise ConfigError(f"load_counts must be [L={L}, E={E}], got {self.load_counts.shape}")

    # --- shapes -----------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def has_tokens(self) -> bool:
        return self.expert_ids is not None

    @property
    def n_tokens(self) -> int:
        return 0 if self.expert_ids is None else self.expert_ids.shape[1]

    @property
    def topk(self) -> int:
        return 0 if self.expert_ids is None else self.expert_ids.shape[2]

    # --- derived columns --------------------------------------------------------------------------
    def loads(self) -> np.ndarray:
        """[L, E] float64: tokens routed to each expert (selections counted once each)."""
        if self.expert_ids is None:
            return np.asarray(self.load_counts, dtype=np.float64)
        L, E = self.n_layers, self.n_experts
        flat = self.expert_ids.reshape(L, -1) + (np.arange(L)[:, None] * E)  # [L, T*k] offset per layer
        return np.bincount(flat.ravel(), minlength=L * E).reshape(L, E).astype(np.float64)

    def group_ids(self) -> np.ndarray | None:
        return None if self.expert_ids is None else group_of(self.expert_ids, self.n_experts, self.n_group)

    def gpu_ids(self) -> np.ndarray | None:
        if self.expert_ids is None or self.layout is None:
            return None
        return self.layout.gpu_of(self.expert_ids)

    def node_ids(self) -> np.ndarray | None:
        if self.expert_ids is None or self.layout is None:
            return None
        return self.layout.node_of(self.expert_ids)

    def full_meta(self) -> dict[str, Any]:
        m = dict(self.meta)
        m.update(format=FORMAT_NAME, version=FORMAT_VERSION, n_experts=self.n_experts, n_group=self.n_group,
                 layers=[int(x) for x in self.layers], topk=self.topk, n_tokens=self.n_tokens,
                 layout=None if self.layout is None else self.layout.to_dict(), node_limit=self.node_limit)
        return m


def _check_array(a: np.ndarray | None, name: str, kinds: str) -> None:
    """A numeric array of the given dtype kinds ('i' int, 'u' unsigned, 'f' float) with finite values only."""
    if a is None:
        return
    if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
        raise ConfigError(f"trace {name} must be a numeric array ({kinds}), got "
                         f"{getattr(a, 'dtype', type(a).__name__)}")
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise ConfigError(f"trace {name} holds NaN or infinite values")


def open_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, refused with one line when it is not a sound NumPy zip: not a zip, a member
    that is not an array, pickled objects, or more uncompressed bytes than the ``file_bytes`` limit (checked
    from the zip directory before anything is decompressed)."""
    import zipfile

    from dsv3sim.config.checks import check_limit, one_line

    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            total = sum(i.file_size for i in zf.infolist())
        check_limit("file_bytes", total, f"{p}: uncompressed size of the .npz")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, NotImplementedError) as e:
        if type(e).__name__ == "ConfigError":
            raise
        raise ConfigError(f"{p}: not a readable .npz archive ({one_line(e)})") from None


def _small_int(a: np.ndarray, hi: int) -> np.ndarray:
    return a.astype(np.int16 if hi < 2 ** 15 else np.int32)


def save_trace(trace: RoutingTrace, path: str | Path) -> Path:
    """Write ``trace`` as a compressed .npz (columns documented in FORMAT.md); returns the path."""
    path = Path(path)
    cols: dict[str, np.ndarray] = {"meta": np.array(json.dumps(trace.full_meta(), sort_keys=True)),
                                   "layers": np.asarray(trace.layers, dtype=np.int32)}
    E = trace.n_experts
    if trace.expert_ids is not None:
        cols["expert_ids"] = _small_int(trace.expert_ids, E)
        cols["group_ids"] = _small_int(trace.group_ids(), trace.n_group)
        if trace.weights is not None:
            cols["weights"] = trace.weights.astype(np.float32)
        for name in ("seq_ids", "positions", "token_ids"):
            a = getattr(trace, name)
            if a is not None:
                cols[name] = a.astype(np.int32)
        if trace.layout is not None:
            cols["gpu_ids"] = _small_int(trace.gpu_ids(), trace.layout.ep)
            cols["node_ids"] = _small_int(trace.node_ids(), trace.layout.n_nodes)
    else:
        cols["load_counts"] = np.asarray(trace.load_counts, dtype=np.float64)
    if trace.step_counts is not None:
        cols["step_counts"] = np.asarray(trace.step_counts, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file handle keeps numpy from appending ".npz" to other suffixes
        np.savez_compressed(f, **cols)
    return path


def _read_meta(path, cols: dict) -> dict:
    """The trace's JSON ``meta`` (popped from ``cols``): the format name checked, n_experts and layers present."""
    if "meta" not in cols:
        raise ConfigError(f"{path}: not a dsv3sim routing trace (no 'meta' array); arrays: {sorted(cols)}")
    try:
        meta = json.loads(str(cols.pop("meta")))
    except (ValueError, RecursionError):
        raise ConfigError(f"{path}: the trace's meta is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ConfigError(f"{path}: format {fmt!r}, expected {FORMAT_NAME!r}")
    if "layers" not in cols or "n_experts" not in meta:
        raise ConfigError(f"{path}: a routing trace needs a 'layers' array and meta n_experts")
    return meta


def read_npz_trace(path: str | Path) -> RoutingTrace:
    """Read a trace written by :func:`save_trace`; checks the stored group/gpu/node columns against the ids."""
    cols = open_npz(path)
    meta = _read_meta(path, cols)
    try:
        layout = EpLayout.from_dict(meta["layout"]) if meta.get("layout") else None
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: meta layout is malformed ({e!r})") from None
    ids = cols.get("expert_ids")
    if ids is not None and (ids.ndim != 3 or 0 in ids.shape):
        raise ConfigError(f"{path}: expert_ids must be a non-empty [layers, tokens, k] array, got shape {ids.shape}")
    for name in ("layers", "expert_ids"):
        if name in cols and cols[name].dtype.kind not in "iu":
            raise ConfigError(f"{path}: {name} must be integers, got {cols[name].dtype}")
    tr = RoutingTrace(
        n_experts=meta["n_experts"], layers=cols["layers"].astype(np.int64),
        expert_ids=None if ids is None else ids.astype(np.int64),
        weights=cols.get("weights"), seq_ids=cols.get("seq_ids"), positions=cols.get("positions"),
        token_ids=cols.get("token_ids"), load_counts=cols.get("load_counts"), step_counts=cols.get("step_counts"),
        n_group=meta.get("n_group", 1), layout=layout, node_limit=meta.get("node_limit"),
        meta={k: v for k, v in meta.items() if k not in ("format", "version", "layers", "layout")},
    )
    for name, derived in (("group_ids", tr.group_ids), ("gpu_ids", tr.gpu_ids), ("node_ids", tr.node_ids)):
        if name in cols and not np.array_equal(cols[name], derived()):
            raise ConfigError(f"{path}: stored {name} disagree with expert_ids and the layout in meta")
    return tr
