"""Expert-load imbalance over training, per balancing mode, as plot-ready data.

Input: the JSON that ``dsv3sim train CONFIG --balance {aux-free,aux-loss,none} --json`` prints, whose
``history`` lists per step the ``expert_load`` of each MoE layer ([layers][experts] token counts, or a dict
layer -> counts). Output series per run: step, max_over_mean of each layer, the worst layer, the mean over
layers, and the training loss when present. DeepSeek-V3 §2.1.2 (aux-loss-free bias update) vs §2.1.2
"complementary sequence-wise auxiliary loss" vs no balancing is the comparison this is meant to plot.
Read back (``series_of``, ``series_under``): {label: (steps, worst-layer max/mean)} of either kind of file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.units import num
from dsv3sim.trace.stats import max_over_mean

QUANTITY = "expert_load_max_over_mean"  # what an imbalance file holds (and a train output's history entries)
MAX_FILE_BYTES = 20 * 2 ** 20  # larger JSON files under a traces folder are not read back


def _loads_of(entry: dict, where: str) -> np.ndarray:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a history entry must be an object, got {type(entry).__name__}")  # noqa: TRY004
    if "expert_load" in entry and isinstance(entry["expert_load"], dict) and not all(
            isinstance(k, str) and k.lstrip("-").isdigit() for k in entry["expert_load"]):
        raise ConfigError(f"{where}: expert_load keys must be layer numbers, got {sorted(entry['expert_load'])[:5]}")
    el = entry.get("expert_load")
    if el is None:
        raise ConfigError(f"{where}: a history entry has no 'expert_load' (keys: {sorted(entry)})")
    if isinstance(el, dict):
        el = [el[k] for k in sorted(el, key=lambda s: int(s))]
    try:
        a = np.asarray(el, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: expert_load must be [layers][experts] numbers") from None
    if not np.isfinite(a).all() or (a < 0).any():
        raise ConfigError(f"{where}: expert_load must be finite and >= 0")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or 0 in a.shape:
        raise ConfigError(f"{where}: expert_load must be [layers][experts], got shape {a.shape}")
    empty = np.flatnonzero(a.sum(axis=1) == 0)
    if empty.size:  # a training step routes every token: a layer with no load is not a train output
        raise ConfigError(f"{where}: expert_load of layer(s) {empty[:8].tolist()} is zero on every expert")
    return a


def imbalance_series(run: dict, label: str | None = None, window: int = 10) -> dict:
    """One ``dsv3sim train --json`` output -> {"label", "balance", "step", "max_over_mean", ...} lists.

    One step's batch is small, so its max/mean carries sampling noise (a floor above 1 even when balanced);
    ``*_windowed`` series use the loads summed over the last ``window`` steps (trailing window)."""
    if window <= 0:
        raise ConfigError(f"window must be > 0 steps, got {window}")
    hist = run.get("history")
    if not isinstance(hist, list) or not hist:
        raise ConfigError(f"train output needs a non-empty 'history' list, found keys {sorted(run)}")
    steps, per_layer, loss, loads = [], [], [], []
    for i, h in enumerate(hist):
        a = _loads_of(h, f"history[{i}]")
        steps.append(int(h.get("step", i)))
        per_layer.append([float(x) for x in max_over_mean(a)])
        loss.append(h.get("loss"))
        loads.append(a)
    m = np.asarray(per_layer)
    cum = np.cumsum(np.stack(loads), axis=0)                                  # [steps, L, E]
    win = cum - np.concatenate([np.zeros((window,) + cum.shape[1:]), cum[:-window]])[: len(cum)]
    mw = np.stack([max_over_mean(w) for w in win])                             # [steps, L]
    balance = run.get("balance") or (run.get("args") or {}).get("balance")
    return {
        "label": label or balance or "run",
        "balance": balance,
        "config": run.get("config") or run.get("model"),
        "seed": run.get("seed"),
        "step": steps,
        "max_over_mean_by_layer": per_layer,
        "max_over_mean_worst": [float(x) for x in np.nanmax(m, axis=1)],
        "max_over_mean_mean": [float(x) for x in np.nanmean(m, axis=1)],
        "window": window,
        "max_over_mean_worst_windowed": [float(x) for x in np.nanmax(mw, axis=1)],
        "max_over_mean_mean_windowed": [float(x) for x in np.nanmean(mw, axis=1)],
        "loss": loss if any(x is not None for x in loss) else None,
        "final_max_over_mean_worst": float(np.nanmax(m[-1])),
        "final_max_over_mean_worst_windowed": float(np.nanmax(mw[-1])),
    }


def _json_safe(x):
    """NaN/inf (max/mean of a layer that saw no tokens) as None, recursively: JSON has no NaN."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def imbalance_from_files(paths: list[str | Path], window: int = 10) -> dict:
    """Series of several train outputs (one per balancing mode) in one plot-ready dict."""
    runs = []
    for p in paths:
        try:
            with open(p) as f:
                run = json.load(f)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
            raise ConfigError(f"{p}: not a `dsv3sim train --json` output ({' '.join(str(e).split())[:120]})") from None
        if not isinstance(run, dict):
            raise ConfigError(f"{p}: expected a JSON object from `dsv3sim train --json`, got {type(run).__name__}")  # noqa: TRY004
        try:
            runs.append(_json_safe(imbalance_series(run, window=window)))
        except (TypeError, AttributeError, KeyError) as e:
            raise ConfigError(f"{p}: malformed train output ({type(e).__name__}: {e})") from None
    return {"quantity": QUANTITY, "definition": "max_e load / mean_e load per MoE layer",
            "source": "dsv3sim train --json history[].expert_load", "runs": runs}


