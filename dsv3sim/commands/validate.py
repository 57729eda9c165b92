"""`dsv3sim validate`: run the model as a real torch.distributed job (torchrun), simulate the same run,
compare step time and components.

Gloo on CPU, NCCL on GPUs. The job first calibrates this machine (transport ping-pong / all-to-all /
all-reduce sweeps and a standalone profile of every model component, in the same processes), then trains
``--steps`` steps with EP all-to-all dispatch/combine (node-limited routing; with --fp8 FP8 compute and FP8 dispatch), the
pipeline schedule's action lists executed with point-to-point sends, and DP gradient all-reduce. The
prediction replays the run from the calibration and the routing the run used, never from its timings.
A worker that dies or hangs fails the command with the rank and the cause; every wait is bounded.

Several nodes: run the same command on every node with --nnodes N --rdzv-endpoint HOST:PORT (a host all
nodes reach) and the same --rdzv-id; --nproc is the processes per node. Results land on the node of rank 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from dsv3sim.commands import _args as A
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.host import host_memory_bytes

NAME = "validate"
HELP = "run the model as a real torchrun job, simulate the same run, compare (measured vs predicted)"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help="model config name or path (default tiny)")
    p.add_argument("--nproc", type=A.pos_int, default=2, help="processes per node (default 2)")
    p.add_argument("--ep", type=A.pos_int, default=None, help="expert-parallel size (default: world / (pp * dp))")
    p.add_argument("--pp", type=A.pos_int, default=1, help="pipeline stages (default 1)")
    p.add_argument("--dp", type=A.pos_int, default=None, help="data-parallel replicas (default: world / (ep * pp))")
    p.add_argument("--steps", type=A.pos_int, default=4, help="training steps, the first --warmup not measured")
    p.add_argument("--warmup", type=A.nonneg_int, default=1)
    p.add_argument("--device", type=A.device, choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--schedule", default="1f1b", help="pipeline schedule: 1f1b, zb1p, dualpipe, dualpipev")
    p.add_argument("--microbatches", type=A.nonneg_int, default=0, help="micro-batches per step (default 2*pp, 1 if pp=1)")
    p.add_argument("--micro-batch", type=A.pos_int, default=2, help="sequences per micro-batch (default 2)")
    p.add_argument("--seq-len", type=A.pos_int, default=64)
    p.add_argument("--fp8", action="store_true",
                   help="FP8 training: block-scaled FP8 GEMMs (1x128 activations, 128x128 weights) in every linear "
                        "and routed expert (Triton kernels on a GPU, the exact emulation on CPU) and the FP8 "
                        "dispatch payload, BF16 combine")
    p.add_argument("--fp8-dispatch-only", action="store_true",
                   help="FP8 dispatch payload only, compute in the model dtype")
    p.add_argument("--gpus-per-node", type=A.nonneg_int, default=0,
                   help="virtual node size for node-limited routing (default: the EP group is one node)")
    p.add_argument("--threads", type=A.threads, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--allow-oversubscribe", action="store_true",
                   help="run more processes x threads than this machine has CPU cores (on CPU refused without it: "
                        "ranks then time-share cores and the measurement is of the OS scheduler)")
    p.add_argument("--timeout", type=A.pos_float, default=600.0, help="wall-clock limit of the job, s")
    p.add_argument("--collective-timeout", type=A.pos_float, default=60.0, help="limit of any one collective, s")
    p.add_argument("--calib-sizes", default="1024,16384,131072,1048576,4194304",
                   help="transport sweep message sizes, bytes, comma-separated")
    p.add_argument("--calib-iters", type=A.pos_int, default=10, help="iterations per transport size")
    p.add_argument("--profile-reps", type=A.pos_int, default=8, help="samples per model component in the calibration")
    p.add_argument("--out", default=None, help="output folder (default reports/validate/<stamp>)")
    p.add_argument("--save-profile", action="store_true",
                   help="also write the calibration to profiles/cpu-local/ (cpu) for the simulator")
    p.add_argument("--nnodes", type=A.pos_int, default=1, help="nodes (multi-node: same command on each node)")
    p.add_argument("--rdzv-endpoint", default="", help="HOST:PORT of the c10d rendezvous (default 127.0.0.1:free)")
    p.add_argument("--rdzv-id", default="", help="job id shared by all nodes")
    p.add_argument("--node-rank", type=A.int_range(-1), default=-1, help="this node's rank (default: assigned)")
    p.add_argument("--from-run", default=None, metavar="DIR",
                   help="no new job: predict and compare again from a finished run's folder (its result.json)")
    p.add_argument("--fault", default="", help=argparse.SUPPRESS)  # tests: kind:rank:step
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--report", default=None, help="write an HTML report with a validation section")


def _check_processes(args: argparse.Namespace) -> None:
    if args.nproc <= 0 or args.nnodes <= 0:
        raise ConfigError(f"--nproc ({args.nproc}) and --nnodes ({args.nnodes}) must be > 0")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.device == "cpu" and not args.allow_oversubscribe:
        from dsv3sim.validate.load import cores as cpu_cores

        cores = cpu_cores()
        if args.nproc * args.threads > cores:
            raise ConfigError(f"--nproc {args.nproc} x --threads {args.threads} = {args.nproc * args.threads} "
                             f"processes' threads > {cores} CPU cores of this machine (pass --allow-oversubscribe "
                             f"to run anyway)")


def _ep_dp(args: argparse.Namespace, world: int) -> tuple[int, int]:
    """EP and DP filling the world with PP; the ones not given are what divides the rest."""
    pp = args.pp
    if args.ep is None and args.dp is None:
        ep, dp = (world // pp if pp and world % pp == 0 else 0), 1
    elif args.ep is None:
        ep, dp = (world // (pp * args.dp) if pp * args.dp and world % (pp * args.dp) == 0 else 0), args.dp
    else:
        ep = args.ep
        dp = args.dp if args.dp is not None else (world // (pp * ep) if pp * ep and world % (pp * ep) == 0 else 0)
    if not ep or not dp:
        raise ConfigError(f"cannot lay out world size {world} (nproc {args.nproc} x nnodes {args.nnodes}) as "
                         f"ep={args.ep} x pp={pp} x dp={args.dp}")
    return ep, dp


def _check_model(args: argparse.Namespace, ep: int) -> None:
    from dsv3sim.config import load_model_config

    pp = args.pp
    from dsv3sim.validate.nn_adapter import check_supported

    cfg = load_model_config(args.model)
    check_supported(cfg)
    if cfg.is_moe and cfg.n_routed_experts % ep:
        raise ConfigError(f"n_routed_experts ({cfg.n_routed_experts}) of {cfg.name} must be divisible by --ep ({ep})")
    if not cfg.is_moe and ep > 1:
        raise ConfigError(f"{cfg.name} has no routed experts; use --ep 1")
    stages = pp * (2 if args.schedule == "dualpipev" else 1)
    if stages > cfg.num_hidden_layers:
        raise ConfigError(f"--pp {pp} with --schedule {args.schedule} needs {stages} pipeline stages, more than "
                         f"{cfg.name}'s {cfg.num_hidden_layers} layers")
    if args.device == "cpu":
        _check_host_memory(args, cfg)


def _check_host_memory(args: argparse.Namespace, cfg) -> None:
    """Refuse a CPU run whose activations alone cannot fit in this host's available memory: a lower bound, one
    micro-batch in flight per rank, FP32, every layer's kept activations without recomputation
    (``cost.memory.activation_bytes_per_token``) over the ranks' PP share, and the head's logits and their
    gradient. Weights, optimizer state and the eager model's extra copies come on top."""
    from dsv3sim.cost.memory import activation_bytes_per_token

    have = host_memory_bytes(available=True)
    if have is None:
        return
    tokens = args.micro_batch * args.seq_len
    per_token = 2.0 * activation_bytes_per_token(cfg, fp8_cache=False, recompute_norm_and_up_proj=False)
    need = args.nproc * tokens * per_token / args.pp + args.nproc / args.pp * tokens * cfg.vocab_size * 4 * 2
    if need > have:
        raise ConfigError(f"--micro-batch {args.micro_batch} x --seq-len {args.seq_len} = {tokens} tokens per "
                         f"micro-batch do not fit: {args.nproc} processes need at least {need / 2**30:.1f} GiB of "
                         f"activations, this machine has {have / 2**30:.1f} GiB available")


