"""Read and write expert-load files of serving engines, and dispatch on a path's format.

- EPLB (deepseek-ai/EPLB README): ``weight[layers, logical_experts]`` — here a JSON file
  ``{"weight": [[...], ...]}`` (load of each logical expert in each MoE layer).
- SGLang expert-distribution dump (sglang ``srt/eplb/expert_distribution.py``, read back by
  ``init_expert_location``): a ``torch.save``d dict with ``logical_count`` of shape
  [steps, layers, logical_experts] (or [layers, logical_experts]); loaded with
  ``torch.load(weights_only=True)`` so no code in the file runs.
- dsv3sim's own .npz trace (routing_trace.py).

Both engine formats hold loads only, so the traces they give have no per-token columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.routing_trace import RoutingTrace, read_npz_trace


def _check_loads(a: np.ndarray, where: str) -> np.ndarray:
    """[layers, experts] loads: finite, >= 0, and every layer with some load (an all-zero layer has no
    max/mean imbalance and nothing for EPLB to balance)."""
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{where}: expected a [layers, experts] matrix, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        bad = a[~np.isfinite(a) | (a < 0)]
        raise ConfigError(f"{where}: loads must be finite and >= 0, got {bad[:3].tolist()}")
    empty = np.flatnonzero(a.sum(axis=1) == 0)
    if empty.size:
        raise ConfigError(f"{where}: layer(s) {empty[:8].tolist()} have zero load on every expert "
                         "(nothing to balance; drop them or record more steps)")
    return a


def _as_matrix(v, where: str) -> np.ndarray:
    """A nested list of numbers (or a numeric array) as float64, refused with one line when ragged or not numeric."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{where}: expected a [layers, experts] matrix of numbers") from None
    return a


def read_eplb_json(path: str | Path) -> RoutingTrace:
    """EPLB ``{"weight": [[...]]}`` -> a load-only trace (layers numbered 0..L-1)."""
    from dsv3sim.config.checks import one_line, read_text

    try:
        d = json.loads(read_text(path, "EPLB load file", max_bytes=2**30))
    except (ValueError, RecursionError) as e:
        if type(e).__name__ == "ConfigError":
            raise
        raise ConfigError(f"{path}: not valid JSON ({one_line(e)})") from None
    if not isinstance(d, dict) or "weight" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ConfigError(f"{path}: EPLB load file needs a 'weight' key, found {keys}")
    w = _check_loads(_as_matrix(d["weight"], f"{path}: weight"), str(path))
    layers = d.get("layers", list(range(w.shape[0])))
    if (not isinstance(layers, list) or len(layers) != w.shape[0]
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in layers)):
        raise ConfigError(f"{path}: 'layers' must list {w.shape[0]} layer indices >= 0")
    layers = np.asarray(layers, dtype=np.int64)
    meta = {"source": "eplb", "source_path": str(path)}
    meta.update({k: v for k, v in d.items() if k not in ("weight", "layers")})
    return RoutingTrace(n_experts=w.shape[1], layers=layers, load_counts=w, meta=meta)


def write_eplb_json(loads: np.ndarray, path: str | Path, *, layers: np.ndarray | None = None,
                    extra: dict | None = None) -> Path:
    """Write [layers, experts] loads as EPLB's ``{"weight": ...}``; integral loads are written as ints."""
    w = _check_loads(np.asarray(loads, dtype=np.float64), "export")
    rows = w.astype(np.int64).tolist() if np.array_equal(w, np.round(w)) else w.tolist()
    d: dict = {"weight": rows}
    if layers is not None:
        d["layers"] = [int(x) for x in layers]
    if extra:
        d.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d) + "\n")
    return path


