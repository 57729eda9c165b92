"""`dsv3sim plan train|serve|network`: the capacity planner — which layout, how many GPUs, what network, what cost.

  plan train MODEL --gpu H800 --gpus 2048 [--gpus-max N] --tokens 14.8e12 [--deadline-days D]
             [--price-per-gpu-hour 2] [--topology T] [--layout pp=16,ep=64,...] [--json] [--out F] [--report F]
  plan serve MODEL --gpu H200 --gpus 32 --isl 4000 --osl 1000 --ttft-ms 2000 --tpot-ms 50
             [--prefix-cache-hit 0.563] [--max-itl-ms MS] [--json]
             [--daily-input-tokens N --daily-output-tokens N [--peak-to-mean 1.5] [--load-shape sinusoid]
              [--scale-interval-h 12] [--burst-quantile 0.99] [--min-prefill-units 1] [--min-decode-units 1]
              [--services 1]]
  plan network --radix 64 --gpus 2048 [--endpoints N] [--planes 8] [--topology-out F] [--json]

`--json` prints the result JSON on stdout (tables and progress go to stderr); `--out` writes it to a file;
`--report` renders the planner section of an HTML report. Searches run in a local process pool (`--workers`)
or on Ray (`--ray local` starts a local cluster, `--ray ADDRESS` joins one). Bad input exits 2 with one line;
a layout or SLA that nothing meets is a normal result that says what comes closest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.workload.fleet_defaults import (
    DEFAULT_BURST_QUANTILE,
    DEFAULT_PEAK_TO_MEAN,
    DEFAULT_SCALE_INTERVAL_H,
    DEFAULT_SHAPE,
    SHAPES,
)

NAME = "plan"
HELP = "capacity planner: search training/serving layouts under a budget or SLA, size the fleet and the network"
DESCRIPTION = __doc__


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _strs(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--price-per-gpu-hour", type=float, default=2.0, metavar="USD",
                   help="GPU rental price (default $2, DeepSeek-V3's H800 assumption)")
    p.add_argument("--json", action="store_true", help="print the result JSON on stdout (human text on stderr)")
    p.add_argument("--out", default=None, metavar="PATH", help="write the result JSON here")
    p.add_argument("--report", default=None, metavar="PATH", help="write an HTML report with the planner section")
    p.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)), help="local processes")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on Ray: 'local' starts a local cluster, else a cluster address (pip install ray)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="plan_kind", metavar="{train,serve,network}", required=True)
    _add_train_parser(sub)
    _add_serve_parser(sub)
    _add_network_parser(sub)


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="search training layouts for a token budget",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("model", nargs="?", default="deepseek-v3", help="model name in model/ or a config.json path")
    t.add_argument("--gpu", default=None, help="GPU (default: the topology's)")
    t.add_argument("--topology", default=None, help="topology name/path (default: by GPU, h800-deepseek for H800)")
    t.add_argument("--gpus", type=int, default=2048)
    t.add_argument("--gpus-max", type=int, default=None, help="also try 2x, 4x ... GPUs up to this many")
    t.add_argument("--tokens", type=float, default=14.8e12, help="training tokens (default 14.8e12, V3 §4.1)")
    t.add_argument("--deadline-days", type=float, default=None)
    t.add_argument("--global-batch", type=int, default=15360, help="sequences per step (V3 §4.2: 15360)")
    t.add_argument("--seq-len", type=int, default=4096)
    t.add_argument("--pp", type=_ints, default=None, help="PP degrees to search (default 1,2,4,8,16,32)")
    t.add_argument("--ep", type=_ints, default=None, help="EP degrees (default 1..256, powers of 2)")
    t.add_argument("--micro-batch", type=_ints, default=None, help="sequences per micro-batch (default 1,2)")
    t.add_argument("--schedules", type=_strs, default=None, help="pipeline schedules (default: all the step "
                                                                  "model knows)")
    t.add_argument("--dtypes", type=_strs, default=None, help="GEMM dtypes (default fp8,bf16)")
    t.add_argument("--recompute", choices=("both", "on", "off"), default="both")
    t.add_argument("--node-limits", type=_ints, default=None, help="node limits M (default 1,2,4,8)")
    t.add_argument("--refine", type=int, default=3, help="best layouts re-run with the event-simulated all-to-all")
    t.add_argument("--max-layouts", type=int, default=20_000, help="refuse larger search spaces before starting")
    t.add_argument("--layout", default=None, metavar="K=V,...",
                   help="your layout, e.g. pp=16,ep=64,micro_batch=1,schedule=dualpipe,dtype=fp8,recompute=1,"
                        "node_limit=4 (missing keys: those defaults); ranked, or the nearest that fits")
    t.add_argument("--extension", action="append", default=[], metavar="TOKENS:SEQ:BATCH",
                   help="a context-extension phase, e.g. 630e9:32768:1920 (V3 §4.3); repeat for more")
    t.add_argument("--post-training-gpu-hours", type=float, default=None)
    _common(t)


def _add_serve_parser(sub) -> None:

    s = sub.add_parser("serve", help="search serving layouts under a TTFT/TPOT SLA; fleet size for a daily load",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", nargs="?", default="deepseek-v3")
    s.add_argument("--gpu", default="H200")
    s.add_argument("--topology", default=None, help="topology name/path (default: by GPU)")
    s.add_argument("--gpus", type=int, default=32)
    s.add_argument("--isl", type=int, default=4000, help="input tokens per request")
    s.add_argument("--osl", type=int, default=1000, help="output tokens per request")
    s.add_argument("--ttft-ms", type=float, default=2000.0)
    s.add_argument("--tpot-ms", type=float, default=50.0)
    s.add_argument("--max-itl-ms", type=float, default=None,
                   help="tail inter-token limit: aggregated iterations that carry a prefill chunk must meet it too")
    s.add_argument("--prefix-cache-hit", type=float, default=0.0, help="fraction of input tokens served from cache")
    s.add_argument("--mtp-acceptance", type=float, default=None, help="MTP second-token acceptance (default 0.875: DeepSeek-V3 report §5.4.3, 85-90 %%)")
    s.add_argument("--instance-sizes", type=_ints, default=None, help="GPUs per prefill/decode instance")
    s.add_argument("--daily-input-tokens", type=float, default=None, help="fleet sizing: input tokens per day")
    s.add_argument("--daily-output-tokens", type=float, default=None, help="fleet sizing: output tokens per day")
    s.add_argument("--input-tokens-per-node-s", type=float, default=None,
                   help="fleet sizing with a measured prefill node rate (cache hits included) instead of the search's")
    s.add_argument("--output-tokens-per-node-s", type=float, default=None,
                   help="fleet sizing with a measured decode node rate instead of the search's")
    s.add_argument("--load-shape", default=DEFAULT_SHAPE, choices=SHAPES,
                   help="fleet sizing: the day's load curve (workload/fleet.py)")
    s.add_argument("--peak-to-mean", type=float, default=DEFAULT_PEAK_TO_MEAN,
                   help=f"fleet sizing: peak / mean of the day's load (default {DEFAULT_PEAK_TO_MEAN:g}, an assumption)")
    s.add_argument("--scale-interval-h", type=float, default=DEFAULT_SCALE_INTERVAL_H,
                   help=f"fleet sizing: hours between fleet resizes (default {DEFAULT_SCALE_INTERVAL_H:g}: Day 6's "
                        "day/night split)")
    s.add_argument("--burst-quantile", type=float, default=DEFAULT_BURST_QUANTILE,
                   help="fleet sizing: quantile of Poisson bursts the deployed slots cover "
                        f"(default {DEFAULT_BURST_QUANTILE:g})")
    s.add_argument("--min-prefill-units", type=int, default=1, help="fleet sizing: prefill instances kept warm")
    s.add_argument("--min-decode-units", type=int, default=1, help="fleet sizing: decode instances kept warm")
    s.add_argument("--services", type=int, default=1,
                   help="fleet sizing: models deployed separately on equal shares of the load (Day 6: V3 + R1 = 2)")
    s.add_argument("--max-layouts", type=int, default=5000)
    _common(s)


def _add_network_parser(sub) -> None:
    n = sub.add_parser("network", help="switches, links and cost of FT2, MPFT, FT3, Slim Fly, Dragonfly")
    n.add_argument("--radix", type=int, default=64, help="switch ports (default 64, 400G IB)")
    n.add_argument("--gpus", type=int, default=None, help="GPUs (endpoints = GPUs / per node x NICs per node)")
    n.add_argument("--endpoints", type=int, default=None, help="NIC ports to connect (overrides --gpus)")
    n.add_argument("--gpus-per-node", type=int, default=8)
    n.add_argument("--nics-per-node", type=int, default=8)
    n.add_argument("--planes", type=int, default=None, help="MPFT planes (default: NICs per node)")
    n.add_argument("--switch-usd", type=float, default=None)
    n.add_argument("--switch-link-usd", type=float, default=None)
    n.add_argument("--endpoint-link-usd", type=float, default=None)
    n.add_argument("--topology-out", default=None, metavar="PATH", help="write the chosen topology as YAML for run")
    n.add_argument("--base-topology", default="h800-deepseek", help="GPU and links of the written YAML")
    n.add_argument("--choose", default=None, help="write this topology instead of the cheapest (FT2, MPFT, ...)")
    n.add_argument("--json", action="store_true")
    n.add_argument("--out", default=None, metavar="PATH")


def _say(args, text: str) -> None:
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def _emit(args, data: dict) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(data, indent=1, default=str))
        _say(args, f"wrote {args.out}")
    if getattr(args, "report", None):
        from dsv3sim.commands._output import write_report

        if args.json:
            import contextlib

            with contextlib.redirect_stdout(sys.stderr):
                write_report(data, args.report)
        else:
            write_report(data, args.report)
    if args.json:
        print(json.dumps(data, indent=1, default=str))


def run(args: argparse.Namespace) -> int:
    if args.plan_kind == "train":
        return _train(args)
    if args.plan_kind == "serve":
        return _serve(args)
    return _network(args)


def _layout(spec: str, gpus: int):
    from dsv3sim.plan.train import LAYOUT_KEYS, TrainLayout

    kw: dict = {"n_gpus": gpus, "pp": 16, "ep": 64}
    for item in spec.split(","):
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep or k not in LAYOUT_KEYS:
            raise ConfigError(f"--layout item {item!r}: keys are {', '.join(LAYOUT_KEYS)} (e.g. pp=16,ep=64)")
        if k in ("schedule", "dtype"):
            kw[k] = v.strip()
        elif k == "recompute":
            kw[k] = v.strip().lower() in ("1", "true", "yes", "on")
        elif k == "node_limit" and v.strip().lower() in ("none", "all", "0"):
            kw[k] = None
        else:
            try:
                kw[k] = int(v)
            except ValueError:
                raise ConfigError(f"--layout {k}={v!r} must be an integer") from None
    return TrainLayout(**kw)


def _extensions(specs: list[str]) -> tuple[tuple[float, int, int], ...]:
    ext = []
    for e in specs:
        try:
            tok, seq, batch = e.split(":")
            ext.append((float(tok), int(seq), int(batch)))
        except ValueError:
            raise ConfigError(f"--extension {e!r} must be TOKENS:SEQ_LEN:GLOBAL_BATCH, e.g. 630e9:32768:1920") from None
    return tuple(ext)


def _train_query(args):
    from dsv3sim.plan.network import scaled_topology
    from dsv3sim.plan.serve import GPU_TOPOLOGY
    from dsv3sim.plan.train import TrainQuery

    topo = args.topology or (GPU_TOPOLOGY.get(args.gpu, "h800-deepseek") if args.gpu else "h800-deepseek")
    topo = scaled_topology(topo, args.gpus_max or args.gpus)
    ext = _extensions(args.extension)
    kw = {k: v for k, v in {"pp": args.pp, "ep": args.ep, "micro_batch": args.micro_batch,
                            "schedules": args.schedules, "dtypes": args.dtypes, "node_limits": args.node_limits}.items()
          if v is not None}
    if args.recompute != "both":
        kw["recompute"] = (args.recompute == "on",)
    return TrainQuery(model=args.model, gpu=args.gpu, topology=topo, gpus=args.gpus, gpus_max=args.gpus_max,
                      tokens=args.tokens, deadline_days=args.deadline_days, price_per_gpu_hour=args.price_per_gpu_hour,
                      global_batch=args.global_batch, seq_len=args.seq_len, refine=args.refine,
                      max_layouts=args.max_layouts, user_layout=_layout(args.layout, args.gpus) if args.layout else None,
                      extension_phases=ext, post_training_gpu_hours=args.post_training_gpu_hours, **kw)


def _say_train_table(args, q, plan) -> None:
    from dsv3sim.commands._table import table

    c = plan.counts
    _say(args, f"{c['layouts']} layouts ({c['space']} in the space): {c['pruned_before_simulation']} pruned before "
               f"simulation (structure, memory), {c['simulated_bound']} screened with the all-to-all bound, "
               f"{c['simulated_event']} re-simulated, {c['feasible']} feasible; {plan.wall_s:.1f} s")
    cols = [("rank", "#", ""), ("key", "layout", ""), ("comm_model", "a2a", ""), ("step_time_s", "step s", ".3f"),
            ("mfu", "MFU", ".1%"), ("memory_headroom", "HBM free", ".0%"), ("days", "days", ".1f"),
            ("gpu_hours", "GPU-h", ",.0f"), ("cost_usd_run", "$", ",.0f"), ("limits", "limit", "")]
    if q.deadline_days is not None:
        cols.insert(7, ("meets_deadline", f"<= {q.deadline_days:g} d", ""))
    ok = [r for r in plan.candidates if "infeasible" not in r]
    _say(args, table(ok, cols, max_rows=15))


def _say_train_summary(args, q, plan) -> None:
    if plan.best:
        b = plan.best
        _say(args, f"best: {b['key']}: {b['step_time_s']:.2f} s/step ({b['comm_model']} all-to-all), "
                   f"{b['days']:.1f} days, {b['gpu_hours'] / 1e6:.3f}M GPU-h, ${b['cost_usd_run'] / 1e6:.3f}M at "
                   f"${q.price_per_gpu_hour:g}/GPU-h; limited by {b['limits']}: {b['limits_why']}")
    else:
        _say(args, "no layout fits: " + "; ".join(sorted({r['infeasible'][:60] for r in plan.candidates})[:5]))
    if plan.user:
        u = plan.user
        if u["feasible"]:
            _say(args, f"your layout {u['key']}: rank {u['rank']}, {u['step_time_s']:.2f} s/step "
                       f"({u.get('vs_best_step', 0):+.1%} vs best)")
        else:
            nf = u.get("nearest_feasible")
            _say(args, f"your layout {u['key']} does not run: {u['reason']}" +
                 (f"; nearest that fits: {nf['key']} (changes {', '.join(nf['changed'])}; "
                  f"{nf['step_time_s']:.2f} s/step)" if nf else "; nothing feasible"))
    if plan.totals:
        for ph in plan.totals["phases"]:
            _say(args, f"  {ph['phase']}: {ph['gpu_hours'] / 1e3:,.0f}K GPU-h, ${ph['cost_usd'] / 1e6:.3f}M")
        _say(args, f"  total: {plan.totals['gpu_hours_total'] / 1e3:,.0f}K GPU-h, "
                   f"${plan.totals['cost_usd_total'] / 1e6:.3f}M")
    for n in plan.notes:
        _say(args, f"note: {n}")


def _train(args) -> int:
    from dsv3sim.commands._table import progress_bar
    from dsv3sim.plan.train import plan_training

    q = _train_query(args)
    with progress_bar("training layouts", 1) as prog:
        plan = plan_training(q, workers=args.workers, ray_address=args.ray, progress=prog)
    d = plan.to_dict()
    _say_train_table(args, q, plan)
    _say_train_summary(args, q, plan)
    _emit(args, d)
    return 0


def _serve_query(args):
    """(ServeQuery, FleetQuery, daily tokens or None, published node rates or None) from the flags."""
    from dsv3sim.plan.serve import FleetQuery, ServeQuery

    kw = {"instance_sizes": args.instance_sizes} if args.instance_sizes else {}
    q = ServeQuery(model=args.model, gpu=args.gpu, topology=args.topology, gpus=args.gpus, isl=args.isl, osl=args.osl,
                   ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms, prefix_cache_hit=args.prefix_cache_hit,
                   price_per_gpu_hour=args.price_per_gpu_hour, mtp_acceptance=args.mtp_acceptance,
                   max_itl_ms=args.max_itl_ms,
                   max_layouts=args.max_layouts, **kw)
    fq = FleetQuery(load_shape=args.load_shape, peak_to_mean=args.peak_to_mean,
                    scale_interval_h=args.scale_interval_h, burst_quantile=args.burst_quantile,
                    min_prefill_units=args.min_prefill_units, min_decode_units=args.min_decode_units,
                    services=args.services)
    daily = None
    if args.daily_input_tokens is not None or args.daily_output_tokens is not None:
        daily = (args.daily_input_tokens or 0.0, args.daily_output_tokens or 0.0)
    rates = None
    if (args.input_tokens_per_node_s is None) != (args.output_tokens_per_node_s is None):
        raise ConfigError("give both --input-tokens-per-node-s and --output-tokens-per-node-s, or neither")
    if args.input_tokens_per_node_s is not None:
        rates = (args.input_tokens_per_node_s, args.output_tokens_per_node_s)
    return q, fq, daily, rates


SERVE_COLS = [("prefill", "prefill instance", ""), ("n_prefill_instances", "xP", ""),
              ("decode", "decode instance", ""), ("n_decode_instances", "xD", ""), ("gpus_used", "GPUs", ""),
              ("tokens_per_s_per_gpu", "tok/s/GPU", ",.0f"), ("tokens_per_s_per_user", "tok/s/user", ".1f"),
              ("ttft_s", "TTFT s", ".2f"), ("tpot_s", "TPOT s", ".3f"),
              ("cost_usd_per_million_input_tokens", "$/M in", ".3f"),
              ("cost_usd_per_million_output_tokens", "$/M out", ".3f"), ("limits", "limit", "")]


def _say_serve_ranked(args, q, res: dict) -> None:
    """The disaggregated deployments: counts, ranked table and best (or the closest ones and what they miss)."""
    from dsv3sim.commands._table import table

    c = res["counts"]
    _say(args, f"{c['instance_layouts']} instance layouts ({c['feasible_instances']} feasible), "
               f"{c['deployments']} disaggregated deployments on {q.gpus} {q.gpu}, {c['meeting_sla']} meet "
               f"TTFT {q.ttft_ms:g} ms / TPOT {q.tpot_ms:g} ms; {res['wall_s']:.1f} s")
    if res["best"]:
        _say(args, table(res["ranked"], SERVE_COLS, max_rows=10))
        b = res["best"]
        _say(args, f"best: {b['tokens_per_s_per_gpu']:,.0f} output tok/s/GPU at {b['tokens_per_s_per_user']:.1f} "
                   f"tok/s/user ({b['n_prefill_instances']} x {b['prefill']} + {b['n_decode_instances']} x "
                   f"{b['decode']}); limited by {b['limits']}")
    else:
        close = res["sla_unmet"]["closest"]
        _say(args, res["sla_unmet"]["message"] + ("; closest:" if close else ""))
        if close:
            _say(args, table(close, SERVE_COLS[:7] + [("misses", "misses by", "")], max_rows=5))
    _say(args, f"Pareto frontier ({len(res['pareto'])} points, tok/s/user vs tok/s/GPU) in the JSON and report")
    ab = (res.get("aggregated") or {}).get("best")
    if ab:
        _say(args, f"aggregated best: {ab['tokens_per_s_per_gpu']:,.0f} output tok/s/GPU at "
                   f"{ab['tokens_per_s_per_user']:.1f} tok/s/user, TTFT {ab['ttft_s']:.2f} s, TPOT {ab['tpot_s']:.3f} s "
                   f"({ab['n_instances']} x {ab['key']})")
    elif res.get("aggregated") is not None:
        _say(args, f"aggregated: no layout meets TTFT {q.ttft_ms:g} ms / TPOT {q.tpot_ms:g} ms")


def _say_fleet(args, f: dict) -> None:
    """Fleet sizing: average nodes and cost per day, then the load model's peak and 24 h rates."""
    if "infeasible" in f:
        _say(args, f"fleet: {f['infeasible']}")
        return
    _say(args, f"fleet: {f['nodes']:.1f} nodes on average ({f['prefill_nodes']:.1f} prefill + "
               f"{f['decode_nodes']:.1f} decode; buy {f['nodes_to_buy']}), ${f['cost_usd_per_day']:,.0f} "
               f"per day ({f['rates_from']})")
    lm, cap = f.get("load_model"), f.get("capacity")
    if lm and "infeasible" not in lm:
        _say(args, f"  load model: {lm['load']['shape']} load, peak/mean {lm['load']['peak_to_mean']:g}, "
                   f"resized every {lm['autoscaler']['scale_interval_h']:g} h: peak {lm['peak_nodes']:.0f} "
                   f"nodes (peak/average {lm['peak_to_average_nodes']:.2f}); 24 h average per node "
                   f"{f['input_tokens_per_s_per_node']:,.0f} input / {f['output_tokens_per_s_per_node']:,.0f} "
                   f"output tok/s; at capacity (flat load, full batch) {cap['nodes']:.1f} nodes")
    elif lm:
        _say(args, f"  load model: {lm['infeasible']}")


