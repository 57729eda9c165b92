"""DeepSeek's Day-6 serving figures next to the simulator: capacity, and the 24-hour average it implies.

    python benchmarks/bench_serving_day6.py > benchmarks/bench_serving_day6.out.txt

Capacity: ``prefill_day6_cache_hits`` (EP32, 56.3 % cache hits applied: computed tokens attend to the cached
prefix; input tokens counted as published) and ``decode_day6`` (EP144, MTP, average KV length 4,989), event-
simulated network. 24-hour average: ``workload/fleet.py`` from the day's published token totals and average
node count (no per-node figure used).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsv3sim.workload import simulate
from dsv3sim.workload.fleet import fleet_average


def main() -> None:
    sp = importlib.util.spec_from_file_location("srv", ROOT / "scenarios" / "deepseek_v3_serving.py")
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    p = simulate(m.prefill_day6_cache_hits()).metrics
    d = simulate(m.decode_day6()).metrics
    cp, cd = p["prefill_input_tokens_per_s_per_node"], d["decode_tokens_per_s_per_node"]
    f = fleet_average(prefill_capacity_per_node=cp, decode_capacity_per_node=cd,
                      input_tokens=m.PUBLISHED_DAY_INPUT_TOKENS, output_tokens=m.PUBLISHED_DAY_OUTPUT_TOKENS,
                      mean_nodes=m.PUBLISHED_MEAN_NODES)
    pub_p, pub_d = m.PUBLISHED_PREFILL_TOKENS_PER_S_PER_NODE, m.PUBLISHED_DECODE_TOKENS_PER_S_PER_NODE
    print(f"{'figure':<58s} {'simulated':>10s} {'published':>10s} {'error':>7s}")
    rows = [("prefill input tok/s per node, capacity (hits 56.3 %)", cp, pub_p),
            ("decode output tok/s per node, capacity (MTP 0.875)", cd, pub_d),
            ("output speed tok/s per request", d["tokens_per_s_per_request"], sum(m.PUBLISHED_OUTPUT_SPEED) / 2),
            ("prefill input tok/s per node, 24 h average (fleet model)", f["prefill_tokens_per_s_per_node_average"],
             pub_p),
            ("decode output tok/s per node, 24 h average (fleet model)", f["decode_tokens_per_s_per_node_average"],
             pub_d)]
    for name, sim, pub in rows:
        print(f"{name:<58s} {sim:10,.1f} {pub:10,.1f} {(sim - pub) / pub:+7.1%}")
    print(f"fleet: {f['prefill_nodes_needed']:.1f} prefill + {f['decode_nodes_needed']:.1f} decode nodes needed at "
          f"capacity of {m.PUBLISHED_MEAN_NODES} on average: utilisation {f['utilisation']:.1%}")


if __name__ == "__main__":
    main()
