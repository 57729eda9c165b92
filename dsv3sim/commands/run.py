"""`dsv3sim run [SCENARIO.py[:FUNC]]`: simulate scenarios; print a summary, write JSON, a report, a Chrome trace.

With no argument it runs DeepSeek-V3 pre-training (scenarios/deepseek_v3_pretrain.py). A function returning
several scenarios (a study) writes one JSON nesting the results by scenario name. ``--report`` renders HTML
with ``dsv3sim.report.render`` from the JSON; ``--chrome-trace`` writes Trace Event Format for Perfetto
(one pid per simulated rank; compute, comm and pipeline tids; DeepSeek profile-data slice names).
"""

from __future__ import annotations

import argparse
import json
import time

from dsv3sim.commands._output import write_report

NAME = "run"
HELP = "simulate a scenario (default: DeepSeek-V3 pre-training) -> summary, JSON, report, Chrome trace"

DEFAULT_REPORT = "reports/deepseek-v3-pretrain.html"

SUMMARY_KEYS = (("step_time_s", "step s", "{:.3f}"), ("mfu", "MFU", "{:.1%}"), ("mfu_noncausal", "MFU non-causal", "{:.1%}"),
                ("tokens_per_s", "tok/s", "{:,.0f}"),
                ("gpu_hours_per_trillion_tokens", "GPU-h / T tok", "{:,.0f}"),
                ("prefill_tokens_per_s_per_node", "prefill tok/s/node", "{:,.0f}"),
                ("decode_tokens_per_s_per_node", "decode tok/s/node", "{:,.0f}"),
                ("ttft_s", "TTFT s", "{:.3f}"), ("tpot_s", "TPOT ms", "{:.1f}"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=None,
                   help="scenario file[:function] (default scenarios/deepseek_v3_pretrain.py)")
    p.add_argument("--json", dest="json_path", default=None, help="write the result JSON here")
    p.add_argument("--report", default=None, help="write an HTML report here (dsv3sim.report)")
    p.add_argument("--chrome-trace", default=None, help="write a Chrome/Perfetto trace here")
    p.add_argument("--print-json", action="store_true", help="print the result JSON to stdout")
    p.add_argument("--no-report", action="store_true",
                   help="with no scenario argument, skip the default report and JSON under reports/")


def summarize(name: str, d: dict) -> str:
    if d.get("infeasible"):
        return f"{name}: INFEASIBLE - {d['infeasible']}"
    parts = []
    for k, label, fmt in SUMMARY_KEYS:
        v = d.get(k)
        if isinstance(v, (int, float)):
            parts.append(f"{label} " + fmt.format(v * 1e3 if k == "tpot_s" else v))
    return f"{name}: " + ", ".join(parts) + f"  [{d.get('sim_wall_s', 0):.1f} s simulated]"


def run(args: argparse.Namespace) -> int:
    from dsv3sim.results import save_chrome_trace, save_json, to_json
    from dsv3sim.workload import simulate
    from dsv3sim.workload.loader import load

    t0 = time.perf_counter()
    if args.scenario is None and not args.no_report:  # the main job: default scenario with its report
        args.report = args.report or DEFAULT_REPORT
        args.json_path = args.json_path or DEFAULT_REPORT.replace(".html", ".json")
    scenarios = load(args.scenario)
    from dsv3sim.workload.validation import comparisons

    results = {s.name: to_json(simulate(s)) for s in scenarios.values()}
    for d in results.values():
        rows = comparisons(d)
        if rows:
            d["validation"] = {"rows": rows}
    for name, d in results.items():
        print(summarize(name, d))
        for r in (d.get("validation") or {}).get("rows", []):
            print(f"    vs published {r['name']}: {r['predicted']:,.4g} vs {r['published']:,.4g} "
                  f"({r['rel_error']:+.1%}; {r['source']})")
    if args.chrome_trace:  # the report finds the trace next to the JSON
        for d in results.values():
            d["chrome_trace_path"] = str(args.chrome_trace)
    data = next(iter(results.values())) if len(results) == 1 else results
    if args.json_path:
        save_json(data, args.json_path)
        print(f"wrote {args.json_path}")
    if args.chrome_trace:
        save_chrome_trace([d for d in results.values() if not d.get("infeasible")], args.chrome_trace)
        print(f"wrote {args.chrome_trace}")
    if args.report:
        write_report(data, args.report)
    if args.print_json:
        print(json.dumps(data, indent=1))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
