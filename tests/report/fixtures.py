"""Hand-built result dicts in the shapes ``dsv3sim.results`` writes, covering every report section.

Numbers are deterministic and internally consistent (the tests recompute some of them a second way).
"""

from __future__ import annotations

import random


def timeline(n_ranks: int = 4, n_mb: int = 6, f: float = 1e-3) -> list[dict]:
    """A 1F1B-like schedule with F (f), B (2f) and W (f) chunks, plus send/recv on a comm stream."""
    ev = []
    for r in range(n_ranks):
        t = r * f
        for mb in range(n_mb):
            ev.append({"rank": r, "stream": "compute", "name": "F", "microbatch": mb, "start_s": t, "end_s": t + f})
            ev.append({"rank": r, "stream": "comm", "name": "send", "microbatch": mb, "start_s": t + f, "end_s": t + 1.2 * f})
            t += f
        t += (n_ranks - 1 - r) * f
        for mb in range(n_mb):
            ev.append({"rank": r, "stream": "compute", "name": "B", "microbatch": mb, "start_s": t, "end_s": t + 2 * f})
            ev.append({"rank": r, "stream": "compute", "name": "W", "microbatch": mb, "start_s": t + 2 * f, "end_s": t + 3 * f})
            t += 3 * f
        ev.append({"rank": r, "stream": "compute", "name": "attn(F)", "start_s": t, "end_s": t + 0.3 * f})
        ev.append({"rank": r, "stream": "comm", "name": "dispatch(F)", "start_s": t, "end_s": t + 0.2 * f})
        ev.append({"rank": r, "stream": "compute", "name": "mlp(F)", "start_s": t + 0.3 * f, "end_s": t + 0.8 * f})
        ev.append({"rank": r, "stream": "comm", "name": "combine(F)", "start_s": t + 0.8 * f, "end_s": t + f})
    return ev


def expert_load(n_layers: int = 8, n_experts: int = 64, seed: int = 0, skew: float = 1.1) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n_layers):
        w = [1.0 / (i + 1) ** skew for i in range(n_experts)]
        rng.shuffle(w)
        out.append([int(4096 * 8 * x / sum(w)) + rng.randint(0, 5) for x in w])
    return out


def balanced(load: list[list[int]], n_gpus: int) -> list[list[int]]:
    """Greedy: heaviest expert to the lightest GPU (a second, simple placement)."""
    out = []
    for row in load:
        g = [0] * n_gpus
        for v in sorted(row, reverse=True):
            g[g.index(min(g))] += v
        out.append(g)
    return out


