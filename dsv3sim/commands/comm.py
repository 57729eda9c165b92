"""`dsv3sim comm`: simulate one communication collective on a topology (DeepEP dispatch/combine, ring/tree
all-reduce, all-gather, reduce-scatter, point-to-point) and print its time, bandwidths and busiest link."""

from __future__ import annotations

import argparse
import json

from dsv3sim.commands import _args as A
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import LL_TRANSPORTS

NAME = "comm"
HELP = "simulate one dispatch/combine/all-reduce/all-gather/reduce-scatter/p2p on a topology"
DESCRIPTION = __doc__ + """
EP kinds (dispatch, combine): --ep ranks per EP group, groups tile the cluster (reduced to one group when
exact). --tokens-per-rank N tokens of --hidden H with --topk K experts each among --experts E, at most
--max-nodes M nodes per token (uniform random routing, or --trace FILE of expert ids [tokens, k]).
Other kinds: --ep ranks (consecutive GPUs) and a buffer of N x H x dtype bytes per rank.

rdma_GBps = IB bytes sent per rank / time; nvlink_GBps = NVLink bytes received per rank / time;
deepep_*_GBps = DeepEP's own "logical" byte counts / time (its README figures).

--mode low-latency --ll-transport nvlink|rdma: DeepEP's low-latency kernels with NVLink inside a node
(allow_nvlink_for_low_latency_mode) or pure RDMA (every message through both NICs, own node included); rdma is
computed as the busiest link's bytes / capacity + path and kernel latency (sim.deepep.ll_link_bound).
--kind tpot-limit: the ISCA'25 arithmetic (arXiv 2505.09343) of the communication-bound decode TPOT: (1 + 2) B x
--tokens-per-rank x --topk (experts per token, the paper uses 9) x --hidden / bandwidth per layer, where the
bandwidth is the topology's nominal NIC (--ll-transport rdma) or scale-up (nvlink) per-direction figure;
2 micro-batches x --layers layers per token. The paper's inputs: --tokens-per-rank 32 --topk 9 --hidden 7000."""

KINDS = ("dispatch", "combine", "all-reduce", "all-gather", "reduce-scatter", "p2p", "tpot-limit")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", required=True, help="topology YAML path or name in topologies/ (e.g. h800-deepseek)")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--mode", default="normal", choices=("normal", "low-latency"), help="DeepEP kernels (EP kinds)")
    p.add_argument("--ll-transport", default=None, choices=LL_TRANSPORTS,
                   help="low-latency mode inside a node: nvlink (default) or rdma (pure RDMA, DeepEP Feb 2025)")
    p.add_argument("--layers", type=A.pos_int, default=61, help="tpot-limit: layers per token (DeepSeek-V3: 61)")
    p.add_argument("--ep", type=A.pos_int, required=True, help="ranks per group (EP degree, or collective size)")
    p.add_argument("--tokens-per-rank", type=A.pos_int, default=4096)
    p.add_argument("--hidden", type=A.pos_int, default=7168)
    p.add_argument("--topk", type=A.pos_int, default=8)
    p.add_argument("--experts", type=A.pos_int, default=256, help="routed experts (EP kinds)")
    p.add_argument("--max-nodes", type=A.pos_int, default=None, help="node limit M per token (DeepSeek-V3: 4)")
    p.add_argument("--dtype", default="fp8", choices=("fp8", "bf16"), help="dispatch payload (combine is BF16)")
    p.add_argument("--trace", default=None, help="routing trace: dsv3sim .npz trace or any array of expert ids")
    p.add_argument("--algorithm", default="ring", choices=("ring", "tree"), help="all-reduce algorithm")
    p.add_argument("--chunks", type=A.pos_int, default=8, help="relay pipeline chunks (normal mode) / tree chunks")
    p.add_argument("--groups", type=A.pos_int, default=None, help="EP groups to run (default: fill the cluster)")
    p.add_argument("--no-reduce", action="store_true", help="simulate every group even when reduction is exact")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _tpot_limit(topo, args: argparse.Namespace) -> dict:
    from dsv3sim.sim.deepep import tpot_limit

    c = topo.cfg
    transport = args.ll_transport or "rdma"
    spec = c.scale_up if transport == "nvlink" else c.nic
    if spec is None:
        raise ConfigError(f"--ll-transport {transport}: topology {c.name} has no {'NVLink' if transport == 'nvlink' else 'NIC'}")
    if args.layers < 1:
        raise ConfigError(f"--layers must be >= 1, got {args.layers}")
    out = tpot_limit(tokens=args.tokens_per_rank, experts_per_token=args.topk, hidden=args.hidden,
                     bandwidth=spec.bandwidth, layers=args.layers)
    return {"topology": c.name, "kind": "tpot-limit", "transport": transport, **out}