def _fault(spec: str):
    from dsv3sim.validate.spec import Fault

    if not spec:
        return None
    k, r, s = (spec.split(":") + ["0", "0"])[:3]
    try:
        r, s = int(r), int(s)
    except ValueError:
        raise ConfigError(f"--fault must be KIND[:RANK[:STEP]] with integer RANK and STEP, got {spec!r}") from None
    return Fault(kind=k, rank=r, step=s)


def _check_cuda(args: argparse.Namespace) -> None:
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device visible")
        if args.nproc > torch.cuda.device_count():
            raise ConfigError(f"--nproc {args.nproc} > {torch.cuda.device_count()} visible GPUs")


def _calib_sizes(args: argparse.Namespace) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in str(args.calib_sizes).split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--calib-sizes must be comma-separated integers, got {args.calib_sizes!r}") from None
    if len(sizes) < 2 or min(sizes) < 4:
        raise ConfigError(f"--calib-sizes needs >= 2 sizes of >= 4 bytes, got {sizes}")
    if args.calib_iters < 1 or args.profile_reps < 1:
        raise ConfigError(f"--calib-iters ({args.calib_iters}) and --profile-reps ({args.profile_reps}) must be >= 1")
    return sizes


def make_spec(args: argparse.Namespace, out_dir: str):
    from dsv3sim.validate.spec import RunSpec

    world = args.nproc * args.nnodes
    _check_processes(args)
    ep, dp = _ep_dp(args, world)
    _check_model(args, ep)
    fault = _fault(args.fault)
    _check_cuda(args)
    sizes = _calib_sizes(args)
    return RunSpec(job="train", model=args.model, calib_sizes=sizes, calib_iters=args.calib_iters,
                   profile_reps=args.profile_reps, nproc=args.nproc, nnodes=args.nnodes, ep=ep, pp=args.pp, dp=dp,
                   steps=args.steps, warmup=args.warmup, device=args.device, seq_len=args.seq_len,
                   micro_batch=args.micro_batch, microbatches=args.microbatches, schedule=args.schedule,
                   gpus_per_node=args.gpus_per_node, fp8=args.fp8 or args.fp8_dispatch_only,
                   fp8_compute=args.fp8 and not args.fp8_dispatch_only, threads=args.threads,
                   collective_timeout_s=args.collective_timeout, out_dir=out_dir, fault=fault)


