"""Kernel-time predictor: measured where measured, interpolated between measured shapes, scaled to other GPUs.

No torch; reads the committed tables (``profiles/<gpu>/kernels.csv``) once per process.

How (details and accuracy in ``NOTES.md``):
1. ``measured``: the query's shape is a row of the base GPU's table (median of the rows if repeated).
2. ``interpolated``: efficiency ``eff = t_roofline / t_measured`` with
   ``t_roofline = max(FLOPs / peak_FLOPs(dtype), bytes / HBM_bandwidth)`` (METHOD.md's "two numbers") is
   interpolated multilinearly in log(shape) space, log(eff) as the value: first along the op's size key within
   a series that matches the other keys exactly (e.g. the GEMMs of one weight [N, K] over M), else on the
   lattice over all keys. Outside the measured range eff is held at the edge value (saturation).
   Then ``t = t_roofline / eff``. For FP8 GEMMs the roofline's FLOPs are wave-quantised (``waves.py``: 128 x 128
   tiles in waves of one tile per SM), so efficiency is smooth where time steps with the wave count.
   Off the lattice's series, the interpolation is corrected by the residuals of nearby random shapes measured
   for the purpose (``residual.py``, ``profiles/<gpu>/scatter.csv``); a scatter shape itself is ``measured``.
3. ``scaled``: for a GPU without its own table, the H200's efficiency at that shape is applied to that GPU's
   roofline (peak and bandwidth from ``dsv3sim.config.hardware``), and the time is floored at the smallest time
   measured for that op on the H200 (launch latency does not shrink with a bigger chip). The same rule gives
   the time with only ``sms`` of the SMs computing: peak x sms/n_sms; HBM bandwidth kept while sms >= n_sms/2
   (a Hopper saturates HBM with about half its SMs), else scaled by sms/(n_sms/2).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.hardware import GpuSpec, get_gpu
from dsv3sim.profile.residual import Residuals
from dsv3sim.profile.table import Row, profile_dir, read_rows
from dsv3sim.profile.waves import FP8_TILE, gemm_work

BASE_GPU = "H200"
SOURCES = ("measured", "interpolated", "scaled")

# op -> (interpolation keys, size key last; keys that must match exactly; roofline compute class)
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "gemm": (("n", "k", "m"), (), "tensor"),
    "grouped_gemm": (("n", "k", "e", "m"), ("dist", "impl"), "tensor"),
    "attn_prefill": (("h", "s"), ("dqk", "dv"), "tensor16"),
    "attn_prefill_fwdbwd": (("h", "s"), ("dqk", "dv"), "tensor16"),
    "attn_decode": (("h", "b", "t"), ("dc", "dr"), "tensor16"),
    "attn_decode_gqa": (("h", "b", "t"), ("kvh", "d"), "tensor16"),
    "rmsnorm": (("n", "m"), (), "vector"),
    "swiglu": (("n", "m"), (), "vector"),
    "quant_fp8": (("n", "m"), (), "vector"),
    "rope": (("h", "m"), ("d",), "vector"),
    "gate": (("m",), ("n", "k"), "tensor16"),
    "embedding": (("m",), ("n", "k"), "vector"),
    "adamw": (("n",), (), "vector"),
    "shared_expert": (("m",), ("n", "k"), "tensor"),
    # the model's own functions (nn_ops.py)
    "nn_rmsnorm": (("n", "m"), (), "vector"),
    "nn_rope": (("h", "m"), ("d",), "vector"),
    "nn_gate": (("m",), ("n", "k"), "tensor16"),
    "nn_routed_experts": (("e", "m"), ("n", "k"), "tensor"),
    "nn_shared_expert": (("m",), ("n", "k"), "tensor16"),
    "nn_attn_decode": (("h", "b", "t"), (), "tensor16"),
    "nn_attn_prefill": (("h", "s"), (), "tensor16"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "grouped_gemm": {"dist": "uniform"}, "attn_prefill": {"b": 1, "dqk": 192, "dv": 128},
    "attn_prefill_fwdbwd": {"b": 1, "dqk": 192, "dv": 128}, "attn_decode": {"dc": 512, "dr": 64},
    "rope": {"d": 64}, "gate": {"n": 256, "k": 7168}, "embedding": {"n": 7168, "k": 129280},
    "shared_expert": {"n": 2048, "k": 7168}, "nn_rope": {"d": 64}, "nn_gate": {"n": 256, "k": 7168},
    "nn_routed_experts": {"n": 2048, "k": 7168}, "nn_shared_expert": {"n": 2048, "k": 7168},
    "nn_attn_prefill": {"b": 1},
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Prediction:
    time_s: float
    tflops: float
    source: str  # measured | interpolated | scaled
    gpu: str
    base_gpu: str  # whose measurements it comes from
    flops: float
    bytes: float
    efficiency: float  # t_roofline / time on the base GPU
    error90: float | None = None  # relative half-width of the 90 % band (residual.py eq. 2); None: not estimated

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


# --------------------------------------------------------------------- FLOPs and bytes (ops.py conventions)


class NotMeasured(ValueError):
    """Nothing measured to answer from: no profile table for the GPU, the (op, dtype) not profiled, or no
    measurement with the asked fixed keys. Callers with another model (the roofline) catch exactly this."""


def flops_bytes(op: str, dtype: str, s: dict[str, Any]) -> tuple[float, float]:
    """The same counts ``ops.py`` records, from the shape alone (needed for unmeasured shapes)."""
    eb = 1 if dtype == "fp8" else (4 if dtype == "fp32" else 2)
    for counts in (_matmul_counts, _attention_counts, _vector_counts):
        fb = counts(op, dtype, eb, s.get)
        if fb is not None:
            return fb
    raise ConfigError(f"unknown op {op!r}; known: {', '.join(OPS)}")


def _matmul_counts(op: str, dtype: str, eb: int, g) -> tuple[float, float] | None:
    if op == "gemm":
        m, n, k = g("m"), g("n"), g("k")
        extra = 2 * m * n + 4 * (m * k / 128 + n * k / 16384) if dtype == "fp8" else m * n * eb
        return 2.0 * m * n * k, (m * k + n * k) * eb + extra
    if op == "grouped_gemm":
        tot = g("e") * g("m")
        return 2.0 * tot * g("n") * g("k"), (tot * g("k") + g("e") * g("n") * g("k")) * eb + tot * g("n") * 2
    if op == "nn_routed_experts":
        tot, n, k = g("e") * g("m"), g("n", 2048), g("k", 7168)
        return 6.0 * tot * n * k, (tot * k + 3 * g("e") * n * k) * eb + 2 * tot * k + 4 * tot * n
    if op in ("shared_expert", "nn_shared_expert"):
        m, n, k = g("m", 0), g("n", 2048), g("k", 7168)
        return 6.0 * m * n * k, (m * k + 3 * n * k) * eb + 2 * m * k + 4 * m * n
    return None


def _attention_counts(op: str, dtype: str, eb: int, g) -> tuple[float, float] | None:
    if op in ("attn_prefill", "attn_prefill_fwdbwd"):
        b, sq, h, dqk, dv = g("b", 1), g("s"), g("h"), g("dqk", 192), g("dv", 128)
        f, by = 2.0 * b * h * sq * sq / 2 * (dqk + dv), 2.0 * b * h * sq * (2 * dqk + 2 * dv)
        return (3.5 * f, 3 * by) if op == "attn_prefill_fwdbwd" else (f, by)
    if op == "attn_decode":
        b, t, h, dc, dr = g("b"), g("t"), g("h"), g("dc", 512), g("dr", 64)
        return 2.0 * b * h * t * (2 * dc + dr), 2.0 * b * t * (dc + dr) + 2.0 * b * h * (2 * dc + dr)
    if op == "attn_decode_gqa":
        b, t, h, kvh, d = g("b"), g("t"), g("h"), g("kvh"), g("d")
        return 2.0 * b * h * t * 2 * d, 2.0 * b * t * kvh * 2 * d + 2.0 * b * h * d * 2
    if op == "nn_attn_decode":
        b, t, h = g("b"), g("t"), g("h")
        return 2.0 * b * h * t * 1088 + 2.0 * b * h * 512 * 256, 2.0 * b * t * 576 + 2.0 * h * 256 * 512
    if op == "nn_attn_prefill":
        b, sq, h = g("b", 1), g("s"), g("h")
        return 2.0 * b * h * sq * sq / 2 * 320 + 2.0 * b * sq * 512 * h * 256, 2.0 * b * sq * (h * 192 + 576 + h * 128)
    return None


def _vector_counts(op: str, dtype: str, eb: int, g) -> tuple[float, float] | None:
    """Element-wise and small ops of m rows x n columns (``nn_`` variants count the same)."""
    op = op.removeprefix("nn_")
    m, n = g("m", 0), g("n", 0)
    counts = {
        "rmsnorm": lambda: (4.0 * m * n, 4.0 * m * n + 2 * n),
        "swiglu": lambda: (5.0 * m * n, 6.0 * m * n),
        "quant_fp8": lambda: (3.0 * m * n, 3.0 * m * n + 4 * m * n / 128),
        "rope": lambda: (3.0 * m * g("h") * g("d", 64), 4.0 * m * g("h") * g("d", 64)),
        "gate": lambda: (2.0 * m * g("n", 256) * g("k", 7168),
                         2.0 * m * g("k", 7168) + 2.0 * g("n", 256) * g("k", 7168) + 64 * m),
        "embedding": lambda: (0.0, 4.0 * m * g("n", 7168)),
        "adamw": lambda: (12.0 * n, 28.0 * n),
    }
    return counts[op]() if op in counts else None


def tile_of(op: str, dtype: str, shape: dict[str, Any]) -> tuple[int, int] | None:
    """The output tile whose waves quantise this op's work (``waves.py``), or None (plain FLOPs)."""
    if dtype == "fp8" and (op == "gemm" or (op == "grouped_gemm" and shape.get("impl") == "loop")):
        return FP8_TILE
    return None


