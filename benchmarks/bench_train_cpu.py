"""Tiny-model training throughput on CPU (tokens/s), FP32 vs FP8-emulated, plus the loss after N steps.
Not a test. Usage:  python benchmarks/bench_train_cpu.py [--steps 20] [--threads 2] [--out reports/bench_train_cpu.json]
The FP8 emulation is exact-math (per-128 chunk FP32 GEMMs), so it shows correctness cost, not FP8 speed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config
from dsv3sim.nn.train import TrainOptions, train


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--fp8-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_model_config(a.config)
    rows = {}
    for name, fp8, steps in (("fp32", False, a.steps), ("fp8_emulated", True, a.fp8_steps)):
        _, r = train(cfg, TrainOptions(steps=steps, fp8=fp8, seed=0))
        rows[name] = {"steps": steps, "tokens_per_s": r["tokens_per_s"], "s_per_step": r["train_s"] / steps,
                      "tokens_per_cpu_s": steps * r["batch"] * r["seq_len"] / r["train_cpu_s"],
                      "loss_first": r["loss_first"], "loss_last": r["loss_last"]}
    import os

    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores (wall-clock figures shrink with other load)")
    print(f"{'path':14s} {'tokens/s':>10s} {'tokens/cpu-s':>13s} {'s/step':>8s}")
    for k, v in rows.items():
        print(f"{k:14s} {v['tokens_per_s']:10.0f} {v['tokens_per_cpu_s']:13.0f} {v['s_per_step']:8.3f}")
    print(f"fp8-emulated / fp32 time per step: {rows['fp8_emulated']['s_per_step'] / rows['fp32']['s_per_step']:.1f}x")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        out = {"config": cfg.name, "threads": a.threads, "load_average": load, **rows}
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
