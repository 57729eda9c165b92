"""Where the FP8 layer's time goes: torch.profiler over one forward+backward of the full-width V3 Block
(model/one-layer.json) in FP8 after a warm-up step (weights cached), top ops by self CPU and by GPU time.
Not a test. Usage (H200): python benchmarks/profile_layer_fp8.py [--tokens 16384] [--out FILE]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config
from dsv3sim.nn.block import Block
from dsv3sim.nn.layers import rope_cos_sin, yarn_inv_freq


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = load_model_config("one-layer")
    if not cfg.is_moe_layer(0):
        cfg = cfg.with_(first_k_dense_replace=0)
    dt, dev = torch.bfloat16, "cuda"
    S = min(a.seq_len, a.tokens)
    B = max(1, a.tokens // S)
    torch.set_default_dtype(dt)
    with torch.device(dev):
        blk = Block(cfg, 0)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for n_, p in blk.named_parameters():
            if n_.endswith("e_score_correction_bias"):
                p.zero_()
            else:
                p.fill_(1.0) if p.dim() == 1 else p.normal_(0, 0.02)
    for m in blk.modules():
        if hasattr(m, "fp8"):
            m.fp8 = True
    inv, msc = yarn_inv_freq(cfg)
    cos, sin = rope_cos_sin(inv.to(dev), torch.arange(S, device=dev), msc)
    h = torch.randn(B, S, cfg.hidden_size, device=dev, dtype=dt, requires_grad=True)
    gy = torch.randn_like(h)

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
