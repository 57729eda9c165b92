"""DeepSeek's Day-6 serving figures next to the simulator: capacity at the SLA batch, and the 24-hour average
that a diurnal load on an autoscaled fleet gives (``workload/fleet.py``; no published per-node figure or node
count used as input).

    python benchmarks/bench_serving_day6.py [--peak-to-mean 1.5] [--scale-interval-h 12] > benchmarks/bench_serving_day6.out.txt

Capacity: ``decode_day6`` (EP144, MTP 0.875, average KV length 4,989) swept over the batch; the SLA batch is the
largest with >= 20 tokens/s per user (Day 6: 20-22). ``prefill_day6_traffic`` (EP32, 56.3 % hits applied,
input tokens counted as published; prompts of the mean Day 6's token totals and KV length imply, 3,909 tokens,
exponentially distributed: ``workload/prompt_lengths.py``) swept over tokens per GPU; the profile-data batch (16K
tokens per GPU) is the SLA batch. Also printed: the capacity with fixed 4,096-token prompts (profile-data). Load: the day's published token totals (608B in, 168B out) on a diurnal curve; Day-6 deployment units
(prefill 4 nodes, decode 18 nodes), one warm unit each, for each of the two services Day 6 combines (V3 and
R1; equal shares of the load assumed). Day 6's node count (226.75 average, 278 peak) is only
compared with, never used.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsv3sim.plan.fleet import decode_pool, prefill_pool  # noqa: E402
from dsv3sim.workload import simulate  # noqa: E402
from dsv3sim.workload.fleet import (  # noqa: E402
    DAY6_DECODE_UNIT_NODES,
    DAY6_PREFILL_UNIT_NODES,
    Autoscaler,
    DiurnalLoad,
    fleet_day,
)

DECODE_BATCHES = (16, 32, 64, 96, 112, 120, 128, None)
PREFILL_TOKENS = (2048, 4096, 8192, 16384)
PUBLISHED_PEAK_NODES = 278.0  # Day 6: output check only


def _scenarios():
    sp = importlib.util.spec_from_file_location("srv", ROOT / "scenarios" / "deepseek_v3_serving.py")
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    return m


def curves(m):
    dec = []
    for b in DECODE_BATCHES:
        r = simulate(m.decode_day6().with_(workload={"batch_per_gpu": b}))
        if hasattr(r, "metrics"):
            x = r.metrics
            dec.append((x["batch_per_gpu"], x["decode_tokens_per_s_per_node"], x["tokens_per_s_per_request"]))
    pre = []
    for t in PREFILL_TOKENS:
        x = simulate(m.prefill_day6_traffic().with_(workload={"tokens_per_gpu": t})).metrics
        pre.append((t, x["prefill_input_tokens_per_s_per_node"], x["ttft_s"]))
    return pre, dec


def day6_fleet(load: DiurnalLoad, sc: Autoscaler, services: int):
    """(serving scenarios module, prefill pool, decode pool, ``fleet_day`` result) for Day 6's daily tokens."""
    m = _scenarios()
    pre, dec = curves(m)
    dp = decode_pool(dec, min_speed=m.PUBLISHED_OUTPUT_SPEED[0], unit_nodes=DAY6_DECODE_UNIT_NODES, gpus_per_node=8)
    w = m.prefill_day6_traffic().workload
    pp = prefill_pool([p for p in pre if p[0] <= w.tokens_per_gpu], ttft_s=None, isl=w.prompt_len,
                      cache_hit=w.cache_hit_rate, unit_nodes=DAY6_PREFILL_UNIT_NODES, gpus_per_node=8)
    f = fleet_day(prefill=pp, decode=dp, daily_input_tokens=m.PUBLISHED_DAY_INPUT_TOKENS,
                  daily_output_tokens=m.PUBLISHED_DAY_OUTPUT_TOKENS, load=load, scaler=sc, services=services)
    return m, pp, dp, f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak-to-mean", type=float, default=DiurnalLoad().peak_to_mean)
    ap.add_argument("--shape", default="sinusoid")
    ap.add_argument("--scale-interval-h", type=float, default=Autoscaler().scale_interval_h)
    ap.add_argument("--services", type=int, default=2,
                    help="separately deployed models (Day 6: 'V3 and R1 inference services' -> 2, equal shares)")
    a = ap.parse_args()
    load = DiurnalLoad(shape=a.shape, peak_to_mean=a.peak_to_mean)
    sc = Autoscaler(scale_interval_h=a.scale_interval_h)
    m, pp, dp, f = day6_fleet(load, sc, a.services)
    speed = m.PUBLISHED_OUTPUT_SPEED[0]
    p, d = f["prefill"], f["decode"]
    pub_p, pub_d = m.PUBLISHED_PREFILL_TOKENS_PER_S_PER_NODE, m.PUBLISHED_DECODE_TOKENS_PER_S_PER_NODE
    print(f"# load: {load.shape}, peak/mean {load.peak_to_mean:g}; autoscaling every {sc.scale_interval_h:g} h in "
          f"units of {DAY6_PREFILL_UNIT_NODES} (prefill) / {DAY6_DECODE_UNIT_NODES} (decode) nodes; burst "
          f"quantile {sc.burst_quantile:g}; {a.services} service(s) on equal shares")
    print(f"# SLA batch: decode {dp.sla_batch_per_gpu:.0f} requests/GPU (>= {speed:g} tok/s/user), prefill "
          f"{pp.sla_batch_per_gpu:.0f} tokens/GPU per step")
    print(f"{'figure':<62s} {'simulated':>10s} {'published':>10s} {'error':>7s}")
    rows = [("prefill input tok/s per node, capacity (hits 56.3 %)", p["capacity_tokens_per_s_per_node"], pub_p),
            ("decode output tok/s per node, capacity at the SLA batch", d["capacity_tokens_per_s_per_node"], pub_d),
            ("prefill input tok/s per node, 24 h average (load model)", p["tokens_per_s_per_node_average"], pub_p),
            ("decode output tok/s per node, 24 h average (load model)", d["tokens_per_s_per_node_average"], pub_d),
            ("decode output speed tok/s per user, day average (output check)", d["mean_tokens_per_s_per_request"],
             sum(m.PUBLISHED_OUTPUT_SPEED) / 2),
            ("average nodes (load model)", f["average_nodes"], m.PUBLISHED_MEAN_NODES),
            ("peak nodes (load model)", f["peak_nodes"], PUBLISHED_PEAK_NODES),
            ("peak / average nodes (output check)", f["peak_to_average_nodes"],
             PUBLISHED_PEAK_NODES / m.PUBLISHED_MEAN_NODES)]
    fixed = simulate(m.prefill_day6_cache_hits()).metrics["prefill_input_tokens_per_s_per_node"]
    rows.insert(1, ("prefill capacity, fixed 4,096-token prompts (hits 56.3 %)", fixed, pub_p))
    for name, sim, pub in rows:
        print(f"{name:<62s} {sim:10,.2f} {pub:10,.2f} {(sim - pub) / pub:+7.1%}")
    for pool in (p, d):
        c = pool["node_hours_by_cause"]
        steps = " -> ".join(f"{k} {v:,.0f}" for k, v in c.items())
        print(f"{pool['name']} node-hours: {steps}; mean batch/GPU {pool['mean_batch_per_gpu']:.0f} "
              f"(SLA batch {pool['sla_batch_per_gpu']:.0f}), nodes {pool['min_nodes']:.0f}-{pool['peak_nodes']:.0f}")


if __name__ == "__main__":
    main()