def run(args: argparse.Namespace) -> int:
    from dsv3sim.validate.compare import build_result, write_outputs
    from dsv3sim.validate.launch import Rendezvous, WorkerFailure, launch
    from dsv3sim.validate.prediction import predict

    if args.report and not str(args.report).lower().endswith((".html", ".htm")):
        raise ConfigError(f"--report must end in .html, got {args.report}")
    t0 = time.monotonic()
    if args.from_run:
        from dsv3sim.validate.spec import RunSpec
        out_dir = Path(args.from_run).resolve()
        if not (out_dir / "result.json").is_file():
            raise ConfigError(f"--from-run {out_dir}: no result.json (not a finished validation run)")
        try:
            spec = RunSpec.from_json(json.loads((out_dir / "result.json").read_text())["spec"])
        except (ValueError, KeyError, TypeError) as e:  # not JSON, no spec, or fields of another version
            raise ConfigError(f"--from-run {out_dir}: result.json is not a validation result ({type(e).__name__}: {e})") from None
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out_dir = Path(args.out or Path("reports") / "validate" / f"{Path(args.model).stem}-{stamp}").resolve()
        spec = make_spec(args, str(out_dir))
        from dsv3sim.validate.schedule import plan
        plan(spec.schedule, spec.pp, spec.n_microbatches)  # bad schedule/pp/microbatches fail here, not in workers
        from dsv3sim.commands._progress import bars_wanted, progress

        try:
            with progress(None, f"validate: {args.nproc} workers per node via torchrun (logs in {out_dir})",
                          enabled=bars_wanted(args.json)):
                launch(spec, timeout_s=args.timeout,
                       rdzv=Rendezvous(endpoint=args.rdzv_endpoint, run_id=args.rdzv_id, node_rank=args.node_rank))
        except WorkerFailure as e:
            print(f"dsv3sim validate: error: {e}", file=sys.stderr)
            return 3
    raw_path = out_dir / "result.json"
    if not raw_path.exists():
        print(f"dsv3sim validate: this node's workers finished; the results are on the node of rank 0 "
              f"({out_dir} there)")
        return 0
    raw = json.loads(raw_path.read_text())
    train = [r["train"] for r in raw["ranks"]]
    calib = [r["calibration"] for r in raw["ranks"]]
    pred = predict(spec, train, calib, out_dir)
    result = build_result(spec, train, calib, pred, out_dir=out_dir, wall_s=time.monotonic() - t0)
    _save_topology(result, spec, out_dir, args.save_profile, calib, pred)
    if spec.device == "cuda":
        _gpu_tables(result, spec, train, raw)
    write_outputs(result, train, out_dir, args.report)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_table(result, args.report)
    return 0


def _save_topology(result: dict, spec, out_dir: Path, save: bool, calib: list[dict], pred: dict) -> None:
    import shutil

    from dsv3sim.validate.atomic import write_json

    fits = result["transport_calibrated"]
    result["topology_calibrated"] = pred["topology_calibrated"]
    if spec.device != "cpu" or "p2p" not in fits:
        return
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result["sim_on_calibrated_topology"] = _sim_check(Path(pred["topology_calibrated"]), result)
    if save:
        prof = Path(__file__).resolve().parents[2] / "profiles" / "cpu-local"
        shutil.copyfile(pred["topology_calibrated"], prof / "local-cpu.yaml")
        write_json(prof / "transport.json", {"when": when, "world": spec.world_size, "fits": fits,
                                             "points_rank0": [p["points"] for p in calib[0]["probes"]]})
        comps = {str(c["rank"]): [p.get("components", {}) for p in c["probes"]] for c in calib}
        write_json(prof / f"components-{Path(spec.model).stem}.json",
                   {"when": when, "model": spec.model, "micro_batch": spec.micro_batch, "seq_len": spec.seq_len,
                    "layout": {"ep": spec.ep, "pp": spec.pp, "dp": spec.dp}, "per_rank_probes": comps})


