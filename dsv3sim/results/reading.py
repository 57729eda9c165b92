"""A result JSON read back: its typed groups in the shapes a reader wants, and the numbers derived from it when
it does not carry them. Readers of foreign JSON get empty values (None, {}, []) for a part that is absent or not
in the written shape; nothing is searched for under another key.

GPU-hours per trillion tokens = n_gpus x 1e12 / tokens_per_s / 3600 (DeepSeek-V3 report §1, Table 1: 180K)."""

from __future__ import annotations

from typing import Any

from dsv3sim.config.units import num
from dsv3sim.cost.pricing import gpu_hours_per_trillion_tokens
from dsv3sim.results import CommStats, LinkUtilisation, MemoryRow, NodesPerToken, group

FIELDS_LIMIT = 500
REFERENCES = ("measured", "published")  # what a validation row's prediction is compared with


def gpu_hours_per_trillion(result: dict) -> tuple[float | None, str]:
    """(GPU-hours per trillion tokens, how it was derived): the result's own, else from its GPUs and tokens/s."""
    if (v := num(result.get("gpu_hours_per_trillion_tokens"))) is not None:
        return v, "from the result"
    n, tps = num(result.get("n_gpus")), num(result.get("tokens_per_s"))
    if not (n and tps):
        return None, ""
    return gpu_hours_per_trillion_tokens(n, tps), f"= {n:g} GPUs x 1e12 tokens / {tps:.4g} tokens/s / 3600"


def scalar_fields(d, prefix: str = "", out: list | None = None) -> list[tuple[str, object]]:
    """Every scalar in the result as (dotted path, value), lists summarised by length; at most FIELDS_LIMIT."""
    out = [] if out is None else out
    if isinstance(d, dict):
        for k, v in d.items():
            if len(out) >= FIELDS_LIMIT:
                break
            scalar_fields(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(d, list):
        short = d and len(d) <= 8 and all(not isinstance(x, (dict, list)) for x in d)
        out.append((prefix, ", ".join(str(x) for x in d) if short else f"[{len(d)} items]"))
    else:
        out.append((prefix, d))
    return out


def memory_rows(result: dict) -> list[MemoryRow]:
    """The ``memory_per_gpu`` rows that are ``MemoryRow``s."""
    mem = result.get("memory_per_gpu")
    return [g for r in mem if (g := group(MemoryRow, r)) is not None] if isinstance(mem, list) else []


def hbm_bytes(result: dict) -> float | None:
    """The GPU's memory, as the first memory row states it."""
    return next((r.hbm_bytes for r in memory_rows(result) if r.hbm_bytes), None)


def as_matrix(x: Any) -> list[list[float]] | None:
    """A rectangular list of lists of numbers (layers x experts); a flat list of numbers is one row; else None."""
    if isinstance(x, list) and x and all(num(v) is not None for v in x):
        x = [x]
    if not isinstance(x, list) or not x or not all(isinstance(r, list) and len(r) == len(x[0]) for r in x):
        return None
    out = [[num(v) for v in r] for r in x]
    return None if not out[0] or any(v is None for r in out for v in r) else out  # type: ignore[return-value]


def node_counts(v) -> dict[int, float] | None:
    """{nodes: tokens} of ``nodes_per_token`` (``NodesPerToken``: ``hist[i]`` counts tokens reaching i+1)."""
    g = group(NodesPerToken, v)
    if g is None or not g.hist or any(num(x) is None for x in g.hist):
        return None
    return {i + 1: num(x) for i, x in enumerate(g.hist)}


def node_spread(counts: dict[int, float], limit: float | None) -> tuple[float, float, int]:
    """(mean nodes per token, share of tokens reaching more than ``limit`` nodes (0 without a limit), the most
    nodes a token reached) of ``node_counts``."""
    total = sum(counts.values())
    mean = sum(x * n for x, n in sorted(counts.items())) / total if total else 0
    over = sum(n for x, n in counts.items() if limit and x > limit)
    return mean, over / total if total else 0.0, max((x for x, n in counts.items() if n > 0), default=0)


def link_series(lu) -> tuple[dict[str, tuple], dict[str, tuple], dict[str, float]]:
    """(by_class series, by_node series named "node N cls", class averages) of a ``link_utilisation``; a series is
    (times, fractions of the link's bandwidth)."""
    if (g := group(LinkUtilisation, lu)) is None:
        return {}, {}, {}
    t = [num(x) for x in g.t_s]
    return ({str(c): (t, [num(x) for x in u]) for c, u in g.by_class.items()},
            {f"node {n} {c}": (t, [num(x) for x in u]) for n, cs in g.by_node.items() for c, u in cs.items()},
            {str(c): num(v) for c, v in g.average.items() if num(v) is not None})


def comm_stats(result: dict) -> dict[str, CommStats]:
    """``comm`` as {collective: ``CommStats``}; {} unless every entry is one."""
    c = {k: group(CommStats, v) for k, v in result["comm"].items()} if isinstance(result.get("comm"), dict) else {}
    return {} if None in c.values() else c


def validation_rows(result: dict) -> list[dict]:
    """The ``validation`` rows (a list, or ``{rows: [...]}``) with a prediction and a reference (REFERENCES), each
    with its relative error (predicted - reference) / reference where the row does not carry it."""
    v = result.get("validation")
    out = []
    for r in v.get("rows", []) if isinstance(v, dict) else v or []:
        pred, kind = num(r.get("predicted")), next((k for k in REFERENCES if num(r.get(k)) is not None), None)
        if pred is None or kind is None:
            continue
        ref, err = num(r[kind]), num(r.get("rel_error"))
        out.append({"name": str(r.get("name")), "predicted": pred, "reference": ref, "kind": kind,
                    "source": str(r.get("source", "")), "unit": str(r.get("unit", "")),
                    "note": str(r.get("note") or ""), "error": err if err is not None else (pred - ref) / ref if ref
                    else None})
    return out


def matrix_cases(result: dict) -> list[dict]:
    """The cases of a validation matrix (``benchmarks/validate_error.py``) that have both step times."""
    cases = result.get("cases")
    return [c for c in cases if isinstance(c, dict) and num(c.get("measured_step_s"))
            and num(c.get("predicted_step_s")) is not None] if isinstance(cases, list) else []


def step_errors(cases: list[dict]) -> list[float]:
    """The signed relative step error (predicted - measured) / measured of each of ``matrix_cases``."""
    return [(c["predicted_step_s"] - c["measured_step_s"]) / c["measured_step_s"] for c in cases]


def component_errors(cases: list[dict]) -> dict[str, list[float]]:
    """Signed relative error of each named component across the cases that measured it."""
    out: dict[str, list[float]] = {}
    for c in cases:
        for r in c.get("components") or []:
            if isinstance(r, dict) and num(r.get("error")) is not None:
                out.setdefault(str(r.get("name")), []).append(num(r["error"]))
    return out
