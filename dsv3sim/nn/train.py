"""Training loop for the executable model on real text (dsv3sim.data), with DeepSeek's balancing choices.

balance:
* "aux-free": selection bias updated after every step with speed gamma (V3 §2.1.2) + the complementary
  sequence-wise balance loss with alpha = cfg.aux_loss_alpha unless given (V3 §2.1.2, eq. 17).
* "aux-loss": the classic expert-level auxiliary loss (V2 §2.2.3) with alpha (default 0.01), bias frozen at 0.
* "none": neither.
AdamW (beta 0.9/0.95, weight decay 0.1, V3 §4.2), linear warm-up then cosine decay to 10 %, grad-norm clip 1.0.
Per step it records the loss and, per main-model MoE layer, the tokens each expert received.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.balance import max_over_mean, update_bias
from dsv3sim.nn.batches import token_stream, train_batches
from dsv3sim.nn.transformer import Transformer

BALANCE = ("aux-free", "aux-loss", "none")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainOptions:
    steps: int = 300
    balance: str = "aux-free"
    seed: int = 0
    fp8: bool = False
    batch: int = 8
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 20
    gamma: float = 0.01
    alpha: float | None = None
    corpus_bytes: int = 3_000_000
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.balance not in BALANCE:
            raise ConfigError(f"balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        for n in ("steps", "batch", "seq_len"):
            if getattr(self, n) <= 0:
                raise ConfigError(f"{n} must be > 0, got {getattr(self, n)}")
        if self.lr <= 0 or self.gamma < 0:
            raise ConfigError(f"lr ({self.lr}) must be > 0 and gamma ({self.gamma}) >= 0")


def lr_at(step: int, o: TrainOptions) -> float:
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    p = (step - o.warmup) / max(1, o.steps - o.warmup)
    return o.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def configure_balance(model: Transformer, o: TrainOptions) -> None:
    cfg = model.cfg
    for m in model.moe_layers():
        if o.balance == "aux-free":
            m.balance_loss, m.alpha = "sequence", cfg.aux_loss_alpha if o.alpha is None else o.alpha
        elif o.balance == "aux-loss":
            m.balance_loss, m.alpha = "aux", 0.01 if o.alpha is None else o.alpha
        else:
            m.balance_loss, m.alpha = "none", 0.0


def summarize_load(history: list[dict]) -> float:
    """max/mean tokens per expert of the counts summed over the last fifth of the steps, mean over layers."""
    tail = history[-max(1, len(history) // 5):]
    if not tail or not tail[0]["expert_load"]:
        return float("nan")
    n_layers = len(tail[0]["expert_load"])
    vals = []
    for li in range(n_layers):
        tot = torch.tensor([h["expert_load"][li] for h in tail]).sum(0)
        vals.append(max_over_mean(tot))
    return sum(vals) / len(vals)


def _fresh_model(cfg: ModelConfig, o: TrainOptions) -> Transformer:
    torch.manual_seed(o.seed)
    model = Transformer(cfg, init=False)
    model.reset_parameters(seed=o.seed)
    model.to(o.device)
    model.set_fp8(o.fp8)
    configure_balance(model, o)
    model.train()
    return model


def _optimizer(params: list, o: TrainOptions) -> torch.optim.AdamW:
    """AdamW with weight decay 0.1 on matrices only (DeepSeek-V3 §4.2: betas 0.9/0.95, decay 0.1)."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=o.lr, betas=(0.9, 0.95), eps=1e-8)


def _step(model: Transformer, opt, params: list, tokens: torch.Tensor, o: TrainOptions, step: int) -> dict:
    """One optimiser step (and the aux-loss-free bias update); its history record."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, o)
    loss, parts = model.loss(tokens)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    loads = [m.last_load for m in model.moe_layers(include_mtp=False)]
    if o.balance == "aux-free":
        for m in model.moe_layers():
            if m.gate.e_score_correction_bias is not None:
                update_bias(m.gate.e_score_correction_bias, m.last_load, o.gamma)
    return {"step": step, "loss": parts["main"], "loss_total": float(loss.detach()),
            **{k: v for k, v in parts.items() if k != "main"},
            "expert_load_max_over_mean": (sum(max_over_mean(c) for c in loads) / len(loads)) if loads else None,
            "expert_load": [c.tolist() for c in loads]}


def train(cfg: ModelConfig, o: TrainOptions, *, stream: torch.Tensor | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> tuple[Transformer, dict]:
    """Train a fresh model; returns (model, result dict with loss_first, loss_last, expert_load_max_over_mean,
    tokens_per_s, history)."""
    model = _fresh_model(cfg, o)
    if stream is None:
        stream = token_stream("train", cfg.vocab_size, o.corpus_bytes)
    data = train_batches(stream, o.batch, o.seq_len + 1 + cfg.num_nextn_predict_layers, o.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, o)
    history: list[dict] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(o.steps):
        history.append(_step(model, opt, params, next(data).to(o.device), o, step))
        if on_step is not None:
            on_step(step, history[-1])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_first = max(1, min(10, o.steps // 10))
    result = {
        "config": cfg.name, "steps": o.steps, "balance": o.balance, "seed": o.seed, "fp8": o.fp8,
        "batch": o.batch, "seq_len": o.seq_len, "lr": o.lr, "gamma": o.gamma,
        "loss_first": sum(h["loss"] for h in history[:n_first]) / n_first,
        "loss_last": sum(h["loss"] for h in history[-n_first:]) / n_first,
        "expert_load_max_over_mean": summarize_load(history) if model.moe_layers(include_mtp=False) else None,
        "tokens_per_s": o.steps * o.batch * o.seq_len / dt, "train_s": dt, "train_cpu_s": cpu,
        "n_train_tokens_available": int(stream.numel()),
        "history": history,
    }
    return model, result
