"""Predictor accuracy on the committed H200 tables: leave-one-out and held-out shapes (printed, committed).

Leave-one-out: every measured row whose removal still leaves measured neighbours on both sides along the op's
size key (interior points: the predictor interpolates, it is not asked to extrapolate) is removed from its
(op, dtype) table and predicted from the rest; error = predicted / measured - 1.
Held-out: ``profiles/h200/heldout.csv`` rows (random shapes never in the grid) predicted from the full table.

    .venv/bin/python benchmarks/bench_predictor.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.hardware import get_gpu
from dsv3sim.profile import predict as P
from dsv3sim.profile.table import profile_dir, read_raw, read_rows


def _stats(errs: list[float]) -> dict[str, float]:
    a = sorted(abs(e) for e in errs)
    if not a:
        return {"n": 0}
    return {"n": len(a), "median": statistics.median(a), "p90": a[int(0.9 * (len(a) - 1))], "max": a[-1]}


def leave_one_out(gpu: str = "H200") -> dict[str, dict[str, float]]:
    spec = get_gpu(gpu)
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
                pred = P.roofline_time(spec, op, dt, fl, by) / eff
                errs.append(pred / t - 1)
        out[f"{op}/{dt}"] = _stats(errs)
    return out


def heldout(gpu: str = "H200") -> tuple[dict[str, float], list[dict]]:
    rows = []
    for r in read_raw(profile_dir(gpu) / "heldout.csv"):
        if r["error"] or not r["time_s"]:
            continue
        shape = {k: (int(r[k]) if r[k].lstrip("-").isdigit() else r[k])
                 for k in ("m", "n", "k", "e", "b", "s", "t", "h", "dist", "impl") if r[k]}
        p = P.kernel_time(gpu, r["op"], r["dtype"], **shape)
        if p.source == "measured":
            continue  # the midpoint lattice (run 2) happened to contain this random shape
        t = float(r["time_s"])
        rows.append({"op": r["op"], "dtype": r["dtype"], "shape": shape, "measured_s": t, "predicted_s": p.time_s,
                     "err": p.time_s / t - 1, "source": p.source})
    return _stats([r["err"] for r in rows]), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    loo = leave_one_out()
    all_errs_med = []
    print("Leave-one-out on the H200 table (interior points), |predicted/measured - 1|:")
    print(f"{'op/dtype':28s} {'n':>5s} {'median':>8s} {'p90':>8s} {'max':>8s}")
    for k, s in loo.items():
        if s["n"]:
            print(f"{k:28s} {s['n']:5d} {s['median']:8.1%} {s['p90']:8.1%} {s['max']:8.1%}")
            all_errs_med.append(s["median"])
    ho_stats, ho_rows = heldout()
    print("\nHeld-out H200 shapes (never in the grid):")
    for r in ho_rows:
        print(f"  {r['op']:14s} {r['dtype']:5s} {json.dumps(r['shape']):80s} meas {r['measured_s'] * 1e6:9.1f} us"
              f"  pred {r['predicted_s'] * 1e6:9.1f} us  {r['err']:+7.1%}")
    print(f"held-out: n={ho_stats['n']} median {ho_stats['median']:.1%} p90 {ho_stats['p90']:.1%} "
          f"max {ho_stats['max']:.1%}")
    if a.json:
        a.json.write_text(json.dumps({"leave_one_out": loo, "heldout": ho_stats, "heldout_rows": ho_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
