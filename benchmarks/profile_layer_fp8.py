"""Where the FP8 layer's time goes: torch.profiler over one forward+backward of the full-width V3 Block
(model/one-layer.json) in FP8 after a warm-up step (weights cached), top ops by self CPU and by GPU time.
Not a test. Usage (H200): python benchmarks/profile_layer_fp8.py [--tokens 16384] [--out FILE]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_layer import batch_shape, moe_config, one_layer, set_fp8


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = moe_config("one-layer")
    B, S = batch_shape(a.tokens, a.seq_len)
    lc = one_layer(cfg, B, S, cast=False)
    set_fp8(lc.blk, True)
    blk, cos, sin, h, gy = lc.blk, lc.cos, lc.sin, lc.h, lc.gy

    def step():
        blk(h, cos, sin).backward(gy)
        blk.zero_grad(set_to_none=True)
        h.grad = None

    step()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    ka = prof.key_averages()
    lines = ["== by self CPU time ==", ka.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48),
             "== by self GPU time ==", ka.table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=48)]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
