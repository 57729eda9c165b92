"""`dsv3sim train CONFIG`: train the executable DeepSeek-V3 model (dsv3sim.nn) on real text on this machine.

Text: Python standard-library sources (train split; a held-out split is never trained on), byte-level BPE
trained locally. Balancing: aux-free (bias update with --gamma + sequence-wise loss), aux-loss (classic
auxiliary loss), none. --json prints loss_first / loss_last (mean main-model loss of the first / last
min(10, steps/10) steps), expert_load_max_over_mean (max/mean tokens per expert over the last fifth of the
steps, mean over MoE layers) and history (per step: step, loss, expert_load_max_over_mean, expert_load =
tokens per expert per main-model MoE layer)."""

from __future__ import annotations

import argparse
import json

from dsv3sim.commands import _args as A
from dsv3sim.config import load_model_config

NAME = "train"
HELP = "train the executable model on real text (CPU or GPU), report loss and expert load"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="HF config.json path, or a name from model/ (e.g. tiny)")
    p.add_argument("--steps", type=A.pos_int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--balance", choices=("aux-free", "aux-loss", "none"), default="aux-free",
                   help="load balancing (default aux-free)")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--fp8", action="store_true", help="FP8 GEMMs in every linear (CPU: exact emulation, slow)")
    p.add_argument("--save", type=A.out_path, metavar="CKPT", default=None,
                   help="write a safetensors checkpoint (HF names)")
    p.add_argument("--save-fp8", action="store_true", help="store the checkpoint's linear weights in FP8")
    p.add_argument("--batch-size", type=A.pos_int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seq-len", type=A.pos_int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--lr", type=A.pos_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--gamma", type=A.nonneg_float, default=0.01,
                   help="bias update speed for aux-free (default 0.01; V3 used 0.001 at 15k-sequence batches)")
    p.add_argument("--alpha", type=A.nonneg_float, default=None,
                   help="balance-loss weight (default: config aux_loss_alpha for aux-free, 0.01 for aux-loss)")
    p.add_argument("--device", type=A.device, default="cpu", help="torch device (default cpu; e.g. cuda)")
    p.add_argument("--threads", type=A.threads, default=1,
                   help="torch CPU threads (default 1: small GEMMs gain little from more, and a shared machine "
                        "makes OpenMP spin)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from dsv3sim.nn.train import TrainOptions, train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_model_config(args.config)
    A.check_model_fits(cfg, "cpu", "build")
    A.check_model_fits(cfg, args.device, "train")
    o = TrainOptions(steps=args.steps, balance=args.balance, seed=args.seed, fp8=args.fp8, batch=args.batch_size,
                     seq_len=args.seq_len, lr=args.lr, gamma=args.gamma, alpha=args.alpha,
                     device=args.device)
    on_step = None
    progress = None
    from dsv3sim.commands._progress import bars_wanted

    if bars_wanted(args.json):
        from rich.progress import Progress

        progress = Progress(transient=True)
        task = progress.add_task(f"train {cfg.name}", total=o.steps)
        progress.start()

        def on_step(step: int, rec: dict) -> None:
            progress.update(task, advance=1, description=f"train {cfg.name} loss {rec['loss']:.3f}")
    try:
        model, res = train(cfg, o, on_step=on_step)
    finally:
        if progress is not None:
            progress.stop()
    if args.save:
        from dsv3sim.nn.checkpoint import save

        save(model, args.save, fp8=args.save_fp8)
        res["checkpoint"] = args.save
    if args.json:
        print(json.dumps(res))
    else:
        imb = res["expert_load_max_over_mean"]
        print(f"{cfg.name}: {o.steps} steps, balance {o.balance}{' fp8' if o.fp8 else ''}: loss "
              f"{res['loss_first']:.3f} -> {res['loss_last']:.3f}, expert load max/mean "
              f"{imb if imb is None else round(imb, 3)}, {res['tokens_per_s']:.0f} tokens/s")
        if args.save:
            print(f"checkpoint: {args.save}")
    return 0
