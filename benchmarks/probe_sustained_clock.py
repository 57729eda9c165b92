"""Isolated vs back-to-back vs sustained kernel times on one GPU, with the SM clock and board power sampled.

Question: why do GEMMs run slower back to back (as in a training step) than the kernel tables say? Candidates:
the SM clock under sustained power (Hopper boosts to 1980 MHz and drops when the board reaches its power limit),
L2 residency, graph replay vs eager launches. Per shape, four ways of timing the same call on rotated inputs:

* ``table``: ``dsv3sim.profile.timing.time_cuda``, exactly as ``profiles/h200/kernels.csv`` was measured (a CUDA
  graph of ~1 ms of calls replayed ~10 times, after a short idle while the inputs are built);
* ``isolated``: one eager call after 0.3 s of idle, 5 times, median;
* ``b2b20``: 20 eager calls back to back after 0.3 s of idle (the issue's probe), per call;
* ``sustained``: the graph replayed for ``--heat`` seconds first (the board reaches its power limit), then 10
  timed replays, per call.

An NVML thread samples the SM clock, board power and the throttle reasons every 10 ms and tags each sample with
the phase; the mean clock per phase goes with each time. Shapes: BF16 and FP8 block-scaled GEMMs (compute-bound:
time ~ 1 / f_sm) and a device copy (memory-bound: should not follow the SM clock).

    python benchmarks/probe_sustained_clock.py --out profiles/h200/sustained_clock.json
    (beside it, for the record: nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv -lms 50)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.profile.ops import gemm  # noqa: E402
from dsv3sim.profile.timing import time_cuda  # noqa: E402

SHAPES = [  # (dtype, m, n, k)
    ("bf16", 8192, 8192, 8192),
    ("bf16", 16384, 4096, 7168),
    ("bf16", 4096, 7168, 2048),
    ("bf16", 2048, 2048, 7168),
    ("fp8", 8192, 8192, 8192),
    ("fp8", 4096, 7168, 7168),
    ("fp8", 4096, 7168, 2048),
]


class Sampler(threading.Thread):
    """NVML samples (t, phase, sm MHz, power W, throttle reasons) every ``dt`` s while running."""

    def __init__(self, dt: float = 0.01) -> None:
        super().__init__(daemon=True)
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self.dt, self.phase, self.rows, self.stop = dt, "idle", [], False

    def run(self) -> None:
        nv, h = self.nv, self.h
        while not self.stop:
            try:
                sm = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
                pw = nv.nvmlDeviceGetPowerUsage(h) / 1e3
                thr = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
            except Exception:  # noqa: BLE001 - an NVML call missing in this binding: keep sampling
                sm, pw, thr = -1, -1.0, -1
            self.rows.append((time.perf_counter(), self.phase, sm, pw, thr))
            time.sleep(self.dt)

    def stats(self, phase: str) -> dict:
        r = [x for x in self.rows if x[1] == phase and x[2] > 0]
        if not r:
            return {"samples": 0}
        return {"samples": len(r), "sm_mhz_mean": statistics.fmean(x[2] for x in r),
                "sm_mhz_min": min(x[2] for x in r), "power_w_mean": statistics.fmean(x[3] for x in r),
                "power_w_max": max(x[3] for x in r),
                "throttle_reasons": sorted({hex(x[4]) for x in r})}


def _events_time(fn, n: int) -> float:
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn(n)
    b.record()
    b.synchronize()
    return a.elapsed_time(b) * 1e-3


def probe(shape, smp: Sampler, heat_s: float) -> dict:
    dt, m, n, k = shape
    case = gemm(m=m, n=n, k=k, dtype=dt, device="cuda")
    sets = case.sets
    out: dict = {"dtype": dt, "m": m, "n": n, "k": k, "flops": case.flops, "impl": case.impl}
    key = f"{dt}-{m}x{n}x{k}"

    def calls(c: int, start: int = 0) -> None:
        for i in range(c):
            case.fn(*sets[(start + i) % len(sets)])

    smp.phase = f"{key}:table"
    tm = time_cuda(case.fn, sets)
    out["table_s"], out["table_clock"] = tm.time_s, smp.stats(f"{key}:table")
    ts = []
    for _ in range(5):
        smp.phase = "idle"
        time.sleep(0.3)
        smp.phase = f"{key}:isolated"
        ts.append(_events_time(lambda c: calls(c), 1))
    out["isolated_s"], out["isolated_clock"] = statistics.median(ts), smp.stats(f"{key}:isolated")
    smp.phase = "idle"
    time.sleep(0.3)
    smp.phase = f"{key}:b2b20"
    out["b2b20_s"] = _events_time(lambda c: calls(c), 20) / 20
    out["b2b20_clock"] = smp.stats(f"{key}:b2b20")
    # sustained: a graph of >= 20 ms of calls replayed for heat_s, then timed replays
    per = max(tm.time_s, 1e-6)
    nc = max(len(sets), int(0.02 / per))
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        calls(1)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        calls(nc)
    smp.phase = f"{key}:heat"
    end = time.perf_counter() + heat_s
    while time.perf_counter() < end:
        g.replay()
        torch.cuda.synchronize()
    smp.phase = f"{key}:sustained"
    reps = [_events_time(lambda c: [g.replay() for _ in range(c)], 1) / nc for _ in range(10)]
    out["sustained_s"], out["sustained_clock"] = statistics.median(reps), smp.stats(f"{key}:sustained")
    out["heat_clock"] = smp.stats(f"{key}:heat")
    smp.phase = "idle"

    torch.cuda.empty_cache()
    return out


def copy_probe(smp: Sampler, heat_s: float) -> dict:
    """A 2 GiB device copy (memory-bound) the same ways: table, isolated, sustained."""
    a = torch.randn(2**29, device="cuda")  # 2 GiB fp32
    b = torch.empty_like(a)
    fn = lambda x, y: y.copy_(x)
    smp.phase = "copy:table"
    tm = time_cuda(fn, [(a, b)])
    out = {"op": "copy 2 GiB fp32", "bytes": 2 * a.numel() * 4, "table_s": tm.time_s,
           "table_clock": smp.stats("copy:table")}
    ts = []
    for _ in range(5):
        smp.phase = "idle"
        time.sleep(0.3)
        smp.phase = "copy:isolated"
        ts.append(_events_time(lambda c: [fn(a, b) for _ in range(c)], 1))
    out["isolated_s"], out["isolated_clock"] = statistics.median(ts), smp.stats("copy:isolated")
    # heat the board with a GEMM, then time the copy at the sustained clock
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    smp.phase = "copy:heat"
    end = time.perf_counter() + heat_s
    while time.perf_counter() < end:
        for _ in range(50):
            x @ x
        torch.cuda.synchronize()
    smp.phase = "copy:sustained"
    reps = []
    for _ in range(10):
        for _ in range(20):
            x @ x
        reps.append(_events_time(lambda c: [fn(a, b) for _ in range(c)], 1))
    out["sustained_s"], out["sustained_clock"] = statistics.median(reps), smp.stats("copy:sustained")
    smp.phase = "idle"
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--heat", type=float, default=2.0, help="seconds of back-to-back replays before 'sustained'")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    smp = Sampler()
    smp.start()
    time.sleep(0.5)
    rows = []
    for sh in SHAPES:
        try:
            rows.append(probe(sh, smp, a.heat))
        except Exception as e:  # noqa: BLE001 - one shape failing keeps the others
            rows.append({"shape": list(sh), "error": f"{type(e).__name__}: {e}"})
        r = rows[-1]
        if "table_s" in r:
            print(f"{r['dtype']:5s} {r['m']:6d}x{r['n']:5d}x{r['k']:5d}  table {r['table_s'] * 1e6:9.1f} us "
                  f"({r['table_clock'].get('sm_mhz_mean', 0):6.0f} MHz)  isolated {r['isolated_s'] * 1e6:9.1f}  "
                  f"b2b20 {r['b2b20_s'] * 1e6:9.1f}  sustained {r['sustained_s'] * 1e6:9.1f} us "
                  f"({r['sustained_clock'].get('sm_mhz_mean', 0):6.0f} MHz, "
                  f"{r['sustained_clock'].get('power_w_mean', 0):5.0f} W)", flush=True)
        else:
            print(r, flush=True)
    try:
        rows.append(copy_probe(smp, a.heat))
        r = rows[-1]
        print(f"copy  table {r['table_s'] * 1e6:.1f} us isolated {r['isolated_s'] * 1e6:.1f} sustained "
              f"{r['sustained_s'] * 1e6:.1f} us ({r['sustained_clock'].get('sm_mhz_mean', 0):.0f} MHz)", flush=True)
    except Exception as e:  # noqa: BLE001
        rows.append({"op": "copy", "error": f"{type(e).__name__}: {e}"})
    smp.stop = True
    smp.join()
    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "python benchmarks/probe_sustained_clock.py " + " ".join(sys.argv[1:])}
    try:
        nv = smp.nv
        env["power_limit_w"] = nv.nvmlDeviceGetEnforcedPowerLimit(smp.h) / 1e3
        env["max_sm_mhz"] = nv.nvmlDeviceGetMaxClockInfo(smp.h, nv.NVML_CLOCK_SM)
    except Exception:  # noqa: BLE001
        pass
    Path(a.out).write_text(json.dumps({"env": env, "rows": rows,
                                       "samples": [list(x) for x in smp.rows]}, indent=0))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
