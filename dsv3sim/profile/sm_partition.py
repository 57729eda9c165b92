"""GEMM time with only part of the SMs computing, measured through a CUDA green context.

DeepSeek-V3 (report §3.2.2) gives 20 of the H800's 132 SMs to communication, so GEMMs run on 112. A green
context (torch.cuda.GreenContext, CUDA >= 12.4 driver API) confines the kernels launched on its stream to
``num_sms`` SMs; this measures the model's GEMMs at 132, 112 and 66 SMs to check the predictor's rule
(peak x sms / n_sms, see predict.py). Timing is eager (events around rotated launches, median of reps).

    python -m dsv3sim.profile.sm_partition --out profiles/h200/partial_sms.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

import torch

from dsv3sim.profile.ops import gemm
from dsv3sim.profile.timing import _eager_once, _quantiles

SHAPES = [(m, n, k) for m in (128, 1024, 4096, 16384) for n, k in ((4096, 7168), (7168, 2048), (24576, 1536),
                                                                    (7168, 16384))]


def _green(num_sms: int):
    from torch.cuda.green_contexts import GreenContext
    try:
        return GreenContext.create(num_sms=num_sms, device_id=0)
    except TypeError:
        return GreenContext.create(num_sms, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sms", default="132,112,66")
    a = ap.parse_args(argv)
    n_total = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for sms in [int(x) for x in a.sms.split(",")]:
        ctx = None
        try:
            if sms < n_total:
                ctx = _green(sms)
                ctx.set_context()
                stream = ctx.Stream()
            else:
                stream = torch.cuda.current_stream()
            with torch.cuda.stream(stream):
                for dtype in ("bf16", "fp8"):
                    for m, n, k in SHAPES:
                        case = gemm(m=m, n=n, k=k, dtype=dtype, device="cuda")
                        case.fn(*case.sets[0])
                        torch.cuda.synchronize()
                        reps = 7
                        ts = [_eager_once(case.fn, case.sets, 2 * len(case.sets)) for _ in range(reps)]
                        med, p10, p90 = _quantiles(ts)
                        rows.append({"sms": sms, "dtype": dtype, "m": m, "n": n, "k": k, "time_s": med, "p10_s": p10,
                                     "p90_s": p90, "tflops": case.flops / med / 1e12, "error": ""})
                        print(rows[-1], file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - green contexts may be unsupported here: say so
            rows.append({"sms": sms, "dtype": "", "m": "", "n": "", "k": "", "time_s": "", "p10_s": "", "p90_s": "",
                         "tflops": "", "error": f"{type(e).__name__}: {str(e)[:200]}"})
            print(rows[-1], file=sys.stderr)
        finally:
            if ctx is not None:
                with contextlib.suppress(Exception):  # nothing to restore
                    ctx.pop_context()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
