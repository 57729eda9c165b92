"""Benchmark: one DeepSeek-V3 decode MoE layer on H200 at EP 8, 16, 32, 128, three ways.

    python benchmarks/bench_serving_decode.py > benchmarks/bench_serving_decode.out.txt

Per micro-batch of B requests per GPU (context 4500 = ISL 4000 + OSL 1000 / 2, no MTP, topology h200-hgx):
- model: the serving model's MoE layer (workload/decode_ops.py: weight-read-bound grouped GEMMs at the H200
  tables' small-M streaming rate, shared expert, router, CUDA-graph launch per kernel) + the low-latency
  dispatch and combine (NVLink inside a node, IB across nodes);
- roofline: the same MoE kernels' max(FLOPs / dense peak, bytes / HBM peak) with no launch cost (computation
  only; the all-to-all columns are the model's);
- tables: the H200 kernel tables' own grouped-GEMM prediction (dsv3sim.profile.predict: cuBLAS block-scaled FP8
  per expert, the kernel the profiler measured) for the routed experts, with the rest as the model prices it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config
from dsv3sim.config.scenario import DecodeWorkload, ParallelDims, Scenario
from dsv3sim.profile.predict import kernel_time
from dsv3sim.workload import simulate
from dsv3sim.workload.decode_ops import decode_constants, decode_layer_kernels
from dsv3sim.workload.kernels import gpu_perf

LAYER = 10  # a MoE layer


def main() -> None:
    cfg = load_model_config("deepseek-v3")
    g = gpu_perf("H200")
    k = decode_constants()
    print(f"# {k.source}")
    print("ep  B  rows/GPU  experts/GPU | model: experts  shared+router  dispatch  combine  MoE total | "
          "roofline MoE | tables experts | model/roofline")
    for ep in (8, 16, 32, 128):
        for b in (4, 64):
            s = Scenario(name=f"dec-ep{ep}-b{b}", topology="h200-hgx", parallel=ParallelDims(ep=ep),
                         workload=DecodeWorkload(batch_per_gpu=b, mtp=False, context_len=4500, micro_batches=1))
            r = simulate(s)
            rows = r.metrics["batch_per_gpu"] * cfg.num_experts_per_tok  # uniform: rows per GPU = B x topk
            le = cfg.n_routed_experts // ep
            ks = decode_layer_kernels(cfg, LAYER, gpu="H200", requests=b, q=1, context=4500, expert_rows=rows,
                                      local_experts=le)
            moe = [x for x in ks if x.slice == "mlp(F)" or x.name in ("router", "topk")]
            exp_t = sum(x.time_s for x in moe if x.name.startswith("experts"))
            rest = sum(x.time_s for x in moe) - exp_t
            disp, comb = r.layer_time_s.get("dispatch(F)", 0.0), r.layer_time_s.get("combine(F)", 0.0)
            roof = sum(max(x.flops / g.fp8_flops, x.bytes / g.hbm_bw) for x in moe)
            m = max(1, rows // le)
            tab = (kernel_time("H200", "grouped_gemm", "fp8", e=le, m=m, n=2 * cfg.moe_intermediate_size,
                               k=cfg.hidden_size).time_s
                   + kernel_time("H200", "grouped_gemm", "fp8", e=le, m=m, n=cfg.hidden_size,
                                 k=cfg.moe_intermediate_size).time_s)
            total = exp_t + rest + disp + comb
            print(f"{ep:3d} {b:3d} {rows:8d} {le:11d} | {exp_t * 1e6:14.1f} {rest * 1e6:14.1f} {disp * 1e6:9.1f} "
                  f"{comb * 1e6:8.1f} {total * 1e6:10.1f} | {roof * 1e6:12.1f} | {tab * 1e6:14.1f} | "
                  f"{(exp_t + rest) / roof:5.2f}")


if __name__ == "__main__":
    main()
