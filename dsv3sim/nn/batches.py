"""Token batches for training and evaluating the executable model, as torch tensors, from the text split of
``dsv3sim.data.corpus`` (the random windows come from a seeded torch.Generator, so a seed fixes the batches)."""

from __future__ import annotations

import torch

from dsv3sim.config.errors import ConfigError
from dsv3sim.data.corpus import token_ids


def token_stream(split: str, vocab_size: int, max_bytes: int = 3_000_000) -> torch.Tensor:
    """1-D LongTensor of the split's tokens (cached)."""
    return torch.from_numpy(token_ids(split, vocab_size, max_bytes))


def train_batches(stream: torch.Tensor, batch: int, length: int, seed: int):
    """Endless generator of [batch, length] random windows of ``stream`` (torch.Generator seeded)."""
    if stream.numel() <= length:
        raise ConfigError(f"token stream ({stream.numel()}) shorter than a window ({length})")
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, stream.numel() - length, (batch,), generator=g)
        yield torch.stack([stream[s:s + length] for s in starts.tolist()])


def heldout_tokens(cfg, n_tokens: int, seq_len: int, seed: int) -> torch.Tensor:
    """[ceil(n_tokens/seq_len), seq_len] LongTensor of held-out text (never trained on); consecutive windows
    from an offset chosen by ``seed``."""
    if n_tokens <= 0 or seq_len <= 0:
        raise ConfigError(f"n_tokens ({n_tokens}) and seq_len ({seq_len}) must be > 0")
    rows = -(-n_tokens // seq_len)
    need = rows * seq_len
    stream = token_stream("heldout", cfg.vocab_size, max_bytes=max(600_000, 6 * need))
    if stream.numel() < need:
        raise ConfigError(f"held-out split has {stream.numel()} tokens, {need} requested")
    g = torch.Generator().manual_seed(seed)
    off = int(torch.randint(0, stream.numel() - need + 1, (1,), generator=g))
    return stream[off:off + need].view(rows, seq_len).clone()
