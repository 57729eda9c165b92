"""Side by side with AIConfigurator's answer: DeepSeek-V3 on 32 H200, ISL 4000, OSL 1000.

    python benchmarks/bench_serving_aiconfigurator.py > benchmarks/bench_serving_aiconfigurator.out.txt

AIConfigurator 0.12.0 (``aiconfigurator cli default --model-path <V3 config.json> --total-gpus 32 --system
h200_sxm --isl 4000 --osl 1000 --ttft 2000 --tpot 50``, TRT-LLM 1.3.0rc20 database, FP8 KV cache, no MTP unless
--nextn is given) answers 495 tok/s/GPU disaggregated and 309 aggregated (``AIC_*`` below). For disaggregated it
chose 1 prefill + 1 decode worker, each DP16 / EP16 on 16 H200,
decode batch 64 per GPU, and predicts TPOT 46 ms (the figure quoted to us; its TTFT and tokens/s/GPU are printed
where known). We simulate the same layout (topology h200-hgx: NVLink 900 GB/s per GPU in a node, 400G IB
across the two nodes), without and with two-batch overlap and MTP, and break TPOT into the terms that make it,
each with its source (measured: the committed H200 tables; published: DeepSeek's kernel figures).
tokens/s/GPU = system output tokens/s / 32 GPUs, the system running at the slower of the decode worker
(16 x output tokens/s per GPU) and the prefill worker (its prompts/s x OSL).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config
from dsv3sim.config.scenario import AggregatedWorkload, DecodeWorkload, ParallelDims, PrefillWorkload, Scenario
from dsv3sim.workload import simulate
from dsv3sim.workload.decode_ops import decode_constants, decode_layer_kernels

ISL, OSL, BATCH, GPUS = 4000, 1000, 64, 32
AIC_TPOT_S = 0.046  # AIConfigurator's predicted TPOT for this layout (as quoted)
LAYOUT = ParallelDims(ep=16)  # DP16 attention follows the 16 GPUs


def prefill(mb: int):
    s = Scenario(name=f"aic-prefill-mb{mb}", topology="h200-hgx", parallel=LAYOUT, comm_model="bound",
                 workload=PrefillWorkload(prompt_len=ISL, tokens_per_gpu=ISL * mb if mb > 1 else ISL, micro_batches=mb))
    return simulate(s)


def decode(mb: int, mtp: bool):
    s = Scenario(name=f"aic-decode-mb{mb}-{'mtp' if mtp else 'nomtp'}", topology="h200-hgx", parallel=LAYOUT,
                 workload=DecodeWorkload(context_len=ISL + OSL // 2, output_len=OSL, batch_per_gpu=BATCH,
                                         micro_batches=mb, mtp=mtp))
    return simulate(s)


def breakdown() -> None:
    """TPOT terms of the no-overlap, no-MTP decode step (per token = per step)."""
    cfg = load_model_config("deepseek-v3")
    r = decode(1, False)
    rows = r.metrics["batch_per_gpu"] * cfg.num_experts_per_tok
    groups: dict[str, float] = {}
    n_k = 0
    for i in range(cfg.num_hidden_layers):
        for k in decode_layer_kernels(cfg, i, gpu="H200", requests=BATCH, q=1, context=ISL + OSL // 2,
                                      expert_rows=rows, local_experts=16, ep=16):
            g = ("routed experts (weight read)" if k.name.startswith("experts") else
                 "DeepEP low-latency send/receive kernels" if k.name.startswith("ll_") else
                 "FlashMLA attention" if k.name == "flashmla" else
                 "dense/shared/attention GEMMs" if k.bound != "launch" else "small kernels (launch-bound)")
            groups[g] = groups.get(g, 0.0) + k.time_s - decode_constants().launch_s
            groups["CUDA-graph launch"] = groups.get("CUDA-graph launch", 0.0) + decode_constants().launch_s
            n_k += 1
    comm = sum(r.layer_time_s.get(n, 0.0) for n in ("dispatch(F)", "combine(F)")) * cfg.n_moe_layers
    groups["low-latency all-to-all (exposed, 58 MoE layers)"] = comm
    src = {"routed experts (weight read)": "measured: H200 small-M grouped GEMMs stream at "
                                           f"{decode_constants().stream_fraction:.2f} of HBM",
           "FlashMLA attention": "published: FlashMLA 580 TFLOPS / 3000 GB/s on H800, as fractions of H200 peaks",
           "dense/shared/attention GEMMs": "published: DeepGEMM M=64 FP8 rows stream at "
                                           f"{decode_constants().fp8_dense_stream_fraction:.2f} of HBM; BF16 measured "
                                           f"{decode_constants().dense_stream_fraction:.2f}",
           "small kernels (launch-bound)": "measured: H200 graph-replay floor",
           "DeepEP low-latency send/receive kernels": "message copies / top-k reduce at FlashMLA's published HBM rate",
           "CUDA-graph launch": f"measured: {decode_constants().launch_s * 1e6:.2f} us x {n_k} kernels",
           "low-latency all-to-all (exposed, 58 MoE layers)": "topology h200-hgx link bound (NVLink + 400G IB)"}
    print(f"\nTPOT terms, decode DP16/EP16, batch {BATCH}, 1 micro-batch, no MTP (step {r.metrics['tpot_s'] * 1e3:.1f} ms;"
          " the terms leave out the output head and the time the one chain waits on its own all-to-all latency)")
    for k, v in groups.items():
        print(f"  {k:<50s} {v * 1e3:7.2f} ms   {src[k]}")


AIC_AGG = {"tok_s_gpu": 309.17, "batch": 11, "ttft_s": 1.992, "tpot_s": 0.0332, "ctx_tokens": 4000}  # agg top-1
AIC_DISAGG = {"tok_s_gpu": 495.14, "ttft_s": 1.636, "tpot_s": 0.0463}  # disagg top-1: P DP16/EP16 + D DP16/EP16


def aic_ttft_factor(b: int) -> float:
    """AIConfigurator's TTFT queueing heuristic (aiconfigurator_core sdk/backends/base_backend.py,
    ``_ttft_queuing_factor``): b requests arriving together, min(2 + (ceil(isl b / ctx) - 3) / 20, 4)."""
    steps = -(-ISL * b // AIC_AGG["ctx_tokens"])
    return min(2 + (steps - 3) / 2 / 10, 4)


def aggregated_ttft_rules() -> None:
    """Our aggregated instance on AIConfigurator's agg layout (DP16/EP16, no MTP, one 4000-token chunk per
    iteration) over the batch: TTFT by our M/D/1 rule and by AIConfigurator's heuristic factor x the iteration
    that carries the whole prompt; the best batch under TTFT 2 s / TPOT 50 ms by each rule."""
    print("\naggregated DP16/EP16 on 16 H200, no MTP, chunk 4000 (AIConfigurator's agg top-1 layout):")
    print(f"{'batch/GPU':>9s} {'TPOT ms':>8s} {'chunk-step ms':>13s} {'TTFT M/D/1 s':>12s} {'TTFT AIC rule s':>15s} "
          f"{'tok/s/GPU':>10s}")
    best = {"ours": (0, 0), "aic": (0, 0)}
    for b in (8, 11, 16, 24, 32, 48, 64):
        r = simulate(Scenario(name=f"aic-agg-b{b}", topology="h200-hgx", parallel=ParallelDims(ep=16),
                              comm_model="bound",
                              workload=AggregatedWorkload(prompt_len=ISL, output_len=OSL, batch_per_gpu=b,
                                                          chunk_tokens=AIC_AGG["ctx_tokens"], mtp=False)))
        m = r.metrics
        t_aic = aic_ttft_factor(b) * m["tpot_chunk_s"]
        tps = m["output_tokens_per_s_per_gpu"]
        print(f"{b:9d} {m['tpot_s'] * 1e3:8.1f} {m['tpot_chunk_s'] * 1e3:13.0f} {m['ttft_s']:12.2f} {t_aic:15.2f} "
              f"{tps:10.0f}")
        if m["tpot_s"] <= 0.05:
            for k, ttft in (("ours", m["ttft_s"]), ("aic", t_aic)):
                if ttft <= 2.0 and tps > best[k][1]:
                    best[k] = (b, tps)
    print(f"best under TTFT 2 s / TPOT 50 ms: our TTFT rule batch {best['ours'][0]} -> {best['ours'][1]:.0f} "
          f"tok/s/GPU; AIConfigurator's rule batch {best['aic'][0]} -> {best['aic'][1]:.0f} "
          f"(AIConfigurator: batch {AIC_AGG['batch']}, {AIC_AGG['tok_s_gpu']:.0f}, TTFT {AIC_AGG['ttft_s']:.2f} s, "
          f"TPOT {AIC_AGG['tpot_s'] * 1e3:.1f} ms)")


def main() -> None:
    print("layout: 1 prefill + 1 decode worker, each DP16/EP16 on 16 H200; ISL 4000, OSL 1000, decode batch 64/GPU")
    print(f"{'variant':<34s} {'TTFT s':>8s} {'TPOT ms':>8s} {'tok/s/GPU':>10s}   AIConfigurator TPOT {AIC_TPOT_S * 1e3:.0f} ms")
    for mb_p, mb_d, mtp in ((1, 1, False), (2, 2, False), (1, 1, True), (2, 2, True)):
        p, d = prefill(mb_p), decode(mb_d, mtp)
        ttft = p.metrics["ttft_s"] * ISL / p.metrics["tokens_per_gpu"] if mb_p > 1 else p.metrics["ttft_s"]
        dec_out = 16 * d.metrics["decode_tokens_per_s_per_gpu"]
        pre_out = 16 * p.metrics["prefill_tokens_per_s_per_gpu"] / ISL * OSL
        tps = min(dec_out, pre_out) / GPUS
        name = f"prefill mb{mb_p}, decode mb{mb_d}, {'MTP' if mtp else 'no MTP'}"
        err = (d.metrics["tpot_s"] - AIC_TPOT_S) / AIC_TPOT_S
        print(f"{name:<34s} {ttft:8.3f} {d.metrics['tpot_s'] * 1e3:8.1f} {tps:10.0f}   TPOT {err:+.0%}"
              f"{'  (prefill-bound)' if pre_out < dec_out else ''}")
    agg = simulate(Scenario(name="aic-aggregated", topology="h200-hgx", parallel=ParallelDims(ep=32),
                            comm_model="bound", workload=AggregatedWorkload(prompt_len=ISL, output_len=OSL,
                                                                            batch_per_gpu=BATCH)))
    if hasattr(agg, "metrics"):
        m = agg.metrics
        print(f"{'aggregated on 32 GPUs (EP32, chunk 8192)':<34s} {m['ttft_s']:8.3f} {m['tpot_s'] * 1e3:8.1f} "
              f"{m['output_tokens_per_s_per_gpu']:10.0f}   (TPOT with a full chunk {m['tpot_chunk_s'] * 1e3:.0f} ms)")
    else:
        print(f"aggregated: infeasible: {agg.reason}")
    aggregated_ttft_rules()
    breakdown()


if __name__ == "__main__":
    main()