def training_result() -> dict:
    load = expert_load()
    t = [i * 1e-3 for i in range(40)]
    return {
        "schema": "dsv3sim.result/0-fixture",
        "scenario": "fixture_pretrain",
        "kind": "training",
        "model": "deepseek-v3",
        "gpu": "H800",
        "n_gpus": 2048,
        "parallel": {"pp": 16, "ep": 64, "dp": 128, "tp": 1},
        "schedule": "dualpipe",
        "step_time_s": 20.0,
        "mfu": 0.4,
        "tokens_per_s": 15360 * 4096 / 20.0,
        "training_tokens": 14.8e12,
        "breakdown_s": {"forward_s": 5.0, "backward_input_s": 5.0, "weight_grad_s": 4.0, "overlapped_fb_s": 4.0,
                        "bubble_s": 1.5, "optimizer_s": 0.5},
        "timeline": {"events": timeline()},
        "link_utilisation": {
            "t_s": t,
            "by_class": {"nvlink": [0.3 + 0.2 * ((i // 5) % 2) for i in range(40)],
                         "ib": [0.6 + 0.3 * ((i // 4) % 2) for i in range(40)]},
            "by_node": {"0": {"ib": [0.5 + 0.01 * i for i in range(40)]},
                        "1": {"ib": [0.9 - 0.01 * i for i in range(40)]}},
        },
        "expert_load_logical": load,
        "expert_load_before": balanced([row[::-1] for row in load], 8),
        "expert_load_after": balanced(load, 8),
        "nodes_per_token": {"hist": [120, 900, 2100, 976], "node_limit": 4},
        "memory_per_gpu": [{"rank": 0, "weights_bytes": 20e9, "gradients_bytes": 10e9, "optimizer_moments_bytes": 12e9,
                            "activations_bytes": 30e9, "hbm_bytes": 80e9},
                           {"rank": 15, "weights_bytes": 22e9, "gradients_bytes": 11e9, "optimizer_moments_bytes": 12e9,
                            "activations_bytes": 8e9, "hbm_bytes": 80e9}],
        "validation": [
            {"name": "GPU-hours per trillion tokens", "predicted": 170e3, "published": 180e3,
             "source": "DeepSeek-V3 report §1 Table 1", "unit": "GPU-h"},
            {"name": "decode tokens/s/node", "predicted": 16000, "published": 14800,
             "source": "DeepSeek Inference System Overview (Day 6)", "unit": "tok/s"},
        ],
    }


def sweep_result() -> dict:
    rows = []
    for ep in (8, 16, 32, 64, 128):
        for ib in (25, 50, 100):
            if ep == 128 and ib == 25:
                rows.append({"params": {"ep": ep, "ib_GBps": ib}, "infeasible": "does not fit in HBM: 92 > 80 GB"})
                continue
            rows.append({"params": {"ep": ep, "ib_GBps": ib}, "step_time_s": 30.0 / ep ** 0.3 + 200.0 / ib,
                         "mfu": 0.2 + 0.001 * ep + 0.001 * ib})
    return {"scenario": "fixture_sweep", "sweep": rows}


def decode_result() -> dict:
    """The shape of dsv3sim.workload.serving's decode result (ServingResult.to_dict), small numbers."""
    kv_tok = 70_272
    metrics = {"decode_tokens_per_s_per_node": 14_000.0, "tpot_s": 0.05, "batch_per_gpu": 128,
               "max_batch_per_gpu_kv": 160, "mtp_acceptance": 0.85}
    ev = []
    t = 0.0
    for mb in (0, 1):
        for layer in range(3):
            for name, stream, d in (("attn(F)", "compute", 1e-4), ("dispatch(F)", "comm", 5e-5),
                                    ("mlp(F)", "compute", 8e-5), ("combine(F)", "comm", 6e-5)):
                ev.append({"rank": 0, "stream": stream, "name": name, "start_s": t, "end_s": t + d,
                           "layer": layer, "microbatch": mb})
                t += d
    return {
        "schema": "dsv3sim.result/1", "type": "serving", "scenario": "fixture-decode", "kind": "decode",
        "model": "deepseek-v3", "topology": "h800-deepseek", "gpu": "H800", "n_gpus": 320, "n_nodes": 40.0,
        "parallel": {"dp": 320, "attn_tp": 1, "ep": 320}, "metrics": metrics, **metrics,
        "layer_time_s": {"attn(F)": 1e-4, "dispatch(F)": 5e-5, "mlp(F)": 8e-5, "combine(F)": 6e-5},
        "kv": {"kv_bytes_per_token": kv_tok, "kv_budget_bytes_per_gpu": 160 * 4096 * kv_tok,
               "max_batch_at_context": 160, "context_len": 4096, "kv_layers_fraction": 1.0,
               "kv_compare_models": {"deepseek-v3": {"model": "deepseek-v3", "attention": "mla",
                                                     "max_requests_per_node": 1200},
                                     "llama3-70b": {"model": "llama3-70b", "attention": "gqa",
                                                    "max_requests_per_node": 300}}},
        "memory_per_gpu": [{"rank": 0, "weights_bytes": 5e9, "kv_cache_bytes": 128 * 4096 * kv_tok,
                            "hbm_bytes": 80e9}],
        "expert_load_before": [100.0] * 319 + [300.0], "expert_load_after": [101.0] * 320,
        "nodes_per_token": {"hist": [0, 10, 50, 40, 0], "node_limit": None},
        "timeline": {"events": ev}, "sources": ["fixture"],
    }
