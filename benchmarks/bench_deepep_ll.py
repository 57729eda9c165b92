"""DeepEP low-latency all-to-all on H800 + CX7 400 Gb/s IB: simulated vs published, per EP size and transport.

    python benchmarks/bench_deepep_ll.py > benchmarks/bench_deepep_ll.out.txt

Published (deepseek-ai/DeepEP README, "Low-latency kernels", 128 tokens per batch, hidden 7168, top-8 experts,
FP8 dispatch / BF16 combine; the DeepEP repository's git history):
- ``rdma``  : the original pure-RDMA kernels, README of the initial commit ebfe47e (2025-02-24) to 3b1045d;
- ``nvlink``: the same table after "low-latency kernels now leverage NVLink as much as possible" (#173, README
  de8cfca, 2025-06-05; kept in docs/legacy.md). EP128/EP256 rows did not change (1/16 or less of the messages
  stay inside a node).
Simulated: ``--ll-transport rdma`` = busiest link's bytes / capacity + path + kernel latency over
``sim.deepep.ll_path`` (every message through both NICs, own node included); ``nvlink`` = ``sim.ep_run``'s
low-latency simulation (NVLink inside a node). Same topology YAML (topologies/h800-deepseek.yaml) for both;
uniform routing over 256 experts (DeepEP's tests route random scores), seed 1. Target: within 15 %.

Also printed: the ISCA'25 communication-bound TPOT arithmetic (arXiv 2505.09343 §2.3.2: 32 tokens x 9 experts x
7K hidden, 1 B out + 2 B back, 61 layers, two micro-batches): 120.96 us per layer over 400G IB (50 GB/s), TPOT
14.76 ms; 6.72 us over GB200 NVL72 (900 GB/s), TPOT 0.82 ms. Target: exact.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.sim.deepep import ep_counts, ll_link_bound, tpot_limit
from dsv3sim.sim.ep_run import simulate_ep
from dsv3sim.sim.routing import uniform_routing
from dsv3sim.topology import load_topology

EPS = (8, 16, 32, 64, 128, 256)
PUBLISHED_US = {  # (transport, kind) -> latency per EP size, microseconds
    ("rdma", "dispatch"): (163, 173, 182, 186, 192, 194),
    ("rdma", "combine"): (318, 329, 350, 353, 369, 360),
    ("nvlink", "dispatch"): (77, 118, 155, 173, 192, 194),
    ("nvlink", "combine"): (114, 195, 273, 314, 369, 360),
}
TARGET = 0.15


def simulated_us(topo, transport: str, kind: str, ep: int) -> float:
    r = uniform_routing(ep=ep, tokens_per_rank=128, n_experts=256, topk=8, gpus_per_node=8, seed=1)
    if transport == "rdma":
        c = ep_counts(topo, tuple(range(ep)), r, 256)
        return ll_link_bound(topo, c, kind=kind, dtype="fp8", hidden=7168, transport="rdma")[0] * 1e6
    res = simulate_ep(topo, kind=kind, ep=ep, routing=r, n_experts=256, mode="low-latency", dtype="fp8",
                      hidden=7168, n_groups=1)
    return res.time_s * 1e6


def main() -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python benchmarks/bench_deepep_ll.py")
    topo = load_topology("h800-deepseek")
    print(f"{'transport':9s} {'kind':8s} {'EP':>4s} {'simulated':>11s} {'published':>11s} {'error':>7s}")
    worst = 0.0
    for (transport, kind), pub in PUBLISHED_US.items():
        for ep, ref in zip(EPS, pub):
            t = simulated_us(topo, transport, kind, ep)
            err = t / ref - 1
            worst = max(worst, abs(err))
            print(f"{transport:9s} {kind:8s} {ep:4d} {t:8.1f} us {ref:8d} us {err:+7.1%} "
                  f"{'ok' if abs(err) <= TARGET else 'MISS'}")
    print(f"worst |error| {worst:.1%} (target {TARGET:.0%})")
    print("\nISCA'25 TPOT limit (dsv3sim comm --kind tpot-limit --tokens-per-rank 32 --topk 9 --hidden 7000):")
    for what, bw, ref_us, ref_ms in (("400G IB", 50e9, 120.96, 14.76), ("GB200 NVL72", 900e9, 6.72, 0.82)):
        t = tpot_limit(tokens=32, experts_per_token=9, hidden=7000, bandwidth=bw, layers=61)
        print(f"  {what:12s} {t['comm_per_layer_s'] * 1e6:8.2f} us per layer (published {ref_us} us), TPOT "
              f"{t['tpot_s'] * 1e3:.2f} ms (published {ref_ms} ms), {t['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