def _check_size(args: argparse.Namespace, topo) -> None:
    """Bound the simulated work (dsv3sim/config/checks.py limits): an EP all-to-all moves tokens x ranks x
    groups token copies in chunks (relay milestones beyond 8 chunks cost about quadratically, measured); a
    ring collective has ranks^2 flows."""
    from dsv3sim.config.checks import check_limit

    if args.kind in ("dispatch", "combine"):
        groups = (args.groups or max(topo.n_gpus // args.ep, 1)) if args.no_reduce else (args.groups or 1)
        work = args.tokens_per_rank * args.ep * groups * max(1.0, args.chunks / 8) ** 2
        check_limit("comm_tokens", work, f"tokens-per-rank x ep x groups x max(1, chunks/8)^2 = {args.tokens_per_rank}"
                                         f" x {args.ep} x {groups} x {max(1.0, args.chunks / 8) ** 2:g}")
    else:
        check_limit("collective_ranks", args.ep, "--ep (ranks of the collective)")


def compute(args: argparse.Namespace) -> dict:
    from dsv3sim.sim.collectives import simulate_collective
    from dsv3sim.sim.deepep import ep_counts, ll_link_bound, token_bytes
    from dsv3sim.sim.ep_run import simulate_ep
    from dsv3sim.topology.graph import load_topology

    topo = load_topology(args.topology)
    for name in ("ep", "tokens_per_rank", "hidden", "topk", "chunks"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.ll_transport and args.mode != "low-latency" and args.kind != "tpot-limit":
        raise ConfigError(f"--ll-transport {args.ll_transport} needs --mode low-latency (or --kind tpot-limit)")
    if args.kind == "tpot-limit":
        return _tpot_limit(topo, args)
    _check_size(args, topo)
    if args.kind in ("dispatch", "combine") and args.ll_transport == "rdma":
        routing, n_exp = _routing(args, topo)
        if args.ep > topo.n_gpus:
            raise ConfigError(f"--ep {args.ep} > {topo.n_gpus} GPUs in {topo.cfg.name}")
        cnt = ep_counts(topo, tuple(range(args.ep)), routing, n_exp)
        t, by = ll_link_bound(topo, cnt, kind=args.kind, dtype=args.dtype, hidden=args.hidden, transport="rdma")
        bpt = token_bytes(args.kind, "low-latency", args.dtype, args.hidden)
        nic = sum(v for k, v in by.items() if k.startswith("nic_tx")) / args.ep
        nvl = sum(v for k, v in by.items() if k.startswith("nvlink_rx")) / args.ep
        logical = float(cnt.sel_rank.sum()) * bpt / args.ep
        return {"topology": topo.cfg.name, "kind": args.kind, "mode": "low-latency", "transport": "rdma",
                "ep": args.ep, "tokens_per_rank": args.tokens_per_rank, "hidden": args.hidden, "topk": args.topk,
                "dtype": args.dtype, "bytes_per_token": bpt, "n_ranks": args.ep, "n_groups": 1, "groups_simulated": 1,
                "time_s": t, "rdma_GBps": nic / t / 1e9, "nvlink_GBps": nvl / t / 1e9,
                "deepep_rdma_GBps": logical / t / 1e9, "deepep_nvlink_GBps": logical / t / 1e9,
                "bytes_by_class": by, "method": "link-load bound"}
    if args.kind in ("dispatch", "combine"):
        routing, n_exp = _routing(args, topo)
        res = simulate_ep(topo, kind=args.kind, ep=args.ep, routing=routing, n_experts=n_exp, mode=args.mode,
                          dtype=args.dtype, hidden=args.hidden, chunks=args.chunks, n_groups=args.groups,
                          reduce=not args.no_reduce)
        bpt = token_bytes(args.kind, args.mode, args.dtype, args.hidden)
    else:
        if args.ep > topo.n_gpus:
            raise ConfigError(f"--ep {args.ep} > {topo.n_gpus} GPUs in {topo.cfg.name}")
        bpt = args.hidden * (1 if args.dtype == "fp8" else 2)
        nbytes = float(args.tokens_per_rank * bpt)
        ranks = list(range(args.ep)) if args.kind != "p2p" else [0, args.ep - 1]
        if args.kind == "p2p" and args.ep < 2:
            raise ConfigError("--kind p2p sends from GPU 0 to GPU ep-1: needs --ep >= 2")
        res = simulate_collective(topo, args.kind, ranks, nbytes, algorithm=args.algorithm, chunks=args.chunks)
    out = {"topology": topo.cfg.name, "kind": args.kind, "mode": res.mode, "ep": args.ep,
           "tokens_per_rank": args.tokens_per_rank, "hidden": args.hidden, "topk": args.topk,
           "dtype": args.dtype, "bytes_per_token": bpt}
    out.update(res.to_dict())
    return out


def _routing(args: argparse.Namespace, topo):
    """The routing the command prices: a trace file's, or uniform node-limited top-k; and the expert count."""
    from dsv3sim.sim.routing import load_routing, uniform_routing

    if args.trace:
        routing = load_routing(args.trace, ep=args.ep, tokens_per_rank=args.tokens_per_rank)
        return routing, max(args.experts, int(routing.max()) + 1)
    routing = uniform_routing(ep=args.ep, tokens_per_rank=args.tokens_per_rank, n_experts=args.experts,
                              topk=args.topk, gpus_per_node=topo.cfg.gpus_per_node,
                              max_nodes=args.max_nodes, seed=args.seed)
    return routing, args.experts


def run(args: argparse.Namespace) -> int:
    out = compute(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if out["kind"] == "tpot-limit":
        print(f"{out['topology']} ({out['transport']}, {out['bandwidth_Bps'] / 1e9:g} GB/s): "
              f"{out['comm_per_layer_s'] * 1e6:.2f} us per layer per micro-batch, TPOT {out['tpot_s'] * 1e3:.2f} ms, "
              f"{out['tokens_per_s']:.0f} tokens/s ({out['source']})")
        return 0
    if out.get("method") == "link-load bound":
        print(f"{out['topology']} {out['kind']} (low-latency, pure RDMA) {out['ep']} ranks: {out['time_s'] * 1e6:,.1f} us; "
              f"DeepEP logical {out['deepep_rdma_GBps']:.1f} GB/s; bytes {out['bytes_by_class']}")
        return 0
    rows = [
        ("topology", out["topology"]),
        ("collective", f"{out['kind']} ({out['mode']}), {out['n_ranks']} ranks x {out['n_groups']} groups "
                       f"({out['groups_simulated']} simulated)"),
        ("time_s", f"{out['time_s']:.6g}  ({out['time_s'] * 1e6:,.1f} us)"),
        ("rdma_GBps (IB bytes sent / rank / time)", f"{out['rdma_GBps']:.2f}"),
        ("nvlink_GBps (NVLink bytes received / rank / time)", f"{out['nvlink_GBps']:.2f}"),
    ]
    if out["kind"] in ("dispatch", "combine"):
        rows += [("deepep_rdma_GBps (DeepEP's logical count)", f"{out['deepep_rdma_GBps']:.2f}"),
                 ("deepep_nvlink_GBps (DeepEP's logical count)", f"{out['deepep_nvlink_GBps']:.2f}")]
    rows += [(f"bytes {k}", f"{v / 1e9:,.4f} GB") for k, v in out["bytes_by_class"].items()]
    rows += [("busiest link", f"{out['busiest_link']} ({out['busiest_link_class']}) "
                              f"utilisation {out['busiest_link_utilisation']:.3f}"),
             ("flows / events", f"{out['n_flows']:,} / {out['n_events']:,}")]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0
