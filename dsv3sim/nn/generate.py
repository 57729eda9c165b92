"""Greedy decoding with the latent KV cache, and MTP speculative decoding (DeepSeek-V3 §2.2, §5.4.3).

Plain: prefill the prompt (naive attention, latents written to the cache), then one token per forward with
the absorbed attention reading the cache.
Speculative (V3 §5.4.3: the MTP module drafts the token after next; acceptance 85-90 % reported): after each
verified step the main model's last hidden state h_t and the newly emitted token feed MTP module 1, which
drafts d_{t+2}; the main model then runs on [x_{t+1}, d_{t+2}] in one forward: if its prediction after
x_{t+1} equals d_{t+2} the draft is accepted and its prediction after d_{t+2} comes free (2 tokens per
forward), else the main prediction replaces the draft (1 token) and the cache slot of the draft is simply
overwritten later (reads stop at the valid length). The MTP block keeps its own latent cache (cache layer
L + k). Greedy acceptance makes the output identical to plain greedy decoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from dsv3sim.config.errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationResult:
    tokens: list[int]  # generated tokens (prompt excluded)
    seconds: float
    drafted: int = 0
    accepted: int = 0
    main_forwards: int = 0

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else float("inf")

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


def _argmax_last(logits: torch.Tensor) -> int:
    return int(logits[0, -1].argmax())


@torch.no_grad()
def generate(model, prompt: torch.Tensor, n_tokens: int) -> GenerationResult:
    """Greedy decoding of ``n_tokens`` after prompt [1,P]."""
    if n_tokens <= 0:
        raise ConfigError(f"tokens must be > 0, got {n_tokens}")
    model.eval()
    P = prompt.shape[1]
    t0 = time.perf_counter()
    cache = model.allocate_cache(1, P + n_tokens + 1)
    x = _argmax_last(model(prompt, cache=cache, start=0))
    out, pos, fwd = [x], P, 1
    while len(out) < n_tokens:
        x = _argmax_last(model(torch.tensor([[x]], device=prompt.device), cache=cache, start=pos))
        out.append(x)
        pos += 1
        fwd += 1
    return GenerationResult(tokens=out, seconds=time.perf_counter() - t0, main_forwards=fwd)


@torch.no_grad()
def generate_speculative_mtp(model, prompt: torch.Tensor, n_tokens: int) -> GenerationResult:
    """Greedy decoding with MTP module 1 drafting one token per main forward (module docstring)."""
    if not len(model.mtp):
        raise ConfigError(f"{model.cfg.name} has no MTP module (num_nextn_predict_layers = 0)")
    if n_tokens <= 0:
        raise ConfigError(f"tokens must be > 0, got {n_tokens}")
    model.eval()
    dev = prompt.device
    P = prompt.shape[1]
    t0 = time.perf_counter()
    cache = model.allocate_cache(1, P + n_tokens + 3, include_mtp=True)
    h = model.hidden(prompt, cache=cache, start=0)  # [1,P,H]
    x = _argmax_last(model.lm_head(h))
    seq_next = torch.cat([prompt[:, 1:], torch.tensor([[x]], device=dev)], dim=1)  # t_{i+1} for i < P
    lg, _ = model.mtp_logits(0, h, seq_next, start=0, cache=cache)
    draft = _argmax_last(lg)
    out, pos, drafted, accepted, fwd = [x], P, 0, 0, 1
    while len(out) < n_tokens:
        hv = model.hidden(torch.tensor([[x, draft]], device=dev), cache=cache, start=pos)  # positions pos, pos+1
        y = model.lm_head(hv)[0].argmax(-1).tolist()
        fwd += 1
        drafted += 1
        if y[0] == draft:
            accepted += 1
            new, h_new = [draft, y[1]], hv
        else:
            new, h_new = [y[0]], hv[:, :1]
        out.extend(new)
        lg, _ = model.mtp_logits(0, h_new, torch.tensor([new], device=dev), start=pos, cache=cache)
        draft = _argmax_last(lg)
        x = new[-1]
        pos += len(new)
    return GenerationResult(tokens=out[:n_tokens], seconds=time.perf_counter() - t0, drafted=drafted,
                            accepted=accepted, main_forwards=fwd)
