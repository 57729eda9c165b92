"""`dsv3sim generate CONFIG`: greedy decoding with the latent KV cache, optionally MTP speculative decoding.

The prompt is a window of held-out text (or --prompt). Always runs plain decoding (tokens_per_s); with
--speculative mtp also runs MTP drafting + main-model verification and reports mtp_acceptance_rate (accepted
drafts / drafts), tokens_per_s_speculative, speedup and whether both outputs are identical (they must be:
greedy verification)."""

from __future__ import annotations

import argparse
import json

from dsv3sim.commands import _args as A
from dsv3sim.config import load_model_config
from dsv3sim.config.errors import ConfigError

NAME = "generate"
HELP = "generate text with the latent KV cache; --speculative mtp reports the MTP acceptance rate"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="HF config.json path, or a name from model/ (e.g. tiny)")
    p.add_argument("--checkpoint", default=None, help="safetensors checkpoint (HF names); random weights if absent")
    p.add_argument("--tokens", type=A.pos_int, default=64, help="tokens to generate (default 64)")
    p.add_argument("--speculative", choices=("mtp",), default=None, help="MTP speculative decoding")
    p.add_argument("--prompt", default=None, help="prompt text (default: 32 tokens of held-out text)")
    p.add_argument("--device", type=A.device, default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=A.threads, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from dsv3sim.data.corpus import tokenizer_for
    from dsv3sim.nn.batches import heldout_tokens
    from dsv3sim.nn.generate import generate, generate_speculative_mtp
    from dsv3sim.nn.transformer import Transformer

    if args.tokens <= 0:
        raise ConfigError(f"--tokens must be > 0, got {args.tokens}")
    torch.set_num_threads(args.threads)
    cfg = load_model_config(args.config)
    if cfg.attention != "mla":  # refuse before building: decoding uses MLA's latent KV cache (nn/mla.py)
        raise ConfigError(f"generate decodes MLA models only (latent KV cache); {cfg.name} uses "
                         f"{cfg.attention.upper()} attention")
    A.check_model_fits(cfg, "cpu", "build")
    torch.manual_seed(args.seed)
    model = Transformer(cfg)
    if args.checkpoint:
        from dsv3sim.nn.checkpoint import load

        load(model, args.checkpoint)
    model.to(args.device)
    tok = tokenizer_for(cfg.vocab_size)
    if args.prompt:
        prompt = torch.tensor([tok.encode(args.prompt)])
    else:
        prompt = heldout_tokens(cfg, 32, 32, args.seed)[:1]
    prompt = prompt.to(args.device)
    if prompt.shape[1] + args.tokens + 3 > cfg.max_position_embeddings:
        raise ConfigError(f"prompt ({prompt.shape[1]}) + tokens ({args.tokens}) exceed max_position_embeddings "
                         f"({cfg.max_position_embeddings})")
    from dsv3sim.commands._progress import bars_wanted, progress

    with progress(2 if args.speculative else 1, f"generating {args.tokens} tokens", enabled=bars_wanted(args.json)) \
            as bar:
        plain = generate(model, prompt, args.tokens)
        bar.step("MTP speculative decoding")
        spec = generate_speculative_mtp(model, prompt, args.tokens) if args.speculative == "mtp" else None
    res = {"config": cfg.name, "checkpoint": args.checkpoint, "seed": args.seed, "tokens": args.tokens,
           "prompt": tok.decode(prompt[0].tolist()), "device": args.device, "text": tok.decode(plain.tokens),
           "tokens_per_s": plain.tokens_per_s, "main_forwards": plain.main_forwards,
           "kv_cache_bytes_per_token": model.allocate_cache(1, 1).bytes_per_token()}
    if spec is not None:
        res.update(mtp_acceptance_rate=spec.acceptance_rate, tokens_per_s_speculative=spec.tokens_per_s,
                   speedup=spec.tokens_per_s / plain.tokens_per_s, main_forwards_speculative=spec.main_forwards,
                   drafted=spec.drafted, accepted=spec.accepted, identical_output=spec.tokens == plain.tokens)
    if args.json:
        print(json.dumps(res))
    else:
        print(res["prompt"] + "\u2588" + res["text"])
        print(f"plain: {plain.tokens_per_s:.1f} tokens/s ({plain.main_forwards} forwards)")
        if args.speculative:
            print(f"mtp speculative: {res['tokens_per_s_speculative']:.1f} tokens/s, acceptance "
                  f"{res['mtp_acceptance_rate']:.2f}, speedup {res['speedup']:.2f}x, identical {res['identical_output']}")
    return 0
