"""Merge profile CSVs (same schema) into one table: rows concatenated; an error row is dropped when another
file measured the same (op, dtype, role, set, shape) successfully (e.g. the FP8 M % 4 re-run). No torch.

    python -m dsv3sim.profile.merge profiles/h200/kernels.csv run1.csv fp8fix.csv nn.csv lattice2.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from dsv3sim.profile.table import COLUMNS, SHAPE_KEYS


def _key(r: dict[str, str]) -> tuple:
    return (r["op"], r["dtype"], r.get("role", ""), r.get("set", ""), *(r.get(k, "") for k in SHAPE_KEYS))


def merge(out: Path, inputs: list[Path]) -> tuple[int, int]:
    rows: list[dict[str, str]] = []
    for p in inputs:
        with p.open(newline="") as f:
            rows += list(csv.DictReader(f))
    ok = {_key(r) for r in rows if not r.get("error")}
    kept = [r for r in rows if not r.get("error") or _key(r) not in ok]
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    tmp.replace(out)
    return len(kept), len(rows) - len(kept)


if __name__ == "__main__":
    n, dropped = merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
    print(f"{sys.argv[1]}: {n} rows ({dropped} superseded error rows dropped)")
