"""Sustained GEMM rate when only part of the SMs compute: does the power-limited clock rise when fewer SMs run
the GEMM, and what does a communication-like copy on the other SMs take back?

DeepSeek-V3 (report §3.2.2) runs its GEMMs on 112 of 132 SMs while 20 SMs move all-to-all data. ``sustained.py``
caps a GEMM at the rate the whole GPU sustains at its power limit, scaled by the SM fraction. Power is spent per
active SM, so a GEMM on 112 SMs may hold a higher clock than one on 132; a copy on the other 20 SMs spends power
too. Three ways, each after ``--heat`` seconds of the same load (the board at its power limit), NVML-sampled:

* ``all``: the GEMM on every SM;
* ``part``: the GEMM in a green context of ``--sms`` SMs, nothing else running;
* ``part+copy``: the same, with a device copy looping in a green context of the remaining SMs.

    python benchmarks/probe_sustained_partial.py --out profiles/h200/sustained_partial.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_sustained_clock import Sampler  # noqa: E402

from dsv3sim.profile.ops import gemm  # noqa: E402
from dsv3sim.profile.sm_partition import _green  # noqa: E402

SHAPES = [("bf16", 8192, 8192, 8192), ("fp8", 8192, 8192, 8192), ("fp8", 16384, 4096, 7168)]


def _loop(case, stream, copy=None, heat_s: float = 2.0, reps: int = 5, calls: int = 20) -> list[float]:
    """Per-call seconds of ``case`` on ``stream`` after heat_s of back-to-back calls; ``copy`` = (stream, fn)
    keeps a copy running beside it the whole time."""
    sets = case.sets

    def burst(n: int) -> None:
        with torch.cuda.stream(stream):
            for i in range(n):
                case.fn(*sets[i % len(sets)])
        if copy is not None:
            with torch.cuda.stream(copy[0]):
                for _ in range(max(1, n // 2)):
                    copy[1]()

    end = time.perf_counter() + heat_s
    while time.perf_counter() < end:
        burst(calls)
        torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(stream)
        burst(calls)
        b.record(stream)
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) * 1e-3 / calls)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sms", type=int, default=112)
    ap.add_argument("--heat", type=float, default=2.0)
    a = ap.parse_args()
    n_total = torch.cuda.get_device_properties(0).multi_processor_count
    smp = Sampler()
    smp.start()
    rows = []
    src = torch.randn(2**26, device="cuda")  # 256 MiB fp32
    dst = torch.empty_like(src)
    ways = {"all": None, "part": None, "part+copy": None}
    ctxs = {}
    try:
        ctxs["part"] = _green(a.sms)
        ctxs["rest"] = _green(n_total - a.sms)
    except Exception as e:  # noqa: BLE001 - green contexts unsupported: the 'all' rows still come back
        rows.append({"error": f"green context: {type(e).__name__}: {e}"})
    for dt, m, n, k in SHAPES:
        case = gemm(m=m, n=n, k=k, dtype=dt, device="cuda")
        for way in ways:
            key = f"{dt}-{m}x{n}x{k}:{way}"
            try:
                if way == "all":
                    stream, copy = torch.cuda.current_stream(), None
                else:
                    ctxs["rest"].set_context()
                    cs = ctxs["rest"].Stream()
                    ctxs["rest"].pop_context()
                    ctxs["part"].set_context()
                    stream = ctxs["part"].Stream()
                    copy = (cs, lambda: dst.copy_(src)) if way == "part+copy" else None
                smp.phase = key
                ts = _loop(case, stream, copy, a.heat)
                if way != "all":
                    ctxs["part"].pop_context()
                t = statistics.median(ts)
                rows.append({"dtype": dt, "m": m, "n": n, "k": k, "way": way, "sms": n_total if way == "all" else a.sms,
                             "time_s": t, "tflops": case.flops / t / 1e12, "clock": smp.stats(key)})
            except Exception as e:  # noqa: BLE001 - one way failing keeps the others
                rows.append({"dtype": dt, "m": m, "n": n, "k": k, "way": way, "error": f"{type(e).__name__}: {e}"})
            smp.phase = "idle"
            print(json.dumps(rows[-1]), flush=True)
    smp.stop = True
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"sms_total": n_total, "heat_s": a.heat, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
