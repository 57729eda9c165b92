"""Predictor accuracy on the committed H200 tables (printed, committed as bench_predictor.out.txt).

1. Leave-one-out: every measured row whose removal still leaves measured neighbours on both sides along the
   op's size key (interior points: the predictor interpolates, it is not asked to extrapolate) is removed from
   its (op, dtype) series and predicted from the rest; error = predicted / measured - 1. Printed with the
   wave-quantised FP8 roofline (``waves.py``) and without it, side by side.
2. Scatter cross-validation: the random shapes of ``scatter.csv`` in two folds; each fold's lattice error is
   corrected by the other fold's residuals (``residual.py``), against no correction.
3. Held-out: ``heldout.csv`` (136 random shapes, the first grid) and ``heldout2.csv`` (645 random shapes drawn like
   the scatter with another seed, measured with it and not read until the predictor was frozen),
   predicted by ``kernel_time`` from everything else.

    .venv/bin/python benchmarks/bench_predictor.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.hardware import get_gpu
from dsv3sim.profile import predict as P
from dsv3sim.profile.residual import Residuals
from dsv3sim.profile.table import profile_dir, read_raw, read_rows


def _stats(errs: list[float]) -> dict[str, float]:
    a = sorted(abs(e) for e in errs)
    if not a:
        return {"n": 0}
    return {"n": len(a), "median": statistics.median(a), "p90": a[int(0.9 * (len(a) - 1))],
            "p99": a[int(0.99 * (len(a) - 1))], "max": a[-1], "within20": sum(x <= 0.2 for x in a) / len(a)}


def _fmt(s: dict[str, float]) -> str:
    if not s["n"]:
        return "(none)"
    return (f"{s['n']:5d} {s['median']:7.1%} {s['p90']:7.1%} {s['p99']:7.1%} {s['max']:7.1%} "
            f"{s['within20']:8.1%}")


def leave_one_out(gpu: str = "H200", waves: bool = True) -> dict[str, dict[str, float]]:
    spec = get_gpu(gpu)
    if not waves:  # ablation: plain FLOPs in every roofline
        tile_of, P.tile_of = P.tile_of, lambda *a: None
        try:
            return leave_one_out(gpu, True)
        finally:
            P.tile_of = tile_of
    tabs = P.build_tables(read_rows(str(profile_dir(gpu) / "kernels.csv")), spec)
    out: dict[str, dict[str, float]] = {}
    for (op, dt), tab in sorted(tabs.items()):
        dims, fixed, _ = P.OPS[op]
        size = dims[-1]
        errs = []
        series_of: dict[tuple, list] = {}
        for p in tab.points:
            series_of.setdefault(tuple(p[0].get(k) for k in dims[:-1] + fixed), []).append(p)
        for series in series_of.values():
            xs = {p[0][size] for p in series}
            for shape, _, t in series:
                if not (min(xs) < shape[size] < max(xs)):
                    continue  # an edge point: would need extrapolation
                # the predictor interpolates along the series (other keys equal) when it has >= 2 sizes left,
                # so the series without the point is the whole table it would use
                keep = tuple(p for p in series if p[0][size] != shape[size])
                sub = P.make_optable(op, keep, [True] * len(keep), tab.t_min)
                eff, _, _ = P._efficiency(sub, op, shape)
                prefill = op.startswith("attn_prefill") or op == "nn_attn_prefill"
                fl, by = P.flops_bytes(op, dt, {**shape, "b": 1} if prefill else shape)
                pred = P.roofline_time(spec, op, dt, fl, by, shape=shape) / eff
                errs.append(pred / t - 1)
        out[f"{op}/{dt}"] = _stats(errs)
    return out


def scatter_cv(gpu: str = "H200", folds: int = 2, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Per (op, dtype): |error| of the lattice alone and lattice + residual correction from the other folds."""
    import random

    sc = P._scatter(get_gpu(gpu).name)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (op, dt, *fk), pts in sorted(sc.rows.items(), key=str):
        res = P._residuals(get_gpu(gpu).name, op, dt, tuple(fk))
        rng = random.Random(seed)
        fold = [rng.randrange(folds) for _ in pts]
        raw, cor, inside = [], [], 0
        for f in range(folds):
            tr = [i for i in range(len(pts)) if fold[i] != f]
            sub = Residuals.build(res.dims, [pts[i][0] for i in tr], res.r[tr])
            for i in (i for i in range(len(pts)) if fold[i] == f):
                raw.append(math.exp(res.r[i]) - 1)
                e = res.r[i] - sub.correction(pts[i][0])
                cor.append(math.exp(e) - 1)
                inside += abs(e) <= math.log1p(sub.band90(pts[i][0]))
        key = f"{op}/{dt}" + (f" {'/'.join(map(str, fk))}" if any(fk) else "")
        out[key] = {"lattice": _stats(raw), "corrected": _stats(cor), "band90_coverage": inside / len(pts)}
    return out


def _clear_caches() -> None:
    for f in (P._tables, P._kernel_time_cached, P._residuals, P._scatter):
        getattr(f, "cache_clear", lambda: None)()


def ablations(name: str, gpu: str = "H200") -> dict[str, dict[str, float]]:
    """Held-out |error| of the full predictor and with one part switched off (monkeypatched, then restored)."""
    out = {"full predictor": heldout(gpu, name)[0]}
    for label, attr, repl in (("without residual correction", "_residuals", lambda *a: None),
                              ("without wave-quantised FP8", "tile_of", lambda *a: None)):
        orig = getattr(P, attr)
        setattr(P, attr, repl)
        _clear_caches()
        try:
            out[label] = heldout(gpu, name)[0]
        finally:
            setattr(P, attr, orig)
            _clear_caches()
    return out


