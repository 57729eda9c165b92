"""`dsv3sim stats CONFIG`: size, cost per token and KV cache of a model, from the analytic cost model."""

from __future__ import annotations

import argparse
import json

from dsv3sim.commands import _args as A
from dsv3sim.config import load_model_config
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.cost.flops import decode_flops_per_token, forward_flops_per_token, prefill_flops_per_token
from dsv3sim.cost.kvcache import (
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    max_batch_by_context,
    mha_equivalent_bytes_per_token,
)
from dsv3sim.cost.memory import activation_bytes_per_token, checkpoint_weight_dtype, training_state_bytes, weight_bytes
from dsv3sim.cost.params import count_params

NAME = "stats"
HELP = "parameters, FLOPs per token, memory and KV cache of a model config"
DESCRIPTION = __doc__ + """
Definitions (see README): params_activated counts the output head but not the embedding lookup, and
excludes MTP; train_flops_per_token = forward + backward (2x forward) at --seq-len with causal attention."""

GiB = 1024 ** 3  # binary: memory sizes we compute are shown in GiB
GB = 1e9  # decimal: vendors quote HBM in GB (H200: 141 GB = 131.3 GiB; config/hardware.py stores bytes)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="HF config.json path, or a name from model/ (e.g. deepseek-v3)")
    p.add_argument("--seq-len", type=A.pos_int, default=4096, help="training/prefill sequence length (default 4096)")
    p.add_argument("--context", type=A.pos_int, default=None, help="decode context length (default: --seq-len)")
    p.add_argument("--gpu", default="H200",
                   help="GPU whose HBM sizes the KV-capacity lines (hardware table; default H200, 141 GB)")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--gpu-memory-GB", type=A.pos_float, default=None, help="GPU memory in GB (1e9 B), instead of --gpu")
    mem.add_argument("--gpu-memory-GiB", type=A.pos_float, default=None,
                     help="GPU memory in GiB (2^30 B), instead of --gpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def compute(cfg: ModelConfig, seq_len: int, context: int, gpu_memory_bytes: float) -> dict:
    if seq_len <= 0:
        raise ConfigError(f"--seq-len must be > 0, got {seq_len}")
    pc = count_params(cfg)
    fwd = forward_flops_per_token(cfg, seq_len)
    fwd_mtp = forward_flops_per_token(cfg, seq_len, include_mtp=True)
    kv = kv_cache_bytes_per_token(cfg, 2, context=context)
    wfp8 = weight_bytes(cfg, "fp8")
    ckpt = checkpoint_weight_dtype(cfg)
    wbf16 = weight_bytes(cfg, "bf16")
    # Upper bound: the whole HBM of one GPU holds KV cache (weights, activations and workspace elsewhere).
    # Serving results (`dsv3sim run scenarios/deepseek_v3_serving.py`) subtract the weights per GPU instead.
    kv_budget = gpu_memory_bytes
    out = {
        "model": cfg.name,
        "model_type": cfg.model_type,
        "family": cfg.family,
        "attention": cfg.attention,
        "params_total": pc.total,
        "params_activated": pc.activated,
        "params_mtp": pc.mtp,
        "params_mtp_activated": pc.mtp_activated,
        "params_total_with_mtp": pc.total_with_mtp,
        "params_hub_checkpoint": pc.hub_checkpoint,
        "params_by_component": pc.by_component,
        "params_activated_by_component": pc.activated_by_component,
        "seq_len": seq_len,
        "train_flops_per_token": fwd.training,
        "train_flops_per_token_with_mtp": fwd_mtp.training,
        "forward_flops_by_component": fwd.by_component,
        "prefill_flops_per_token": prefill_flops_per_token(cfg, seq_len),
        "decode_context": context,
        "decode_flops_per_token": decode_flops_per_token(cfg, context),
        "kv_cache_bytes_per_token": kv,
        "kv_cache_bytes_per_token_fp8": kv_cache_bytes_per_token(cfg, 1, context=context),
        "kv_cache_bytes_per_token_mha_equivalent": mha_equivalent_bytes_per_token(cfg, 2),
        "kv_cache_bytes_at_128k": kv_cache_bytes(cfg, 131072, 2),
        "weights_bytes_bf16": wbf16,
        "weights_bytes_fp8": wfp8,
        "weights_checkpoint_dtype": ckpt,
        "weights_bytes_checkpoint": weight_bytes(cfg, ckpt),
        "gpus_to_hold_weights_fp8": _ceil_div(wfp8, gpu_memory_bytes),
        "gpus_to_hold_weights_bf16": _ceil_div(wbf16, gpu_memory_bytes),
        "training_state_bytes_per_param": training_state_bytes(1.0, dp=1).total,
        "activation_bytes_per_token": activation_bytes_per_token(cfg),
        "gpu_memory_bytes": gpu_memory_bytes,
        "max_batch_per_gpu_memory": {str(c): n for c, n in max_batch_by_context(cfg, kv_budget).items()},
    }
    return out


def _ceil_div(a: float, b: float) -> int:
    return int(-(-a // b))


def _fmt(n: float, unit: str = "") -> str:
    """A count for this table: three decimals after the prefix (671.026 G, 1.536 K), so that parameter counts
    read to a thousandth of their prefix (V3's 671 B total vs 684.490 G on the Hub); ``config.units.fmt_si``
    writes the reports' three significant digits (671 G) instead."""
    for div, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:,.3f} {s}{unit}"
    return f"{n:,.0f} {unit}".rstrip()


def gpu_memory(args: argparse.Namespace) -> tuple[float, str]:
    """(bytes, label) of the GPU memory the capacity lines use: --gpu-memory-GB/GiB, else --gpu's HBM."""
    if args.gpu_memory_GB is not None or args.gpu_memory_GiB is not None:
        gb, gib = args.gpu_memory_GB, args.gpu_memory_GiB
        v = gb * GB if gb is not None else gib * GiB
        if not v > 0:
            raise ConfigError(f"GPU memory must be > 0, got --gpu-memory-GB={gb} --gpu-memory-GiB={gib}")
        return v, (f"{gb:g} GB" if gb is not None else f"{gib:g} GiB")
    from dsv3sim.config.hardware import get_gpu

    g = get_gpu(args.gpu)
    return g.hbm_bytes, f"{g.name} {g.hbm_bytes / GB:g} GB"


def run(args: argparse.Namespace) -> int:
    cfg = load_model_config(args.config)
    ctx = args.context if args.context is not None else args.seq_len
    mem, mem_label = gpu_memory(args)
    out = compute(cfg, args.seq_len, ctx, mem)
    out["gpu_memory_label"] = mem_label
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        ("model", f"{cfg.name} ({cfg.model_type}, {cfg.family} family, {cfg.attention.upper()})"),
        ("params total", _fmt(out["params_total"])),
        ("params activated / token", _fmt(out["params_activated"])),
        ("params MTP modules", _fmt(out["params_mtp"])),
        ("params as on the Hub (MTP incl. its embedding/head copies)", _fmt(out["params_hub_checkpoint"])),
    ]
    rows += [(f"  {k}", _fmt(v)) for k, v in out["params_by_component"].items() if v]
    rows += [
        (f"train FLOPs / token (S={args.seq_len}, causal)", _fmt(out["train_flops_per_token"], "FLOP")),
        (f"prefill FLOPs / token (S={args.seq_len})", _fmt(out["prefill_flops_per_token"], "FLOP")),
        (f"decode FLOPs / token (context {ctx})", _fmt(out["decode_flops_per_token"], "FLOP")),
        (f"KV cache / token (BF16{', at context ' + str(ctx) if cfg.sliding_window else ''})",
         f"{out['kv_cache_bytes_per_token']:,} B"),
        ("KV cache / token (FP8)", f"{out['kv_cache_bytes_per_token_fp8']:,} B"),
        ("KV cache / token, MHA equivalent (BF16)", f"{out['kv_cache_bytes_per_token_mha_equivalent']:,} B"),
        ("KV cache of one 128K sequence", f"{out['kv_cache_bytes_at_128k'] / GiB:,.2f} GiB"),
        ("weights BF16 / FP8 (+ block scales)", f"{out['weights_bytes_bf16'] / GiB:,.1f} / "
                                                 f"{out['weights_bytes_fp8'] / GiB:,.1f} GiB"),
        (f"weights as published ({out['weights_checkpoint_dtype']})",
         f"{out['weights_bytes_checkpoint'] / GiB:,.1f} GiB"),
        (f"GPUs of {mem_label} ({mem / GiB:,.1f} GiB) to hold the weights (FP8 / BF16)",
         f"{out['gpus_to_hold_weights_fp8']} / {out['gpus_to_hold_weights_bf16']}"),
        ("training state bytes / param (DeepSeek-V3 §3.3.3, no ZeRO)", f"{out['training_state_bytes_per_param']:g}"),
        ("activations kept / token (all layers)", f"{out['activation_bytes_per_token'] / 1e6:,.2f} MB"),
    ]
    rows += [(f"sequences at context {c} whose BF16 KV fills all {mem_label} (upper bound)", f"{v:,}")
             for c, v in out["max_batch_per_gpu_memory"].items()]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0
