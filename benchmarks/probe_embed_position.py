"""The embedding lookup's CPU time by what ran before it on the core, in one process.

    .venv/bin/python benchmarks/probe_embed_position.py [--model model/tiny.json] [--rounds 40]

The lookup itself is a few microseconds; the rest is its code and data brought back into the caches the work
before it evicted. Positions: back to back; after a forward; after a backward; after the optimizer's step,
``zero_grad`` and a step's start (a sleep and a 1 ms spin, as ``validate.train._start_together`` waits); after
the start alone. Prints the median and mean CPU microseconds per position (``time.thread_time``), one thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dsv3sim.config.model import load_model_config
from dsv3sim.nn.transformer import Transformer
from dsv3sim.validate.train import START_MARGIN_S, wait_until


def _start() -> None:
    wait_until(time.perf_counter() + START_MARGIN_S)


def _cpu_us(fn) -> float:
    c = time.thread_time()
    fn()
    return (time.thread_time() - c) * 1e6


def _round(m, opt, emb, tok, res: dict[str, list[float]]) -> None:
    """One training step with the lookup timed at each position."""
    inp = tok[:, :-1]
    out = m(inp)
    logits = out[0] if isinstance(out, tuple) else out
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tok[:, 1:].reshape(-1)).backward()
    res["after a backward"].append(_cpu_us(lambda: emb(inp)))
    opt.step()
    opt.zero_grad(set_to_none=True)
    _start()
    res["after the optimizer and a start"].append(_cpu_us(lambda: emb(inp)))
    _start()
    res["after a start"].append(_cpu_us(lambda: emb(inp)))
    res["back to back"].append(_cpu_us(lambda: emb(inp)))
    m(inp)
    res["after a forward"].append(_cpu_us(lambda: emb(inp)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="model/tiny.json")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_model_config(a.model)
    m = Transformer(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    res: dict[str, list[float]] = {k: [] for k in ("back to back", "after a forward", "after a backward",
                                                   "after the optimizer and a start", "after a start")}
    for _ in range(a.rounds):
        _round(m, opt, m.embed_tokens, torch.randint(0, cfg.vocab_size, (a.micro_batch, a.seq_len + 1)), res)
    print(f"{'position':34s} {'median us':>10s} {'mean us':>9s}  ({a.model}, {a.micro_batch} x {a.seq_len})")
    for k, v in res.items():
        v = v[5:]  # the first rounds warm the allocator and the optimizer's state
        print(f"{k:34s} {statistics.median(v):10.1f} {statistics.fmean(v):9.1f}")


if __name__ == "__main__":
    main()
