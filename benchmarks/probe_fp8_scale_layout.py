"""Probe: which 128x128 scale-tensor layout does cuBLAS's block-scaled FP8 GEMM (torch._scaled_mm) read?

Hypothesis under test (H200, torch 2.11 + CUDA 13): the B-operand scale tensor [K/128 (contraction) x N/128]
is read with its contraction dimension padded to a multiple of 4, so a tensor stored with exactly K/128 per row
is misread when K/128 % 4 != 0: wrong results (the Dgrad errors of nn/fp8.py) or an illegal address (the 4
crashed profiler shapes, all with K/128 in {2, 3, 10}).

For each (M, N, K) and layout, prints the relative error of _scaled_mm against the dequantised reference.
Layouts: 'exact' (what dsv3sim passes today: storage [N/128, K/128] row-major, viewed transposed) and 'pad4'
(storage [N/128, roundup(K/128, 4)], the extra columns unused). Run each layout in its own process: an illegal
address poisons the CUDA context.

    python benchmarks/probe_fp8_scale_layout.py exact|pad4 [--json out.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from dsv3sim.nn.fp8 import dequantize as dequant
from dsv3sim.nn.fp8 import quantize_1x128, quantize_128x128

SHAPES = [(256, 384, 512), (256, 512, 384), (252, 640, 256), (380, 5376, 256), (484, 4992, 256),
          (108, 18304, 1280), (216, 4224, 384), (512, 7168, 640), (512, 4096, 768), (512, 576, 7168),
          (512, 7168, 576 // 64 * 64), (1024, 2048, 1536), (1024, 1536, 2048)]


def scale_b(sw: torch.Tensor, layout: str) -> torch.Tensor:
    nb, kb = sw.shape
    if layout == "exact":
        return sw.contiguous().t()
    ld = -(-kb // 4) * 4
    buf = torch.full((nb, ld), float("nan"), device=sw.device)  # unused slots: NaN makes a misread visible
    buf[:, :kb] = sw
    return buf[:, :kb].t()


def main() -> int:
    layout = sys.argv[1]
    out = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for m, n, k in SHAPES:
        if k % 128:
            continue
        x = torch.randn(m, k, device="cuda", generator=g)
        w = torch.randn(n, k, device="cuda", generator=g)
        aq, sa = quantize_1x128(x)
        wq, sw = quantize_128x128(w)
        ref = dequant(aq, sa, 1) @ dequant(wq, sw, 128).t()
        sa_ = sa.t().contiguous().t()
        try:
            c = torch._scaled_mm(aq, wq.t(), sa_, scale_b(sw, layout), out_dtype=torch.bfloat16).float()
            torch.cuda.synchronize()
            err = ((c - ref).norm() / ref.norm()).item()
        except Exception as e:  # noqa: BLE001 - a refused layout is a result
            err = f"{type(e).__name__}: {str(e)[:80]}"
        row = {"layout": layout, "m": m, "n": n, "k": k, "k_blocks": k // 128, "rel_err": err}
        print(json.dumps(row), flush=True)
        out.append(row)
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
