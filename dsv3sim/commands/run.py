"""`dsv3sim run [SCENARIO.py[:FUNC]]`: simulate scenarios; print a summary, write JSON, a report, a Chrome trace.

With no argument it runs DeepSeek-V3 pre-training (scenarios/deepseek_v3_pretrain.py). A function returning
several scenarios (a study) writes one JSON nesting the results by scenario name.

Where results go: with no output flag, the result JSON and its HTML report go to ``reports/NAME.json|html``
(``reports/`` is git-ignored; the committed examples live in ``reports/examples/``). ``--json PATH``,
``--report PATH`` and ``--chrome-trace PATH`` write exactly what they name and nothing else; ``--no-report``
writes nothing. ``--print-json`` (or ``--json -``) prints the result JSON on stdout and moves every human line
to stderr, so ``dsv3sim run --print-json > x.json`` parses. The Chrome trace is Trace Event Format for Perfetto
(one pid per simulated rank; compute, comm and pipeline tids; DeepSeek profile-data slice names).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from dsv3sim.commands import _args as A
from dsv3sim.commands._output import write_report
from dsv3sim.commands._progress import bars_wanted, human_stream, progress

NAME = "run"
HELP = "simulate a scenario (default: DeepSeek-V3 pre-training) -> summary, JSON, report, Chrome trace"
DESCRIPTION = __doc__

OUTPUT_DIR = Path("reports")  # generated outputs (git-ignored); committed examples: reports/examples/

SUMMARY_KEYS = (("step_time_s", "step s", "{:.3f}"), ("mfu", "MFU", "{:.1%}"), ("mfu_noncausal", "MFU non-causal", "{:.1%}"),
                ("tokens_per_s", "tok/s", "{:,.0f}"),
                ("gpu_hours_per_trillion_tokens", "GPU-h / T tok", "{:,.0f}"),
                ("prefill_tokens_per_s_per_node", "prefill tok/s/node", "{:,.0f}"),
                ("decode_tokens_per_s_per_node", "decode tok/s/node", "{:,.0f}"),
                ("output_tokens_per_s_per_node", "output tok/s/node", "{:,.0f}"),
                ("ttft_s", "TTFT s", "{:.3f}"), ("tpot_s", "TPOT ms", "{:.1f}"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=None,
                   help="scenario file[:function] (default scenarios/deepseek_v3_pretrain.py)")
    p.add_argument("--json", type=A.out_path, dest="json_path", default=None, metavar="PATH",
                   help="write the result JSON here ('-': print it on stdout)")
    p.add_argument("--report", type=A.out_path, default=None, metavar="PATH",
                   help="write an HTML report here (dsv3sim.report)")
    p.add_argument("--chrome-trace", type=A.out_path, default=None, metavar="PATH",
                   help="write a Chrome/Perfetto trace here")
    p.add_argument("--print-json", action="store_true",
                   help="print the result JSON on stdout (human text goes to stderr)")
    p.add_argument("--price-per-gpu-hour", type=A.nonneg_float, default=2.0, metavar="USD",
                   help="price for the cost_usd_* keys (default $2, DeepSeek-V3's H800 assumption)")
    p.add_argument("--no-report", action="store_true",
                   help=f"write nothing by default (without it: {OUTPUT_DIR}/NAME.json and NAME.html)")


def summarize(name: str, d: dict) -> str:
    if d.get("infeasible"):
        return f"{name}: INFEASIBLE - {d['infeasible']}"
    parts = []
    for k, label, fmt in SUMMARY_KEYS:
        v = d.get(k)
        if isinstance(v, (int, float)):
            parts.append(f"{label} " + fmt.format(v * 1e3 if k == "tpot_s" else v))
    return f"{name}: " + ", ".join(parts) + f"  [simulated in {d.get('sim_wall_s', 0):.1f} s]"


def output_name(spec: str | None, names: list[str]) -> str:
    """File stem of the default outputs: the scenario's name, or ``FILE-FUNC`` for a study."""
    if len(names) == 1:
        stem = names[0]
    else:
        path, _, func = (spec or "").partition(":")
        stem = Path(path).stem + (f"-{func}" if func else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "result"


def _pairing_notes(scenarios: dict) -> list[tuple[str, str, str]]:
    """(scenario, level, text) for every scenario whose GPU is not its topology's own."""
    from dsv3sim.config.pairing import gpu_topology_notes

    out, seen = [], {}
    for name, s in scenarios.items():
        key = (s.topology, s.gpu)
        if key not in seen:
            seen[key] = gpu_topology_notes(s.topology, s.gpu)
        out += [(name, n.level, n.text) for n in seen[key]]
    return out


def _simulate_all(scenarios: dict, notes: list, price_per_gpu_hour: float, bars: bool) -> dict[str, dict]:
    from dsv3sim.plan.costs import add_cost_keys
    from dsv3sim.results import to_json
    from dsv3sim.workload import simulate
    from dsv3sim.workload.validation import comparisons

    results: dict[str, dict] = {}
    with progress(len(scenarios), "simulating", enabled=bars) as bar:
        for i, (name, s) in enumerate(scenarios.items()):
            bar.describe(f"simulating {name} ({i + 1}/{len(scenarios)})")
            d = add_cost_keys(to_json(simulate(s)), price_per_gpu_hour)
            rows = comparisons(d)
            if rows:
                d["validation"] = {"rows": rows}
            mine = [f"{lvl}: {txt}" for sn, lvl, txt in notes if sn == name]
            if mine:
                d["notes"] = mine
            results[name] = d
            bar.step()
    return results


def _say_results(say, out, results: dict[str, dict], notes: list) -> None:
    from dsv3sim.workload.limits import bottleneck

    for name, d in results.items():
        say(summarize(name, d))
        limit = None if d.get("infeasible") else bottleneck(d)
        if limit:
            say(f"    {limit}")
        for r in (d.get("validation") or {}).get("rows", []):
            say(f"    vs published {r['name']}: {r['predicted']:,.4g} vs {r['published']:,.4g} "
                f"({r['rel_error']:+.1%}; {r['source']})")
    for txt in dict.fromkeys(f"{lvl}: {t}" for _, lvl, t in notes):  # once per pairing, warnings on stderr
        print(f"  {txt}", file=sys.stderr if txt.startswith("warning") else out)


def _write_outputs(args: argparse.Namespace, results: dict[str, dict], json_stdout: bool, bars: bool) -> list[str]:
    from dsv3sim.results import save_json
    from dsv3sim.results.trace_events import save_chrome_trace

    if args.chrome_trace:  # the report finds the trace next to the JSON
        for d in results.values():
            d["chrome_trace_path"] = str(args.chrome_trace)
    data = next(iter(results.values())) if len(results) == 1 else results
    written = []
    if args.json_path and args.json_path != "-":
        written.append(str(save_json(data, args.json_path)))
    if args.chrome_trace:
        written.append(str(save_chrome_trace([d for d in results.values() if not d.get("infeasible")],
                                             args.chrome_trace)))
    if args.report:
        with progress(None, f"rendering {args.report}", enabled=bars):
            write_report(data, args.report, quiet=True)
        written.append(args.report)
    if json_stdout:
        print(json.dumps(data, indent=1))
    return written


def _say_written(say, args: argparse.Namespace, written: list[str], json_stdout: bool, defaults: bool) -> None:
    for w in written:
        say(f"wrote {w}")
    if args.report:
        say(f"open {args.report} in a browser (self-contained, works offline); index: "
            f"{Path(args.report).parent / 'index.html'}")
    elif args.json_path and args.json_path != "-":
        say(f"report: dsv3sim report {args.json_path} --out {OUTPUT_DIR}/{Path(args.json_path).stem}.html")
    elif not written and not json_stdout:
        say(f"nothing written (--no-report); without it the JSON and report go to {OUTPUT_DIR}/")
    if defaults:
        say(f"({OUTPUT_DIR}/ is git-ignored; choose paths with --json / --report / --chrome-trace)")


def run(args: argparse.Namespace) -> int:
    from dsv3sim.plan.costs import check_price
    from dsv3sim.workload.loader import load

    check_price(args.price_per_gpu_hour)  # bad input exits 2 before anything runs
    t0 = time.perf_counter()
    json_stdout = args.print_json or args.json_path == "-"
    out = human_stream(json_stdout)

    def say(*a) -> None:
        print(*a, file=out, flush=True)

    scenarios = {s.name: s for s in load(args.scenario).values()}  # results are keyed by scenario name
    asked = any(x is not None for x in (args.json_path, args.report, args.chrome_trace)) or args.print_json
    defaults = not asked and not args.no_report
    if defaults:  # a result always lands somewhere the user is told about, outside the tracked files
        stem = output_name(args.scenario, list(scenarios))
        args.json_path, args.report = str(OUTPUT_DIR / f"{stem}.json"), str(OUTPUT_DIR / f"{stem}.html")
    notes = _pairing_notes(scenarios)
    bars = bars_wanted(json_stdout)
    results = _simulate_all(scenarios, notes, args.price_per_gpu_hour, bars)
    _say_results(say, out, results, notes)
    written = _write_outputs(args, results, json_stdout, bars)
    _say_written(say, args, written, json_stdout, defaults)
    say(f"total {time.perf_counter() - t0:.1f} s")
    return 0
