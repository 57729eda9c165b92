"""Count fuzz outcomes by category (ok / error / traceback / hang / nonsense) for each case generator.

    PYTHONPATH=$PWD python benchmarks/fuzz_inventory.py [--examples 200] [--timeout 5]

Runs the generators of tests/fuzz/cases.py through the real CLI (tests/fuzz/harness.py) without asserting,
so the same command measures any checkout (put that checkout first on PYTHONPATH). Each case runs in a forked
child with its address space capped (``--max-gib``) and a hard kill at the deadline (harness.run_case_isolated).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from cases import file_case, flag_case, scenario_case, topology_case
from harness import run_case_isolated
from hypothesis import HealthCheck, given, settings


def inventory(strat, a: argparse.Namespace, lim: int) -> dict:
    """Outcome counts of up to ``a.examples`` distinct cases of one generator, with a few examples of each bad kind."""
    counts: collections.Counter = collections.Counter()
    shown: dict[str, list] = collections.defaultdict(list)
    seen: set = set()

    @settings(derandomize=True, max_examples=a.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strat)
    def probe(case):
        argv, expect, files, label = case
        key = repr((argv, expect, sorted(files), [hash(files[k]) for k in sorted(files)]))
        if key in seen:
            return
        seen.add(key)
        with tempfile.TemporaryDirectory() as d:
            for fn, data in files.items():
                (Path(d) / fn).write_bytes(data)
            o = run_case_isolated([x.replace("{TMP}", d) for x in argv], timeout_s=a.timeout, expect=expect,
                                  outdir=Path(d), max_bytes=lim)
        counts[o.kind] += 1
        if o.kind not in ("ok", "error") and len(shown[o.kind]) < a.show:
            shown[o.kind].append(f"{label[:100]} :: {o.detail[:160]}")

    probe()
    return {"cases": sum(counts.values()), **dict(sorted(counts.items())), "examples": dict(shown)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--max-gib", type=float, default=6.0)
    ap.add_argument("--show", type=int, default=3, help="examples printed per bad category")
    ap.add_argument("--only", default="", help="comma-separated generators (topology,flags,files,scenario)")
    a = ap.parse_args()
    lim = int(a.max_gib * 2**30)
    import torch  # noqa: F401

    import dsv3sim.cli  # noqa: F401 - imported once here, so each forked case starts warm
    out: dict = {}
    gens = {"topology": topology_case(), "flags": flag_case(), "files": file_case(), "scenario": scenario_case()}
    for name, strat in gens.items():
        if a.only and name not in a.only.split(","):
            continue
        out[name] = inventory(strat, a, lim)
        print(name, json.dumps(out[name], indent=1), flush=True)
    tot = collections.Counter()
    for v in out.values():
        for k in ("ok", "error", "traceback", "hang", "nonsense"):
            tot[k] += v.get(k, 0)
    print("TOTAL", dict(tot))


if __name__ == "__main__":
    main()