def read_sglang_pt(path: str | Path) -> RoutingTrace:
    """SGLang dump with ``logical_count`` [steps, layers, experts] (or [layers, experts]) -> load-only trace."""
    import pickle
    import zipfile

    import torch  # only this importer needs torch

    from dsv3sim.config.checks import check_limit

    p = Path(path)
    check_limit("file_bytes", p.stat().st_size, f"{p}: file size")
    if not zipfile.is_zipfile(p):  # torch.save has written zip archives since 1.6; older files are bare pickles
        raise ConfigError(f"{p}: not a torch.save zip archive (a bare pickle or another format); refused, since "
                         "only tensor-only files are read")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, KeyError, TypeError,
            zipfile.BadZipFile, OSError):
        # never pass the loader's own message on: it suggests unpickling arbitrary objects
        raise ConfigError(f"{p}: refused: holds objects other than tensors, dicts, lists and numbers, or is "
                         "corrupt (SGLang dumps are read as tensor-only files)") from None
    if not isinstance(d, dict) or "logical_count" not in d:
        keys = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
        raise ConfigError(f"{path}: SGLang dump needs a 'logical_count' entry, found {keys}")
    lc = d["logical_count"]
    if not isinstance(lc, torch.Tensor) or lc.is_complex() or lc.dtype == torch.bool:
        raise ConfigError(f"{path}: logical_count must be a real-valued tensor, got {type(lc).__name__}"
                         f"{'' if not isinstance(lc, torch.Tensor) else ' ' + str(lc.dtype)}")
    if lc.ndim not in (2, 3):
        raise ConfigError(f"{path}: logical_count must be [steps, layers, experts] or [layers, experts], got "
                         f"shape {tuple(lc.shape)}")
    c = np.asarray(lc.detach().cpu().double().numpy())
    if not np.isfinite(c).all() or (c < 0).any():
        raise ConfigError(f"{path}: logical_count must be finite and >= 0")
    steps = None
    if c.ndim == 3:
        steps = c
        c = c.sum(axis=0)  # [S, L, E] -> [L, E]
    _check_loads(c, str(path))
    meta = {"source": "sglang", "source_path": str(path)}
    r = d.get("rank")
    if isinstance(r, torch.Tensor) and r.numel() == 1:
        r = r.item()
    if isinstance(r, (int, float)) and not isinstance(r, bool) and float(r).is_integer():
        meta["rank"] = int(r)
    return RoutingTrace(n_experts=c.shape[1], layers=np.arange(c.shape[0]), load_counts=c, step_counts=steps,
                        meta=meta)


def write_sglang_pt(step_counts: np.ndarray, path: str | Path) -> Path:
    """Write [steps, layers, experts] counts as an SGLang-style dump (for round-trip tests and examples)."""
    import torch

    a = np.asarray(step_counts)
    if a.ndim != 3:
        raise ConfigError(f"SGLang logical_count must be [steps, layers, experts], got shape {a.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"logical_count": torch.from_numpy(a.astype(np.int64)), "rank": 0}, path)
    return path


def load_trace(path: str | Path) -> RoutingTrace:
    """Read any supported file: dsv3sim .npz trace, EPLB .json, SGLang .pt (chosen by suffix)."""
    p = Path(path)
    if not p.exists() and p.suffix.lower() != ".npz" and p.with_name(p.name + ".npz").exists():
        p = p.with_name(p.name + ".npz")  # `trace capture --out DIR/trace` wrote DIR/trace.npz
    if not p.exists():
        raise FileNotFoundError(f"no such trace file: {p}")
    suf = p.suffix.lower()
    if suf not in (".npz", ".json", ".pt", ".pth"):  # no known suffix: tell the formats apart by content
        with p.open("rb") as f:
            head = f.read(4)
        suf = {b"PK\x03\x04": ".npz"}.get(head, ".json" if head[:1] in (b"{", b"[") else suf)
    if suf == ".npz":
        return read_npz_trace(p)
    if suf == ".json":
        return read_eplb_json(p)
    if suf in (".pt", ".pth"):
        return read_sglang_pt(p)
    raise ConfigError(f"{p}: unknown trace format '{suf}' (expected .npz, EPLB .json or SGLang .pt)")


def load_loads(path: str | Path) -> np.ndarray:
    """[layers, experts] float64 expert loads of any supported file (tokens routed to each expert)."""
    return load_trace(path).loads()