def _serve(args) -> int:
    from dsv3sim.commands._table import progress_bar
    from dsv3sim.plan.serve import plan_serving

    q, fq, daily, rates = _serve_query(args)
    with progress_bar("serving instances", 1) as prog:
        res = plan_serving(q, workers=args.workers, ray_address=args.ray, progress=prog, daily=daily,
                           node_rates=rates, fleet=fq)
    _say_serve_ranked(args, q, res)
    if "fleet" in res:
        _say_fleet(args, res["fleet"])
    for n in res["notes"]:
        _say(args, f"note: {n}")
    _emit(args, res)
    return 0


def _network(args) -> int:
    from dsv3sim.commands._table import table
    from dsv3sim.cost.network_sizing import DEFAULT_PRICES
    from dsv3sim.plan.network import plan_network, write_topology

    prices = dict(DEFAULT_PRICES)
    for k, v in (("switch_usd", args.switch_usd), ("switch_link_usd", args.switch_link_usd),
                 ("endpoint_link_usd", args.endpoint_link_usd)):
        if v is not None:
            if v < 0:
                raise ConfigError(f"--{k.replace('_', '-')} must be >= 0, got {v}")
            prices[k] = v
    res = plan_network(radix=args.radix, endpoints=args.endpoints, n_gpus=args.gpus,
                       gpus_per_node=args.gpus_per_node, nics_per_node=args.nics_per_node, planes=args.planes,
                       prices=prices)
    rows = [dict(r, cost_musd=r.get("cost_usd", 0) / 1e6 if "cost_usd" in r else None,
                 per_ep_k=r["cost_usd_per_endpoint"] / 1e3 if "cost_usd_per_endpoint" in r else None,
                 note=r.get("infeasible") or ("chosen" if r.get("chosen") else
                                              ("" if r.get("constructible", True) else "q not a prime power")))
            for r in res["rows"]]
    _say(args, f"{res['endpoints']} endpoints, {args.radix}-port switches:")
    _say(args, table(rows, [("topology", "topology", ""), ("capacity", "endpoints", ","), ("switches", "switches", ","),
                            ("links", "links", ","), ("cost_musd", "cost $M", ".1f"), ("per_ep_k", "$k/endpoint", ".2f"),
                            ("diameter_switch_hops", "switch hops", ""), ("note", "", "")]))
    if args.topology_out:
        p = write_topology(res, args.topology_out, base=args.base_topology, topology=args.choose)
        res["topology_yaml"] = str(p)
        _say(args, f"wrote {p} (dsv3sim run accepts it as topology=\"{p}\")")
    args.report = None
    _emit(args, res)
    return 0
