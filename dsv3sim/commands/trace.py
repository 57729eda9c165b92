"""`dsv3sim trace capture|synth|stats|export-eplb|imbalance`: MoE routing traces (format: dsv3sim/trace/FORMAT.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dsv3sim.commands import _args as A
from dsv3sim.config.checks import check_limit
from dsv3sim.config.errors import ConfigError

NAME = "trace"
HELP = "routing traces: capture from the model, synthesise, import EPLB/SGLang loads, statistics"
DESCRIPTION = __doc__ + """
  capture      run the model over held-out text and record every MoE layer's routing
  synth        draw a synthetic trace (Zipf skew, drift, layer/sequence correlation), or --fit one to a trace
  stats        expert-load imbalance, nodes per token, experts per node, IB/NVLink bytes per token
  export-eplb  write a trace's per-layer expert loads as EPLB's {"weight": [[...]]}
  imbalance    expert-load imbalance per training step from `dsv3sim train --json` outputs"""


def _layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ep", type=A.pos_int, default=None, help="expert-parallel GPUs (with --gpus-per-node)")
    p.add_argument("--gpus-per-node", type=A.pos_int, default=None, help="GPUs per node of the EP layout")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="trace_command", metavar="SUBCOMMAND", required=True)

    c = sub.add_parser("capture", help="record the routing of the model over held-out text")
    c.add_argument("config", help="model config path or name (e.g. tiny)")
    c.add_argument("--checkpoint", default=None, help="safetensors checkpoint (from `dsv3sim train --save`)")
    c.add_argument("--tokens", type=A.pos_int, required=True, help="tokens to route")
    c.add_argument("--seq-len", type=A.pos_int, default=256, help="sequence length of each forward (default 256)")
    c.add_argument("--seed", type=A.seed, required=True)
    _layout_args(c)
    c.add_argument("--node-limit", type=A.pos_int, default=None,
                   help="route each token to at most M nodes (groups = nodes of the layout; DeepSeek-V3 §2.1.2)")
    c.add_argument("--out", type=A.out_path, required=True, help="output .npz")
    c.add_argument("--json", action="store_true", help="print the trace's stats as JSON")

    s = sub.add_parser("synth", help="synthetic trace: Zipf skew, drifting hot experts, correlations")
    s.add_argument("--fit", default=None, help="fit the knobs to this captured .npz trace (sizes from it)")
    s.add_argument("--layers", type=A.pos_int, default=3)
    s.add_argument("--experts", type=A.pos_int, default=16)
    s.add_argument("--topk", type=A.pos_int, default=4)
    s.add_argument("--tokens", type=A.pos_int, default=4096)
    s.add_argument("--seq-len", type=A.pos_int, default=256)
    s.add_argument("--zipf-s", type=A.nonneg_float, default=1.0,
                   help="Zipf exponent of expert popularity (0 = uniform)")
    s.add_argument("--drift", type=A.fraction, default=0.0, help="fraction of experts swapping rank per window, 0..1")
    s.add_argument("--windows", type=A.pos_int, default=16, help="drift windows over the trace")
    s.add_argument("--layer-corr", type=A.fraction, default=0.0, help="cross-layer correlation weight, 0..1")
    s.add_argument("--seq-corr", type=A.fraction, default=0.0, help="within-sequence correlation weight, 0..1")
    s.add_argument("--n-group", type=A.pos_int, default=1, help="gate groups (without --node-limit)")
    s.add_argument("--topk-group", type=A.pos_int, default=1, help="groups kept per token (without --node-limit)")
    _layout_args(s)
    s.add_argument("--node-limit", type=A.pos_int, default=None, help="at most M nodes per token (needs the layout)")
    s.add_argument("--hidden", type=A.pos_int, default=None, help="hidden size recorded in meta (for comm bytes)")
    s.add_argument("--seed", type=A.seed, default=0)
    s.add_argument("--out", type=A.out_path, required=True, help="output .npz")
    s.add_argument("--json", action="store_true", help="print the spec (and fit report) as JSON")

    st = sub.add_parser("stats", help="statistics of a trace (.npz), EPLB load (.json) or SGLang dump (.pt)")
    st.add_argument("path")
    _layout_args(st)
    st.add_argument("--hidden", type=A.pos_int, default=None,
                    help="hidden size for IB/NVLink bytes (default: from meta)")
    st.add_argument("--dispatch-dtype", choices=("fp8", "bf16"), default="fp8")
    st.add_argument("--json", action="store_true", help="print one JSON object")

    e = sub.add_parser("export-eplb", help='write per-layer expert loads as EPLB {"weight": [[...]]}')
    e.add_argument("path")
    e.add_argument("--out", type=A.out_path, required=True)

    im = sub.add_parser("imbalance", help="imbalance per training step from `dsv3sim train --json` outputs")
    im.add_argument("runs", nargs="+", help="JSON files printed by `dsv3sim train ... --json`")
    im.add_argument("--window", type=A.pos_int, default=10, help="steps summed for the *_windowed series (default 10)")
    im.add_argument("--out", type=A.out_path, required=True, help="output JSON (plot-ready series)")


def _layout(args: argparse.Namespace, n_experts: int):
    from dsv3sim.trace.layout import EpLayout

    if (args.ep is None) != (args.gpus_per_node is None):
        raise ConfigError(f"--ep ({args.ep}) and --gpus-per-node ({args.gpus_per_node}) go together")
    if args.ep is None:
        return None
    return EpLayout(n_experts=n_experts, ep=args.ep, gpus_per_node=args.gpus_per_node)


def _npz_path(out: str) -> Path:
    """The archive a trace is written to: ``--out`` with ``.npz`` appended when it has another suffix, the name
    every reader (`trace stats`, `place --load`, scenarios' ``routing_trace``) recognises."""
    p = Path(out)
    return p if p.suffix.lower() == ".npz" else p.with_name(p.name + ".npz")


def _run_capture(args: argparse.Namespace) -> int:
    from dsv3sim.config import load_model_config
    from dsv3sim.trace.capture import capture_from_config
    from dsv3sim.trace.routing_trace import save_trace
    from dsv3sim.trace.stats import trace_stats

    cfg = load_model_config(args.config)
    check_limit("trace_tokens", args.tokens * max(cfg.n_moe_layers, 1), f"--tokens x MoE layers = {args.tokens} x "
                f"{cfg.n_moe_layers}")
    A.check_model_fits(cfg, "cpu", "build")
    layout = _layout(args, cfg.n_routed_experts)
    from dsv3sim.commands._progress import bars_wanted, progress

    with progress(None, f"routing {args.tokens} tokens through {cfg.name}", enabled=bars_wanted(args.json)):
        tr = capture_from_config(cfg, checkpoint=args.checkpoint, n_tokens=args.tokens, seq_len=args.seq_len,
                                 seed=args.seed, layout=layout, node_limit=args.node_limit,
                                 config_arg=args.config)
    out = save_trace(tr, _npz_path(args.out))
    st = trace_stats(tr)
    if args.json:
        print(json.dumps({"out": str(out), **{k: v for k, v in st.items() if k != "expert_load"}}, indent=2))
    else:
        print(f"wrote {out}: {tr.n_layers} MoE layers x {tr.n_tokens} tokens x top-{tr.topk}; "
              f"expert_load_max_over_mean {st['expert_load_max_over_mean']:.3f}"
              + (f"; max_nodes_per_token {st['max_nodes_per_token']} (limit {tr.node_limit})" if layout else ""))
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from dsv3sim.trace.routing_trace import save_trace
    from dsv3sim.trace.synth import SynthSpec, synthesize

    out: dict = {}
    if args.fit:
        from dsv3sim.trace.fit import fit_synth
        from dsv3sim.trace.importers import load_trace

        target = load_trace(args.fit)
        spec, report = fit_synth(target, seed=args.seed)
        layout, node_limit = target.layout, target.node_limit if target.layout is not None else None
        out["fit"] = report
        hidden = args.hidden or target.meta.get("hidden_size")
    else:
        check_limit("trace_tokens", args.tokens * args.layers * args.topk,
                    f"--tokens x --layers x --topk = {args.tokens} x {args.layers} x {args.topk}")
        check_limit("synth_cells", args.layers * args.experts * (args.tokens + 16 * args.windows),
                    f"--layers x --experts x (--tokens + 16 x --windows) = {args.layers} x {args.experts} x "
                    f"({args.tokens} + 16 x {args.windows})")
        spec = SynthSpec(n_layers=args.layers, n_experts=args.experts, topk=args.topk, n_tokens=args.tokens,
                         seq_len=args.seq_len, zipf_s=args.zipf_s, drift=args.drift, n_windows=args.windows,
                         layer_corr=args.layer_corr, seq_corr=args.seq_corr, n_group=args.n_group,
                         topk_group=args.topk_group, seed=args.seed)
        layout, node_limit, hidden = _layout(args, args.experts), args.node_limit, args.hidden
    tr = synthesize(spec, layout, node_limit)
    if hidden:
        tr.meta["hidden_size"] = int(hidden)
    if args.fit:
        tr.meta["fitted_to"] = str(args.fit)
    path = save_trace(tr, _npz_path(args.out))
    out["spec"] = asdict(spec)
    out["out"] = str(path)
    print(json.dumps(out, indent=2) if args.json else
          f"wrote {path}: {spec.n_layers} MoE layers x {spec.n_tokens} tokens x top-{spec.topk} of {spec.n_experts} "
          f"experts (Zipf {spec.zipf_s:g}, drift {spec.drift:g}, layer corr {spec.layer_corr:g}, sequence corr "
          f"{spec.seq_corr:g}, seed {spec.seed}); statistics: dsv3sim trace stats {path}")
    return 0


def _print_stats(st: dict) -> None:
    rows = [("source", f"{st.get('source')} (model {st.get('model')})"),
            ("MoE layers x experts", f"{st['n_layers']} x {st['n_experts']}"),
            ("tokens x top-k", f"{st['n_tokens']} x {st['topk']}" if st["has_tokens"] else "loads only"),
            ("expert_load_max_over_mean (worst layer)",
             f"{st['expert_load_max_over_mean']:.3f} (layer {st['expert_load_max_over_mean_layer']})"),
            ("max/mean by layer", " ".join(f"{x:.2f}" for x in st["expert_load_max_over_mean_by_layer"]))]
    if "max_nodes_per_token" in st:
        rows += [("node limit", str(st["node_limit"])),
                 ("nodes per token: mean / max", f"{st['nodes_per_token_mean']:.3f} / {st['max_nodes_per_token']}"),
                 ("nodes per token histogram", json.dumps(st["nodes_per_token_hist"])),
                 ("experts per node per token: mean / max (V3: 3.2 at equal cost)",
                  f"{st['experts_per_node_per_token_mean']:.3f} / {st['experts_per_node_per_token_max']}"),
                 ("tokens received per GPU / node: max/mean (worst layer)",
                  f"{st['gpu_recv_max_over_mean']:.3f} / {st['node_recv_max_over_mean']:.3f}")]
    if "cross_layer_mi_bits" in st:
        rows += [("MI cross-layer / within-sequence (bits)",
                  f"{st['cross_layer_mi_bits'] or 0:.4f} / {st['within_seq_mi_bits'] or 0:.4f}"),
                 ("load drift (TV over 8 windows)", f"{st['load_drift_tv']:.4f}")]
    if "comm" in st:
        c = st["comm"]
        what = f"hidden {c['hidden']}, {c['dispatch_dtype']} dispatch + bf16 combine"
        rows += [(f"IB / NVLink bytes per token per MoE layer ({what})",
                  f"{c['ib_bytes_per_token_layer']:,.0f} / {c['nvlink_bytes_per_token_layer']:,.0f}"),
                 ("IB / NVLink bytes per token, all traced MoE layers",
                  f"{c['ib_bytes_per_token']:,.0f} / {c['nvlink_bytes_per_token']:,.0f}")]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


def _run_stats(args: argparse.Namespace) -> int:
    from dsv3sim.trace.importers import load_trace
    from dsv3sim.trace.stats import trace_stats

    tr = load_trace(args.path)
    st = trace_stats(tr, layout=_layout(args, tr.n_experts), hidden=args.hidden, dispatch_dtype=args.dispatch_dtype)
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        _print_stats(st)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from dsv3sim.trace.importers import load_trace, write_eplb_json

    tr = load_trace(args.path)
    write_eplb_json(tr.loads(), args.out, layers=tr.layers)
    print(f"wrote {args.out}: weight[{tr.n_layers}][{tr.n_experts}]")
    return 0


def _run_imbalance(args: argparse.Namespace) -> int:
    from dsv3sim.trace.imbalance import imbalance_from_files

    d = imbalance_from_files(args.runs, window=args.window)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(d, indent=1) + "\n")
    for r in d["runs"]:
        print(f"{r['label']:>10}: max/mean worst layer, loads over {r['window']} steps: "
              f"{r['max_over_mean_worst_windowed'][0]:.2f} -> {r['final_max_over_mean_worst_windowed']:.2f} "
              f"over {len(r['step'])} steps")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"capture": _run_capture, "synth": _run_synth, "stats": _run_stats, "export-eplb": _run_export,
            "imbalance": _run_imbalance}[args.trace_command](args)