def work_flops(op: str, dtype: str, shape: dict[str, Any], flops: float, sms: int) -> float:
    """FLOPs the roofline charges: wave-quantised for tiled FP8 GEMMs (one GEMM per expert for 'loop')."""
    tile = tile_of(op, dtype, shape)
    if tile is None:
        return flops
    one = gemm_work(int(shape["m"]), int(shape["n"]), int(shape["k"]), sms, tile)
    return one * int(shape.get("e", 1)) if op == "grouped_gemm" else one


def roofline_time(gpu: GpuSpec, op: str, dtype: str, flops: float, nbytes: float, sms: int | None = None,
                  shape: dict[str, Any] | None = None) -> float:
    """max(FLOPs / peak, bytes / bandwidth) with ``sms`` of the GPU's SMs computing; with ``shape``, FLOPs are
    the wave-quantised work of ``work_flops`` on those SMs."""
    if shape is not None:
        flops = work_flops(op, dtype, shape, flops, sms or gpu.n_sms)
    kind = OPS[op][2]
    if kind == "vector":
        peak = gpu.peak_flops.get("fp32", gpu.peak("bf16") / 8)
    elif kind == "tensor16":
        peak = gpu.peak("bf16")
    else:
        peak = gpu.peak("fp8" if dtype == "fp8" else ("fp32" if dtype == "fp32" else "bf16"))
    bw = gpu.hbm_bandwidth
    if sms is not None:
        if not 1 <= sms <= gpu.n_sms:
            raise ConfigError(f"sms must be in [1, {gpu.n_sms}] for {gpu.name}, got {sms}")
        peak *= sms / gpu.n_sms
        bw *= min(1.0, sms / (gpu.n_sms / 2))
    return max(flops / peak, nbytes / bw)


