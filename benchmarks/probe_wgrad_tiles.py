"""Tile configurations of the grouped FP8 Wgrad kernel (nn/fp8_triton.py ``grouped_wgrad``) at both expert regimes.

Usage (GPU machine, repository root):
    python benchmarks/probe_wgrad_tiles.py --out profiles/h200/fp8_wgrad_tiles.json [--tokens 16384]

Regimes (the routed rows of --tokens tokens x top-8):
  ep32       8 local experts, ~128 token tiles each (a rank of EP32): long per-program loops;
  one_layer  256 experts, ~4 token tiles each (the one-layer model on one GPU): short loops, the prologue and the
             epilogue weigh.
Per regime and config: TFLOP/s of the gate Wgrad (N = I, K = H) and of the down Wgrad (N = H, K = I), CUDA events
after warm-up, median of --reps back-to-back calls, and the output's relative difference from the default
config (the same FP32 promotion order: ~0). ``fused_gate_up``: gate and up as one N = 2I launch (one weight
gradient [E, 2I, H] split in two views) against the two launches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_layer import timed

from dsv3sim.config.model import load_model_config
from dsv3sim.nn import fp8_experts as X

CONFIGS = {
    "BM64_BN128_w4_s3": {},
    "BM64_BN128_w4_s4": {"num_stages": 4},
    "BM64_BN128_w4_s5": {"num_stages": 5},
    "BM64_BN256_w4_s3": {"BN": 256},
    "BM64_BN256_w8_s3": {"BN": 256, "num_warps": 8},
    "BM128_BN128_w8_s3": {"BM": 128, "num_warps": 8},
    "BM128_BN128_w8_s4": {"BM": 128, "num_warps": 8, "num_stages": 4},
    "BM128_BN256_w8_s3": {"BM": 128, "BN": 256, "num_warps": 8},
    "BM128_BN128_w4_s3": {"BM": 128, "num_warps": 4},
    "BM64_BN64_w4_s4": {"BN": 64, "num_stages": 4},
}


def counts_for(regime: str, rows: int, dev: str) -> torch.Tensor:
    e = 8 if regime == "ep32" else 256
    g = torch.Generator(device=dev).manual_seed(0)
    return torch.bincount(torch.randint(0, e, (rows,), device=dev, generator=g), minlength=e)


def operands(n_rows: int, counts: torch.Tensor, width: int, dev: str):
    """Column-wise quantised operand (qT [width, M_pad], s_col) of random rows in the grouped layout."""
    from dsv3sim.nn import fp8_triton as K

    lay = X.layout_from_counts(counts, n_rows)
    x = torch.randn(n_rows, width, device=dev, dtype=torch.bfloat16)
    _, _, qt, st = K.quant(x, src=lay.src, rows_out=lay.rows, rowwise=False, colwise=True)
    return lay, qt, st


def regime(name: str, a, cfg) -> dict:
    from dsv3sim.nn import fp8_triton as K

    dev, H, I = "cuda", cfg.hidden_size, cfg.moe_intermediate_size
    rows = a.tokens * cfg.num_experts_per_tok
    counts = counts_for(name, rows, dev)
    lay, xqt, xst = operands(rows, counts, H, dev)
    _, gqt, gst = operands(rows, counts, 2 * I, dev)
    _, dyqt, dyst = operands(rows, counts, H, dev)
    _, hqt, hst = operands(rows, counts, I, dev)
    flop = 2 * rows * H * I
    kinds = {"gate": lambda c: K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, 0, cfg=c),
             "down": lambda c: K.grouped_wgrad(dyqt, dyst, hqt, hst, lay.tile_start, lay.n_tiles, H, cfg=c)}
    out: dict = {"experts": int(counts.numel()), "rows": rows,
                 "tiles_per_expert_mean": float(lay.n_tiles.float().mean())}
    for kind, fn in kinds.items():
        ref = fn({}).float()
        for cname, c in CONFIGS.items():
            key = f"{kind}_{cname}"
            try:
                t = timed(lambda c=c: fn(c), a.reps)
                o = fn(c).float()
                kern = K.LAST["wgrad"]
                out[key] = {"tflops": flop / t / 1e12, "ms": t * 1e3,
                            "rel_diff": float((o - ref).norm() / ref.norm()),
                            "regs_spills_smem": [kern.n_regs, kern.n_spills, kern.metadata.shared]}
            except Exception as e:  # noqa: BLE001 - a config that does not compile is a result
                out[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
            torch.cuda.empty_cache()
    two = timed(lambda: (kinds["gate"]({}),
                         K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, I, I)), a.reps)
    one = timed(lambda: K.grouped_wgrad(gqt, gst, xqt, xst, lay.tile_start, lay.n_tiles, 2 * I, 0), a.reps)
    out["fused_gate_up"] = {"two_launches_ms": two * 1e3, "one_launch_ms": one * 1e3, "speedup": two / one}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="one-layer")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--regimes", default="ep32,one_layer")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = load_model_config(a.config)
    res: dict = {"command": " ".join(sys.argv), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "tokens": a.tokens}
    for name in a.regimes.split(","):
        res[name] = regime(name, a, cfg)
        Path(a.out).write_text(json.dumps(res, indent=1))
        for kind in ("gate", "down"):
            ok = {k: v["tflops"] for k, v in res[name].items() if k.startswith(kind) and "tflops" in v}
            best = max(ok, key=ok.get)
            print(f"[{name}] {kind}: best {best} {ok[best]:.0f} TFLOP/s, default {ok.get(kind + '_BM64_BN128_w4_s3')}",
                  flush=True)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
