"""Error distribution of `dsv3sim validate` on this machine: several model sizes x layouts, real CPU runs.

Each case is a real torchrun job (gloo, 1 thread per rank) followed by the prediction; the table prints the
measured and predicted step time and the relative error side by side, and the summary the distribution
(median |error|, max |error|, share within 15 % and 5 %). Results: profiles/cpu-local/validation_error.json.
Model sizes are variants of model/tiny.json written to a temp folder (hidden size, layers, experts).

    .venv/bin/python benchmarks/validate_error.py            # all cases (~10-20 min on 2 busy cores)
    .venv/bin/python benchmarks/validate_error.py --quick    # 3 cases
    .venv/bin/python benchmarks/validate_error.py --repredict  # same runs, prediction recomputed (no new jobs)
    .venv/bin/python benchmarks/validate_error.py --matrix --out profiles/cpu-local/validation_matrix.json
        # the layout matrix on `tiny`: 2 and 4 processes over EP, PP (1F1B, DualPipe), DP, mixed, FP8 dispatch
        # on/off; 4-process cases oversubscribe a 2-core box (--allow-oversubscribe) and say so

Every case records the load average before and after its run: on a shared box the measured step moves with
the other jobs' load between the calibration and the training phase, which no prediction can see. The output
names the machine (CPU model, cores available); 4-process cases oversubscribe only where the cores are fewer.
    .venv/bin/python benchmarks/validate_error.py --matrix --runs /tmp/vm --only ep2,dp2   # a subset, folders kept
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsv3sim.validate.compare import step_ci95  # noqa: E402
from dsv3sim.validate.load import cores  # noqa: E402

SIZES = {  # name -> changes to model/tiny.json
    "tiny": {},
    "tiny-wide": {"hidden_size": 256, "moe_intermediate_size": 128, "intermediate_size": 768, "n_routed_experts": 32,
                  "n_group": 4},
    "tiny-deep": {"num_hidden_layers": 8},
}
LAYOUTS = {
    "ep2": ["--ep", "2"],
    "ep2-fp8-2nodes": ["--ep", "2", "--fp8", "--gpus-per-node", "1"],
    "dp2": ["--ep", "1", "--dp", "2"],
    "pp2-1f1b": ["--pp", "2", "--microbatches", "4"],
    "pp2-dualpipe": ["--pp", "2", "--schedule", "dualpipe", "--microbatches", "4"],
}


MATRIX = {  # name -> (processes, flags) on model/tiny.json
    "ep2": (2, ["--ep", "2"]),
    "ep2-fp8-dispatch": (2, ["--ep", "2", "--fp8-dispatch-only"]),
    "dp2": (2, ["--ep", "1", "--dp", "2"]),
    "pp2-1f1b": (2, ["--pp", "2", "--ep", "1", "--microbatches", "4"]),
    "pp2-dualpipe": (2, ["--pp", "2", "--ep", "1", "--schedule", "dualpipe", "--microbatches", "4"]),
    "ep4": (4, ["--ep", "4"]),
    "ep4-fp8-dispatch": (4, ["--ep", "4", "--fp8-dispatch-only"]),
    "ep2-dp2": (4, ["--ep", "2", "--dp", "2"]),
    "pp2-ep2-1f1b": (4, ["--pp", "2", "--ep", "2", "--microbatches", "4"]),
}


def _machine() -> str:
    """CPU model and the cores this process may use (Linux /proc/cpuinfo; else the platform's processor)."""
    try:
        name = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {cores()} cores available"


def _load() -> list[str]:
    p = Path("/proc/loadavg")
    return p.read_text().split()[:3] if p.exists() else []


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--matrix", action="store_true", help="the layout matrix on tiny (MATRIX) instead of sizes x layouts")
    ap.add_argument("--only", default="", help="comma-separated layout names: run just these cases")
    ap.add_argument("--steps", type=int, default=None,
                    help="measured steps per run (default 16 with --matrix, else 8): the measured median's 95 %% "
                         "interval is [min, max] of 8 steps, the 4th to 13th of 16")
    ap.add_argument("--out", default=str(REPO / "profiles" / "cpu-local" / "validation_error.json"))
    ap.add_argument("--runs", help="keep the run folders here (default: a temp folder); with --repredict, where "
                                   "the run folders are now (looked up by their folder name)")
    ap.add_argument("--repredict", action="store_true",
                    help="re-run only the prediction on the run folders recorded in --out "
                         "(dsv3sim validate --from-run)")
    a = ap.parse_args(argv)
    a.steps = a.steps or (16 if a.matrix else 8)
    return a


def _cases(matrix: bool, quick: bool, only: str) -> list[tuple[str, str]]:
    """(model size, layout) pairs to run: sizes x layouts, the matrix on tiny, or the quick three; --only filters."""
    cases = [(s, l) for s in SIZES for l in LAYOUTS]
    if matrix:
        cases = [("tiny", l) for l in MATRIX]
    elif quick:
        cases = [("tiny", "ep2"), ("tiny", "pp2-1f1b"), ("tiny-wide", "ep2-fp8-2nodes")]
    if only:
        cases = [c for c in cases if c[1] in only.split(",")]
    return cases


def _validate_cmd(model: Path, nproc: int, flags: list[str], steps: int, run_dir: Path,
                  save_profile: bool) -> list[str]:
    """The `dsv3sim validate` command line of one case (oversubscribed where the cores are fewer)."""
    cmd = [sys.executable, "-m", "dsv3sim", "validate", "--model", str(model), "--nproc", str(nproc), "--steps",
           str(steps), "--seq-len", "64", "--json", "--out", str(run_dir), *flags]
    if nproc > cores():
        cmd.append("--allow-oversubscribe")
    if save_profile:
        cmd.append("--save-profile")
    return cmd


def _run_case(i: int, size: str, lay: str, a: argparse.Namespace, tmp: Path, base: dict) -> dict:
    """One real validate job: its row for the JSON, and its line of the table printed."""
    cfg = dict(base, **SIZES[size])
    path = tmp / f"{size}.json"
    path.write_text(json.dumps(cfg))
    nproc, flags = MATRIX[lay] if a.matrix else (2, LAYOUTS[lay])
    cmd = _validate_cmd(path, nproc, flags, a.steps, tmp / f"run{i}", i == 0 and not a.matrix)
    t0 = time.time()
    load0 = _load()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    if p.returncode != 0:
        print(f"{size:10s} {lay:16s} FAILED: {p.stderr.strip().splitlines()[-1:]}")
        return dict(model=size, layout=lay, failed=p.stderr[-500:])
    r = json.loads(p.stdout)
    row = dict(model=size, layout=lay, nproc=nproc, flags=flags, loadavg_before=load0, loadavg_after=_load(),
               run_dir=str(tmp / f"run{i}"), measured_step_s=r["measured_step_s"],
               predicted_step_s=r["predicted_step_s"], error=r["error"], signed_error=r["error"],
               measured_steps_s=r["measured_steps_s"], wall_s=time.time() - t0,
               machine_load=r.get("machine_load"),
               components=r["components"], predicted_components_s=r.get("predicted_components_s"))
    ld = r.get("machine_load") or {}
    print(f"{size:10s} {lay:16s} {r['measured_step_s'] * 1e3:12.2f} {r['predicted_step_s'] * 1e3:13.2f} "
          f"{r['error'] * 100:+7.1f}%  load {' '.join(load0)}  CPU share {ld.get('rank_cpu_share_median')}  "
          f"worst component {_worst(r['components'])}", flush=True)
    return row


def main() -> int:
    a = _parse_args()
    if a.repredict:
        return repredict(Path(a.out), Path(a.runs) if a.runs else None)
    cases = _cases(a.matrix, a.quick, a.only)
    tmp = Path(a.runs) if a.runs else Path(tempfile.mkdtemp(prefix="dsv3sim-valbench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    base = json.loads((REPO / "model" / "tiny.json").read_text())
    rows = []
    print(f"{'model':10s} {'layout':16s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}")
    for i, (size, lay) in enumerate(cases):
        rows.append(_run_case(i, size, lay, a, tmp, base))
        if "failed" in rows[-1]:
            continue
        write(rows, a.out, a.steps, " ".join(sys.argv[1:]), quiet=True)  # each case kept as soon as it is done
    write(rows, a.out, a.steps, " ".join(sys.argv[1:]))
    return 0


def _worst(comps: list[dict]) -> str:
    """The component furthest from its measurement (of those >= 2 % of the step)."""
    tot = sum(c["measured_s"] for c in comps) or 1.0
    big = [c for c in comps if c["error"] is not None and c["measured_s"] >= 0.02 * tot]
    if not big:
        return "-"
    c = max(big, key=lambda c: abs(c["error"]))
    return f"{c['name']} {c['error'] * 100:+.0f} %"


def _summary(rows: list[dict]) -> dict:
    """The error distribution over the cases that ran ({} when none did)."""
    errs = [abs(r["error"]) for r in rows if "error" in r]
    if not errs:
        return {}
    comp_errs = [abs(c["error"]) for r in rows for c in r.get("components", []) if c.get("error") is not None]
    return dict(n=len(errs), median_abs_error=statistics.median(errs), max_abs_error=max(errs),
                components_within_20pct=sum(e <= 0.20 for e in comp_errs) / max(len(comp_errs), 1),
                within_15pct=sum(e <= 0.15 for e in errs) / len(errs),
                within_5pct=sum(e <= 0.05 for e in errs) / len(errs),
                within_10pct=sum(e <= 0.10 for e in errs) / len(errs),
                # misses the measurement cannot explain: the whole 95 % interval of the error beyond 10 %
                outside_10pct_beyond_ci=sum(min(abs(x) for x in r["error_ci95"]) > 0.10 and
                                            r["error_ci95"][0] * r["error_ci95"][1] > 0
                                            for r in rows if "error_ci95" in r) / len(errs))


def _print_summary(summary: dict) -> None:
    print(f"|error|: median {summary['median_abs_error'] * 100:.1f} %, max {summary['max_abs_error'] * 100:.1f} %, "
          f"<= 15 %: {summary['within_15pct'] * 100:.0f} % of cases, <= 5 %: {summary['within_5pct'] * 100:.0f} %, "
          f"<= 10 %: {summary['within_10pct'] * 100:.0f} %; beyond 10 % with the measured median's whole 95 % "
          f"interval: {summary['outside_10pct_beyond_ci'] * 100:.0f} %")


def write(rows: list[dict], out_path: str | Path, steps: int, args: str = "", machine: str = "",
          quiet: bool = False) -> None:
    for r in rows:
        if r.get("measured_steps_s"):
            r.update(step_ci95(r["measured_steps_s"], r["predicted_step_s"]))
    summary = _summary(rows)
    if summary and not quiet:
        _print_summary(summary)
    out = dict(machine=machine or _machine(), loadavg_at_end=_load(),
               command=args if args.startswith("python ") else f"python benchmarks/validate_error.py {args}".strip(),
               when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), steps=steps, summary=summary, cases=rows)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(out, indent=1))
    if not quiet:
        print(f"wrote {out_path}")


def repredict(path: Path, runs: Path | None = None) -> int:
    old = json.loads(path.read_text())
    rows = []
    print(f"{'model':10s} {'layout':16s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}")
    for c in old["cases"]:
        run_dir = runs / Path(c["run_dir"]).name if runs is not None and "run_dir" in c else Path(c.get("run_dir", ""))
        if "run_dir" not in c or not (run_dir / "result.json").exists():
            rows.append(c)
            continue
        p = subprocess.run([sys.executable, "-m", "dsv3sim", "validate", "--from-run", str(run_dir), "--json"],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
        if p.returncode != 0:
            rows.append(dict(c, repredict_failed=p.stderr[-300:]))
            continue
        r = json.loads(p.stdout)
        rows.append(dict(c, predicted_step_s=r["predicted_step_s"], error=r["error"], components=r["components"]))
        print(f"{c['model']:10s} {c['layout']:16s} {r['measured_step_s'] * 1e3:12.2f} "
              f"{r['predicted_step_s'] * 1e3:13.2f} {r['error'] * 100:+7.1f}%", flush=True)
    write(rows, path, old.get("steps", 0), f"{old.get('command', '')}; then python benchmarks/validate_error.py {' '.join(sys.argv[1:])}",
          old.get("machine", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
