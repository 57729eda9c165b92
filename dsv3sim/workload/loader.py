"""Load scenarios from ``scenarios/*.py``: ``PATH[:FUNC]``, a bare module name, or the default (V3 pre-training).

A scenario module defines functions returning a ``Scenario``, a ``dict[name, Scenario]`` or a list of them,
and may name one ``DEFAULT``. Modules are imported from their file path (importlib), never via sys.path.
"""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import Scenario

DEFAULT_SCENARIO = "deepseek_v3_pretrain.py"


def scenarios_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "scenarios"


def resolve(spec: str | None) -> tuple[Path, str | None]:
    """(module path, function name or None) of ``PATH[:FUNC]`` (default: the V3 pre-training scenario)."""
    spec = spec or DEFAULT_SCENARIO
    path_s, _, func = spec.partition(":")
    p = Path(path_s)
    cands = [p, scenarios_dir() / p, scenarios_dir() / (p.name if p.suffix == ".py" else p.name + ".py")]
    for c in cands:
        if c.is_file():
            return c, func or None
    known = sorted(x.name for x in scenarios_dir().glob("*.py"))
    raise ConfigError(f"scenario file {path_s!r} not found (in scenarios/: {', '.join(known)})")


def _import(path: Path, mod_name: str):
    sp = importlib.util.spec_from_file_location(mod_name, path)
    if sp is None or sp.loader is None:
        raise ConfigError(f"cannot import scenario file {path}")
    mod = importlib.util.module_from_spec(sp)
    try:
        sp.loader.exec_module(mod)
    except SyntaxError as e:
        raise ConfigError(f"scenario file {path}: line {e.lineno}: {e.msg}") from None
    return mod


def _function(mod, mod_name: str, path: Path, func: str | None):
    """The scenario function: ``func``, or the module's DEFAULT; ConfigError listing the module's functions."""
    fn = getattr(mod, func or "DEFAULT", None)
    if callable(fn) or (func is None and fn is not None):
        return fn
    fns = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))
           and getattr(getattr(mod, n), "__module__", None) == mod_name]
    if func is None:
        raise ConfigError(f"{path.name} has no DEFAULT; name a function: {', '.join(fns)}")
    raise ConfigError(f"{path.name} has no function {func!r} (functions: {', '.join(fns)})")


def load(spec: str | None) -> dict[str, Scenario]:
    """{name: Scenario} from ``PATH[:FUNC]``."""
    path, func = resolve(spec)
    mod_name = f"dsv3sim_scenario_{path.stem}"
    fn = _function(_import(path, mod_name), mod_name, path, func)
    try:
        out = fn()
    except TypeError as e:  # a wrong or missing keyword in the scenario's own code: name it and its line
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                     if Path(f.filename) == path.resolve() or f.filename == str(path)), "?")
        raise ConfigError(f"scenario file {path}: line {line}: {e}") from None
    if isinstance(out, Scenario):
        return {out.name: out}
    if isinstance(out, dict):
        return {str(k): v for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return {s.name: s for s in out}
    raise ConfigError(f"{path.name}:{getattr(fn, '__name__', fn)} returned {type(out).__name__}, not a Scenario")
