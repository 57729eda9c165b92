"""DeepSeek-V3 pre-training part by part: simulated vs published, every row with its error.

    python benchmarks/bench_published_v3.py > benchmarks/bench_published_v3.out.txt

Rows: the step and its parts in DeepSeek's terms ("Insights into DeepSeek-V3", ISCA'25, arXiv 2505.09343,
Table 4: 1F, 1B, 1W, 1F1B, bubble, opt; MFU causal and non-causal), GPU hours per trillion tokens (V3 report
Table 1), one overlapped F&B chunk pair of 4 MoE layers and each of its per-layer slices (deepseek-ai/profile-data
train.json, extracted into dsv3sim/workload/data/profile_data_train.json). Two network models: the event
simulation of DeepEP's all-to-all (``sim``, the default of ``dsv3sim run``) and the busiest-link bound
(``bound``, what sweeps use). Targets: step within 5 %, the parts and the pair within 15 %, every slice within
25 %. Also printed: DualPipe's bubble formula (deepseek-ai/DualPipe README: (PP/2 - 1)(F&B + B - 3W)) on the
published and on the simulated chunk times, and the calibration constants the model takes from the profile.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsv3sim.results import to_json
from dsv3sim.workload import deepep_overheads as DO
from dsv3sim.workload import simulate
from dsv3sim.workload.validation import ISCA_PARTS_S, comparisons

TARGET = {"step time": 0.05, "GPU hours per trillion tokens": 0.05, "F&B chunk pair, 4 MoE layers": 0.15,
          **dict.fromkeys(ISCA_PARTS_S, 0.15), "MFU (causal)": 0.10, "MFU (non-causal)": 0.10}


def _scenario():
    sp = importlib.util.spec_from_file_location("pretrain", ROOT / "scenarios" / "deepseek_v3_pretrain.py")
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    return m.pretrain()


TARGET_PAIR_S = 0.129012  # profile-data train.json: one overlapped F&B pair of 4 + 4 MoE layers (pair_span_ms)


def _target(name: str) -> float:
    return TARGET.get(name, 0.25 if name.startswith("per layer") else float("nan"))


def _fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v * 1e3:9.2f} ms" if v < 1 else f"{v:9.3f} s "
    if unit == "fraction":
        return f"{v * 100:9.2f} % "
    return f"{v:12,.0f}"


def main() -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python benchmarks/bench_published_v3.py")
    results = {}
    for model in ("sim", "bound"):
        t0 = time.perf_counter()
        d = to_json(simulate(_scenario().with_(comm_model=model, record=True)))
        results[model] = (d, comparisons(d), time.perf_counter() - t0)
    rows_sim, rows_bound = results["sim"][1], {r["name"]: r for r in results["bound"][1]}
    print(f"{'component':34s} {'simulated (sim)':>14s} {'error':>7s}  {'bound':>14s} {'error':>7s}  "
          f"{'published':>13s} {'target':>6s}  source")
    for r in rows_sim:
        b = rows_bound.get(r["name"])
        t = _target(r["name"])
        ok = "ok" if abs(r["rel_error"]) <= t else "MISS"
        print(f"{r['name']:34s} {_fmt(r['predicted'], r['unit']):>14s} {r['rel_error']:+7.1%}  "
              f"{_fmt(b['predicted'], r['unit']) if b else '':>14s} {b['rel_error'] if b else 0:+7.1%}  "
              f"{_fmt(r['published'], r['unit']):>13s} {t:6.0%} {ok:4s} {r['source'][:48]}")
    d = results["sim"][0]
    pp = d["parallel"]["pp"]
    pub = ISCA_PARTS_S
    counts = {"F&B": 0, "B": 0, "BW": 0, "W": 0}
    for e in d["timeline"]["events"] if d["timeline"].get("events") else []:
        if e.get("rank") == 0 and e.get("stream") == "pipeline" and e["name"] in counts:
            counts[e["name"]] += 1
    if counts["F&B"]:
        # DualPipe README: bubble (PP/2-1)(F&B + B - 3W), B = a FULL backward chunk (input + weight). Per-chunk
        # times from the parts of PP rank 0 (its chunk counts from the schedule): F&B = 1F1B / #F&B,
        # B = 1B / #(B + BW) + W (the table's 1B is input-backward time), W = 1W / #W.
        sb = d["step_breakdown_s"]

        def formula(parts: dict) -> float:
            fb, w = parts["1F1B"] / counts["F&B"], parts["1W"] / max(counts["W"], 1)
            b_full = parts["1B"] / (counts["B"] + counts["BW"]) + w
            return (pp / 2 - 1) * (fb + b_full - 3 * w)

        print(f"\nDualPipe bubble formula (PP/2-1)(F&B+B-3W), B = full backward, PP rank 0's mean chunk times "
              f"({counts}):")
        print(f"  published parts: {formula(pub):.3f} s (measured bubble {pub['bubble']} s); "
              f"simulated parts: {formula(sb):.3f} s (simulated bubble {sb['bubble']:.3f} s)")
        pl = d["pipeline"]
        print("  busy / idle per PP rank, s: " + ", ".join(
            f"{r}: {b:.2f}/{i:.2f}" for r, (b, i) in enumerate(zip(pl["busy_per_rank"], pl["bubble_per_rank"]))
            if r < pp // 2))
        # rank 0's mean overlapped pair against one pair of 4 + 4 MoE layers (profile-data's): how much heavier
        # rank 0 (embedding + dense layers, last layers + MTP + heads) is than a middle rank, both sides
        pair_pub, pair_sim = TARGET_PAIR_S, d["pair_slices_s"]["pair_s"]
        print(f"  rank 0's mean pair / a 4+4 MoE pair: published {pub['1F1B'] / counts['F&B'] * 1e3:.1f} / "
              f"{pair_pub * 1e3:.1f} ms = {pub['1F1B'] / counts['F&B'] / pair_pub:.3f}; simulated "
              f"{sb['1F1B'] / counts['F&B'] * 1e3:.1f} / {pair_sim * 1e3:.1f} ms = "
              f"{sb['1F1B'] / counts['F&B'] / pair_sim:.3f}")
        bd = d["breakdown_s"]
        print(f"  opt = exposed DP reduce-scatter + all-gather {bd['dp_comm_exposed_s'] * 1e3:.1f} ms + optimizer "
              f"{bd['optimizer_s'] * 1e3:.1f} ms (plain ZeRO-1 order; optimizer_overlap=True is the overlapped what-if)")
    ps = d["pair_slices_s"]
    print(f"\nsimulated pair: {ps['action']} on PP rank {ps['rank']}; wall: sim {results['sim'][2]:.1f} s, "
          f"bound {results['bound'][2]:.1f} s")
    print("calibrated on profile-data train.json (no first-principles value): "
          f"DeepEP co-run slowdown x{DO.CORUN_SLOWDOWN:.3f}, notify jitter cv {DO.NOTIFY_JITTER_CV:.4f}, "
          f"layout loaded-load latency {DO.LOADED_LOAD_LATENCY_S * 1e6:.2f} us")


if __name__ == "__main__":
    main()