def partial_sms(gpu: str = "H200") -> dict[str, dict[str, float]]:
    """GEMMs on part of the SMs (partial_sms.csv, green contexts): predicted vs measured slow-down ratio."""
    rows = [r for r in read_raw(profile_dir(gpu) / "partial_sms.csv") if not r["error"]]
    full = {(r["dtype"], r["m"], r["n"], r["k"]): float(r["time_s"]) for r in rows if r["sms"] == "132"}
    errs: dict[str, list[float]] = {}
    for r in rows:
        key = (r["dtype"], r["m"], r["n"], r["k"])
        if r["sms"] == "132" or key not in full:
            continue
        shape = {"m": int(r["m"]), "n": int(r["n"]), "k": int(r["k"])}
        pred = (P.kernel_time(gpu, "gemm", r["dtype"], sms=int(r["sms"]), **shape).time_s
                / P.kernel_time(gpu, "gemm", r["dtype"], **shape).time_s)
        errs.setdefault(f"{r['sms']} SMs {r['dtype']}", []).append(pred / (float(r["time_s"]) / full[key]) - 1)
    return {k: _stats(v) for k, v in sorted(errs.items())}


def heldout(gpu: str = "H200", name: str = "heldout.csv") -> tuple[dict[str, float], list[dict]]:
    rows = []
    for r in read_raw(profile_dir(gpu) / name):
        if r["error"] or not r["time_s"]:
            continue
        shape = {k: (int(r[k]) if r[k].lstrip("-").isdigit() else r[k])
                 for k in ("m", "n", "k", "e", "b", "s", "t", "h", "dist", "impl") if r[k]}
        p = P.kernel_time(gpu, r["op"], r["dtype"], **shape)
        if p.source == "measured":
            continue  # the midpoint lattice (run 2) happened to contain this random shape
        t = float(r["time_s"])
        rows.append({"op": r["op"], "dtype": r["dtype"], "shape": shape, "measured_s": t, "predicted_s": p.time_s,
                     "err": p.time_s / t - 1, "source": p.source, "error90": p.error90})
    return _stats([r["err"] for r in rows]), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rows", action="store_true", help="print every held-out row")
    a = ap.parse_args(argv)
    hdr = f"{'':30s} {'n':>5s} {'median':>7s} {'p90':>7s} {'p99':>7s} {'max':>7s} {'<=20%':>8s}"
    loo, loo_plain = leave_one_out(), leave_one_out(waves=False)
    print("1. Leave-one-out on the H200 table (interior points of each series), |predicted/measured - 1|")
    print("   with the wave-quantised FP8 roofline; FP8 GEMM rows also without it ('plain')")
    print(hdr)
    for k, s in loo.items():
        if s["n"]:
            print(f"{k:30s} {_fmt(s)}")
            if loo_plain[k] != s:
                print(f"{'  plain roofline':30s} {_fmt(loo_plain[k])}")
    cv = scatter_cv()
    print("\n2. Scatter 2-fold cross-validation (random off-lattice shapes): lattice interpolation alone vs")
    print("   corrected by the other fold's residuals")
    print(hdr)
    for k, v in cv.items():
        print(f"{k:30s} {_fmt(v['lattice'])}\n{'  + residual correction':30s} {_fmt(v['corrected'])}"
              f"  (inside 90% band: {v['band90_coverage']:.1%})")
    ho = {}
    for name in ("heldout.csv", "heldout2.csv"):
        st, rows = heldout(name=name)
        ho[name] = {"all": st, "rows": rows}
        print(f"\n3. Held-out {name}: shapes never used by the predictor")
        print(hdr)
        by: dict[str, list[float]] = {}
        for r in rows:
            by.setdefault(f"{r['op']}/{r['dtype']}", []).append(r["err"])
        for k, errs in sorted(by.items()):
            print(f"{k:30s} {_fmt(_stats(errs))}")
        print(f"{'all':30s} {_fmt(st)}")
        banded = [r for r in rows if r["error90"] is not None]
        inside = sum(abs(math.log1p(r["err"])) <= math.log1p(r["error90"]) for r in banded)
        widths = sorted(r["error90"] for r in banded)
        ho[name]["band90_coverage"] = inside / max(1, len(banded))
        print(f"  90% error band: {inside}/{len(banded)} = {inside / max(1, len(banded)):.1%} of shapes inside their "
              f"band (90% if calibrated); band median +-{statistics.median(widths) if widths else float('nan'):.1%}")
        ab = ablations(name)
        ho[name]["ablations"] = ab
        for label, v in ab.items():
            print(f"{'  ' + label:30s} {_fmt(v)}")
        worst = sorted(rows, key=lambda r: -abs(r["err"]))
        for r in (rows if a.rows else worst[:12]):
            print(f"  {r['op']:12s} {r['dtype']:5s} {json.dumps(r['shape']):70s} meas {r['measured_s'] * 1e6:9.1f} us"
                  f"  pred {r['predicted_s'] * 1e6:9.1f} us  {r['err']:+7.1%}")
    ps = partial_sms()
    print("\n4. Part of the SMs computing (cuBLAS in a green context): predicted vs measured slow-down ratio")
    print(hdr)
    for k, v in ps.items():
        print(f"{k:30s} {_fmt(v)}")
    if a.json:
        a.json.write_text(json.dumps({"leave_one_out": loo, "leave_one_out_plain": loo_plain, "scatter_cv": cv,
                                      "heldout": ho, "partial_sms": ps}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