# --------------------------------------------------------------------- interpolation


Tree = Any  # float leaf (median log eff) or (sorted key values, {value: subtree})


def _tree(points: list[tuple[dict[str, Any], float]], dims: tuple[str, ...]) -> Tree:
    """Nested index of (shape, log eff) over ``dims`` (built once per table)."""
    if not dims:
        vals = sorted(v for _, v in points)
        return vals[len(vals) // 2]
    groups: dict[Any, list] = {}
    for pv in points:
        groups.setdefault(pv[0][dims[0]], []).append(pv)
    return tuple(sorted(groups)), {v: _tree(g, dims[1:]) for v, g in groups.items()}


def _interp(tree: Tree, dims: tuple[str, ...], q: dict[str, Any]) -> float:
    """Multilinear interpolation of log eff in log(key) space, clamped at the edges (recursive on dims)."""
    if not dims:
        return tree
    xs, sub = tree
    x = q[dims[0]]
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and xs[i] == x:
        return _interp(sub[x], dims[1:], q)
    if i == 0 or i == len(xs):  # outside the measured range: hold the edge value
        return _interp(sub[xs[0] if i == 0 else xs[-1]], dims[1:], q)
    lo, hi = xs[i - 1], xs[i]
    ylo, yhi = _interp(sub[lo], dims[1:], q), _interp(sub[hi], dims[1:], q)
    w = (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return ylo + w * (yhi - ylo)


@dataclass(frozen=True, kw_only=True, slots=True)
class _OpTable:
    """One (op, dtype) slice of a base GPU's table: points as (shape dict, log eff, time), with indexes."""

    points: tuple[tuple[dict[str, Any], float, float], ...]  # (shape, log_eff, time_s)
    t_min: float
    exact: dict[tuple, list[tuple[float, float]]]  # full key -> [(time, log eff)]
    series: dict[tuple, Tree]  # key without the size key -> tree over the size key (>= 2 sizes only)
    lattice: dict[tuple, Tree]  # fixed keys -> tree over all dims (lattice rows; all rows if none)


def make_optable(op: str, points: Iterable[tuple[dict[str, Any], float, float]], lattice_flags: Iterable[bool],
                 t_min: float) -> _OpTable:
    dims, fixed, _ = OPS[op]
    pts = tuple(points)
    flags = tuple(lattice_flags)
    exact: dict[tuple, list] = {}
    ser: dict[tuple, list] = {}
    lat: dict[tuple, list] = {}
    allp: dict[tuple, list] = {}
    for (shape, le, t), is_lat in zip(pts, flags):
        exact.setdefault(tuple(shape.get(k) for k in dims + fixed), []).append((t, le))
        ser.setdefault(tuple(shape.get(k) for k in dims[:-1] + fixed), []).append((shape, le))
        fk = tuple(shape.get(k) for k in fixed)
        allp.setdefault(fk, []).append((shape, le))
        if is_lat:
            lat.setdefault(fk, []).append((shape, le))
    series = {k: _tree(v, dims[-1:]) for k, v in ser.items() if len({s[dims[-1]] for s, _ in v}) >= 2}
    lattice = {k: _tree(lat.get(k) or v, dims) for k, v in allp.items()}
    return _OpTable(points=pts, t_min=t_min, exact=exact, series=series, lattice=lattice)


@functools.lru_cache(maxsize=8)
def _tables(base: str, path: str | None = None) -> dict[tuple[str, str], _OpTable]:
    spec = get_gpu(base)
    p = Path(path) if path else profile_dir(spec.name) / "kernels.csv"
    if not p.exists():
        raise NotMeasured(f"no profile table for {spec.name} at {p}; measure it with `dsv3sim profile`")
    rows = list(read_rows(str(p)))
    if not path:  # kernels-<part>.csv beside it: further measured op families (e.g. kernels-gqa.csv)
        for extra in sorted(p.parent.glob("kernels-*.csv")):
            rows += read_rows(str(extra))
    return build_tables(rows, spec)


def build_tables(rows: Iterable[Row], spec: GpuSpec) -> dict[tuple[str, str], _OpTable]:
    grouped: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        if r.op in OPS and r.set != "heldout" and r.time_s > 0:
            grouped.setdefault((r.op, r.dtype), []).append(r)
    out = {}
    for (op, dt), rs in grouped.items():
        pts, flags = [], []
        for r in rs:
            shape = dict(r.shape)
            shape.update({k: v for k, v in DEFAULTS.get(op, {}).items() if k not in shape})
            if op.startswith("attn_prefill") or op == "nn_attn_prefill":
                shape["h"] = shape["h"] * shape.get("b", 1)  # cost ~ B*H: heads stand for batch too
            eff = roofline_time(spec, op, dt, r.flops, r.bytes, shape=shape) / r.time_s
            pts.append((shape, math.log(eff), r.time_s))
            flags.append(r.set == "lattice")
        out[(op, dt)] = make_optable(op, pts, flags, min(p[2] for p in pts))
    return out


def _efficiency(tab: _OpTable, op: str, q: dict[str, Any]) -> tuple[float, str, float | None]:
    """(eff, 'measured'|'series'|'lattice', measured time or None) on the base GPU."""
    dims, fixed, _ = OPS[op]
    same = tab.exact.get(tuple(q.get(k) for k in dims + fixed))
    if same:  # repeated measurements: the (upper) median row by time, its efficiency with it
        t, le = sorted(same)[len(same) // 2]
        return math.exp(le), "measured", t
    # a series matching every key but the size key, else the lattice (with the fixed keys matching)
    series = tab.series.get(tuple(q.get(k) for k in dims[:-1] + fixed))
    if series is not None:
        return math.exp(_interp(series, dims[-1:], q)), "series", None
    lat = tab.lattice.get(tuple(q.get(k) for k in fixed))
    if lat is None:
        raise NotMeasured(f"{op}: nothing measured with {', '.join(f'{k}={q.get(k)}' for k in fixed)}")
    return math.exp(_interp(lat, dims, q)), "lattice", None


# --------------------------------------------------------------------- scatter: exact hits and residuals


@dataclass(frozen=True, slots=True)
class _Scatter:
    """Random off-lattice measurements of one base GPU (``scatter.csv``), by (op, dtype)."""

    exact: dict[tuple, float]  # (op, dtype, full key) -> median time
    rows: dict[tuple, list[tuple[dict[str, Any], float]]]  # (op, dtype, fixed key) -> [(shape, time)]


@functools.lru_cache(maxsize=8)
def _scatter(base: str) -> _Scatter:
    p = profile_dir(base) / "scatter.csv"
    exact: dict[tuple, list[float]] = {}
    rows: dict[tuple, list] = {}
    if p.exists():
        for r in read_rows(str(p)):
            if r.op not in OPS or r.time_s <= 0:
                continue
            dims, fixed, _ = OPS[r.op]
            shape = {**DEFAULTS.get(r.op, {}), **dict(r.shape)}
            exact.setdefault((r.op, r.dtype, *(shape.get(k) for k in dims + fixed)), []).append(r.time_s)
            rows.setdefault((r.op, r.dtype, *(shape.get(k) for k in fixed)), []).append((shape, r.time_s))
    return _Scatter(exact={k: sorted(v)[len(v) // 2] for k, v in exact.items()}, rows=rows)


@functools.lru_cache(maxsize=64)
def _residuals(base: str, op: str, dtype: str, fixed_key: tuple) -> Residuals | None:
    """Residuals log(t / t_lattice) of the scatter points of one slice (built on first use: ~0.2 ms a point)."""
    pts = _scatter(base).rows.get((op, dtype, *fixed_key))
    if not pts:
        return None
    spec = get_gpu(base)
    tab = _tables(base, None)[(op, dtype)]
    shapes, res = [], []
    for shape, t in pts:
        eff, _, _ = _efficiency(tab, op, shape)
        flops, nbytes = flops_bytes(op, dtype, shape)
        shapes.append(shape)
        res.append(math.log(t / (roofline_time(spec, op, dtype, flops, nbytes, shape=shape) / eff)))
    return Residuals.build(OPS[op][0], shapes, res)


@functools.lru_cache(maxsize=16)
def _has_table(name: str) -> bool:
    return (profile_dir(name) / "kernels.csv").exists()


def kernel_time(gpu: str, op: str, dtype: str = "bf16", *, sms: int | None = None, table: str | None = None,
                base: str | None = None, **shape: Any) -> Prediction:
    """Predicted time of one ``op`` at ``shape`` on ``gpu``; see ``_kernel_time`` (results are cached)."""
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in shape.items()))
    return _kernel_time_cached(gpu, op, dtype, sms, table, base, items)


@functools.lru_cache(maxsize=1 << 16)
def _kernel_time_cached(gpu, op, dtype, sms, table, base, items) -> Prediction:
    return _kernel_time(gpu, op, dtype, sms=sms, table=table, base=base, **dict(items))


def _kernel_time(gpu: str, op: str, dtype: str = "bf16", *, sms: int | None = None, table: str | None = None,
                 base: str | None = None, **shape: Any) -> Prediction:
    """Predicted time of one ``op`` at ``shape`` on ``gpu`` (see the module docstring for how).

    gemm: m, n, k (C[M,N] = A[M,K] B[K,N]); grouped_gemm: e experts, m tokens each, n, k (or tokens=[...]);
    attn_prefill[_fwdbwd]: s, h, b; attn_decode: b, t, h; rmsnorm/swiglu/quant_fp8: m, n; rope: m, h;
    gate/embedding/shared_expert: m; adamw: n parameters. ``sms``: SMs computing (default all).
    ``table``/``base``: read another CSV / treat it as measured on ``base`` (tests, what-ifs).
    """
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    target = get_gpu(gpu)
    q = dict(DEFAULTS.get(op, {}))
    q.update({k: v for k, v in shape.items() if v is not None})
    if op == "grouped_gemm":
        tokens = _grouped_tokens(q, dtype)
        if tokens is not None and len(set(tokens)) > 1:
            return _skewed_grouped(gpu, dtype, [int(t) for t in tokens], sms=sms, table=table, base=base,
                                   **{k: q[k] for k in ("n", "k", "impl") if k in q})
    _check_dims(op, q, shape)
    flops, nbytes = flops_bytes(op, dtype, q)
    qi = dict(q)
    if op.startswith("attn_prefill") or op == "nn_attn_prefill":
        qi["h"] = q["h"] * q.get("b", 1)
    base = get_gpu(base).name if base else (target.name if _has_table(target.name) else BASE_GPU)
    tabs = _tables(base, table)
    if (op, dtype) not in tabs:
        raise NotMeasured(f"{op} {dtype}: not in the {base} profile; measured: "
                          f"{', '.join(sorted(f'{o}/{d}' for o, d in tabs))}")
    base_spec = get_gpu(base)
    on_base = base_spec.name == target.name and sms in (None, target.n_sms)
    eff, src, t_meas, band = _base_efficiency(tabs[(op, dtype)], op, dtype, qi, base_spec, flops, nbytes,
                                              use_scatter=table is None, on_base=on_base)
    if on_base:  # the measurement itself, or the base GPU's roofline at the interpolated efficiency
        t = t_meas if t_meas is not None else roofline_time(target, op, dtype, flops, nbytes, shape=qi) / eff
    else:  # another GPU (or fewer SMs): its roofline at the base GPU's efficiency
        t = max(roofline_time(target, op, dtype, flops, nbytes, sms, shape=qi) / eff, tabs[(op, dtype)].t_min)
        src = "scaled"
    return Prediction(time_s=t, tflops=flops / t / 1e12, source=src, gpu=target.name, base_gpu=base_spec.name,
                      flops=flops, bytes=nbytes, efficiency=eff,
                      error90=band if src == "interpolated" else None)  # scaled: the band says nothing of scaling


def _grouped_tokens(q: dict[str, Any], dtype: str) -> list | None:
    """A grouped GEMM's per-expert ``tokens`` (popped from ``q``); equal counts become its e and m; default impl."""
    tokens = q.pop("tokens", None)
    q.setdefault("impl", "grouped" if dtype == "bf16" else "loop")
    if tokens is not None and len(set(tokens)) == 1:
        q["e"], q["m"] = len(tokens), int(tokens[0])
    return tokens


def _check_dims(op: str, q: dict[str, Any], shape: dict[str, Any]) -> None:
    dims, _, _ = OPS[op]
    missing = [k for k in dims if k not in q]
    if missing:
        raise ConfigError(f"{op} needs {', '.join(dims)}; missing {', '.join(missing)} (got {shape})")
    for k in dims:
        if not (isinstance(q[k], (int, float)) and q[k] > 0):
            raise ConfigError(f"{op}: {k} must be a positive number, got {q[k]!r}")


def _base_efficiency(tab: _OpTable, op: str, dtype: str, qi: dict[str, Any], base_spec: GpuSpec, flops: float,
                     nbytes: float, *, use_scatter: bool,
                     on_base: bool) -> tuple[float, str, float | None, float | None]:
    """(efficiency on the base GPU, 'measured' | 'interpolated', measured time or None, 90 % error band or None):
    the table's answer, replaced by a scatter measurement of the same shape, or corrected by the residuals of the
    nearby random shapes (``residual.py``) when it comes from the lattice."""
    eff, src, t_meas = _efficiency(tab, op, qi)
    band = None
    if src in ("series", "lattice") and use_scatter:
        dims, fixed, _ = OPS[op]
        hit = _scatter(base_spec.name).exact.get((op, dtype, *(qi.get(k) for k in dims + fixed)))
        if hit is not None:  # a random shape measured for the residuals: its own time
            t_meas, src = hit, "measured"
            eff = roofline_time(base_spec, op, dtype, flops, nbytes, shape=qi) / hit
        elif src == "lattice" or on_base:  # series answers need the residuals only for their band
            res = _residuals(base_spec.name, op, dtype, tuple(qi.get(k) for k in fixed))
            if res is not None:
                corr, band = res.estimate(qi)  # band: the spread of the nearby random shapes' residuals
                if src == "lattice":  # off every measured series: corrected by those residuals
                    eff *= math.exp(-corr)
    return eff, ("interpolated" if src in ("series", "lattice") else src), t_meas, band


def _skewed_grouped(gpu: str, dtype: str, tokens: list[int], **kw: Any) -> Prediction:
    """Unequal tokens per expert: t = sum_i t_uniform(E, m_i) / E, i.e. each expert costs what it costs inside a
    uniform group GEMM of the same E. Against the measured Zipf-skewed groups (grid.py 'zipf', E = 8..256) this
    is 0.83-0.98x of the measured time, where the mean-M uniform estimate is 0.65-0.90x."""
    e = len(tokens)
    if e == 0 or min(tokens) < 0:
        raise ConfigError(f"tokens must be a non-empty list of counts >= 0, got {tokens[:8]}...")
    parts = [kernel_time(gpu, "grouped_gemm", dtype, e=e, m=t, **kw) for t in tokens if t > 0]
    t = sum(p.time_s for p in parts) / e
    flops = sum(p.flops for p in parts) / e
    nbytes = sum(p.bytes for p in parts) / e
    p0 = parts[0]
    return Prediction(time_s=t, tflops=flops / t / 1e12, source="scaled" if p0.source == "scaled" else "interpolated",
                      gpu=p0.gpu, base_gpu=p0.base_gpu, flops=flops, bytes=nbytes,
                      efficiency=sum(p.efficiency for p in parts) / len(parts))