def _sim_check(path: Path, result: dict) -> dict:
    """dsv3sim.sim's collectives on the calibrated topology next to the measured/fitted transport: the PP
    activation p2p (the calibration maps the p2p fit onto the link exactly) and a ring all-reduce of the
    run's gradient bytes (the sim's ring on the p2p link vs gloo's measured all-reduce of those bytes)."""
    from dsv3sim.sim.collectives import simulate_collective
    from dsv3sim.topology.graph import load_topology

    topo = load_topology(str(path))
    n = result["scenario"]["world_size"]
    out: dict = {"topology": str(path)}
    grad = max((b.get("allreduce", 0.0) for b in result["a2a_bytes_per_rank_per_step"].values()), default=0.0)
    if grad and n >= 2:
        out["all_reduce_grad_bytes"] = grad
        out["all_reduce_sim_ring_s"] = simulate_collective(topo, "all-reduce", list(range(n)), grad).time_s
        out["all_reduce_measured_allreduce_s"] = next((c["measured_s"] for c in result["components"]
                                                       if c["name"] == "allreduce"), None)
    out["p2p_1MB_sim_s"] = simulate_collective(topo, "p2p", [0, 1], 1e6).time_s
    return out


def _gpu_tables(result: dict, spec, train: list[dict], raw: dict) -> None:
    """Compute side vs the GPU profile tables (one H200: ``--device cuda --nproc 1``)."""
    from dsv3sim.config import load_model_config
    from dsv3sim.validate.gpu_tables import compare_to_tables, gpu_name

    name = raw["ranks"][0]["train"].get("device_name", "")
    try:
        cmp = compare_to_tables(load_model_config(spec.model), spec, train, gpu_name(name))
    except (ValueError, ImportError) as e:
        result["compute_vs_profile_tables"] = {"error": str(e)}
        return
    result["compute_vs_profile_tables"] = cmp
    src = f"profile tables ({cmp['gpu']})"
    result["validation"] += [dict(name=f"compute {r['name']} vs tables", predicted=r["table_s"],
                                  measured=r["measured_s"], unit="s", source=src) for r in cmp["rows"]
                             if r["measured_s"] > 0]


def _print_table(r: dict, report: str | None) -> None:
    print(f"{r['scenario']['name']}  ({r['model_source']}; {r['schedule_source']})")
    ci = r.get("measured_step_ci95_s")
    within = (f" (median of {len(r['measured_steps_s'])} steps, 95 % interval {ci[0] * 1e3:.2f}-{ci[1] * 1e3:.2f} ms)"
              if ci else "")
    print(f"step time: measured {r['measured_step_s'] * 1e3:.2f} ms{within}, predicted {r['predicted_step_s'] * 1e3:.2f} "
          f"ms, error {r['error'] * 100:+.1f} %")
    ld = r.get("machine_load") or {}
    if ld:
        print(f"machine load during the steps: load average {ld['loadavg1_min']:.1f}-{ld['loadavg1_max']:.1f} on "
              f"{ld['cores']} cores, ranks' CPU share {ld['rank_cpu_share_median']}"
              + (f", steal {ld['steal_median'] * 100:.1f} %" if "steal_median" in ld else ""))
    print(f"{'component':14s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}   CPU ms measured / predicted")
    for c in r["components"]:
        e = "" if c["error"] is None else f"{c['error'] * 100:+.0f} %"
        cpu = (f"   {c['measured_cpu_s'] * 1e3:.3f} / {c['predicted_cpu_s'] * 1e3:.3f}"
               if "measured_cpu_s" in c else "")
        print(f"{c['name']:14s} {c['measured_s'] * 1e3:12.3f} {c['predicted_s'] * 1e3:13.3f} {e:>8s}{cpu}")
    g = r.get("compute_vs_profile_tables")
    if g and "rows" in g:
        print(f"compute vs {g['gpu']} profile tables: measured {g['compute_measured_s'] * 1e3:.3f} ms, tables "
              f"{g['compute_table_s'] * 1e3:.3f} ms, error {g['compute_error'] * 100:+.1f} %")
        for x in g["rows"]:
            e = "" if x["error"] is None else f"{x['error'] * 100:+.0f} %"
            print(f"  {x['name']:16s} {x['measured_s'] * 1e3:10.3f} {x['table_s'] * 1e3:10.3f} {e:>8s}")
    print(f"outputs: {r['out_dir']}" + (f"; report {report}" if report else ""))