def series_of(obj) -> dict[str, tuple[list, list]]:
    """{label: (steps, worst-layer max/mean)} (and "label (windowed)") of an ``imbalance_from_files`` output
    (``dsv3sim trace imbalance``) or of one ``dsv3sim train --json`` output; {} for anything else."""
    if not isinstance(obj, dict):
        return {}
    try:  # a train output without per-step expert loads (a dense model) has no series
        runs = [imbalance_series(obj)] if isinstance(obj.get("history"), list) else obj.get("runs")
    except ConfigError:
        return {}
    out: dict[str, tuple[list, list]] = {}
    for i, run in enumerate(runs if isinstance(runs, list) else []):
        if not (ys := run.get("max_over_mean_worst")):
            continue
        st = [num(x) for x in run.get("step", range(len(ys)))]
        label = str(run.get("label") or run.get("balance") or f"run {i}")
        label = label if label not in out else f"{label} ({i})"
        out[label] = (st, [num(y) for y in ys])
        if isinstance(yw := run.get("max_over_mean_worst_windowed"), list) and len(yw) == len(ys):
            out[f"{label} (windowed)"] = (st, [num(y) for y in yw])
    return out


def read_series(p: Path) -> dict[str, tuple[list, list]]:
    """``series_of`` one JSON file (none when it is large, unreadable or holds something else)."""
    try:
        text = p.read_text() if p.stat().st_size <= MAX_FILE_BYTES else ""
        return series_of(json.loads(text)) if QUANTITY in text else {}
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        return {}


def traces_folder() -> Path | None:
    """Where the imbalance series live: ./traces, else the repository's traces/; None without either."""
    here, repo = Path.cwd() / "traces", Path(__file__).resolve().parents[2] / "traces"
    return next((d for d in (here, repo) if d.is_dir()), None)


def series_under(folder: Path | None) -> tuple[dict[str, tuple[list, list]], list[str]]:
    """(the series of every JSON file under ``folder``, a label repeated in a later file suffixed with its stem;
    the names of the files that had one)."""
    series: dict[str, tuple[list, list]] = {}
    used: list[str] = []
    for p in sorted(folder.rglob("*.json")) if folder is not None and folder.is_dir() else ():
        s = read_series(p)
        series.update({m if m not in series else f"{m} ({p.stem})": v for m, v in s.items()})
        used += [p.name] if s else []
    return series, used
