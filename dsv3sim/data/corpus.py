"""Training / held-out text: the Python standard library's .py sources of the running interpreter.

Split by file (so held-out text is never seen in training, not even as overlapping windows): a file is
held out when crc32(relative path) % 20 == 0 (~5 %). Test suites and site-packages are excluded. Files are
ordered by crc32 of their path (a fixed shuffle) and concatenated up to a byte budget. Token streams are
cached as .npy under ~/.cache/dsv3sim.
"""

from __future__ import annotations

import hashlib
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import torch

from dsv3sim.data.tokenizer import cache_dir, get_tokenizer

HELDOUT_MOD = 20
TOKENIZER_TEXT_BYTES = 400_000


def stdlib_files() -> list[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
    out = [(str(f.relative_to(root)), f) for f in root.rglob("*.py") if not skip & set(f.relative_to(root).parts)]
    if not out:
        raise RuntimeError(f"no Python sources found under {root}")
    return sorted(out, key=lambda rf: (zlib.crc32(rf[0].encode()), rf[0]))


def split_text(split: str, max_bytes: int) -> str:
    """Concatenated sources of ``split`` ("train" | "heldout"), at most max_bytes (UTF-8)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    parts, n = [], 0
    for rel, f in stdlib_files():
        held = zlib.crc32(rel.encode()) % HELDOUT_MOD == 0
        if held != (split == "heldout"):
            continue
        t = f.read_text(encoding="utf-8", errors="replace")
        parts.append(t)
        n += len(t.encode("utf-8"))
        if n >= max_bytes:
            break
    return "".join(parts)[:max_bytes]


def tokenizer_for(vocab_size: int):
    return get_tokenizer(vocab_size, split_text("train", TOKENIZER_TEXT_BYTES))


def token_stream(split: str, vocab_size: int, max_bytes: int = 3_000_000) -> torch.Tensor:
    """1-D LongTensor of the split's tokens (cached)."""
    tok = tokenizer_for(vocab_size)
    key = hashlib.sha256(repr((split, vocab_size, max_bytes, len(tok.merges), tok.merges[:8])).encode()).hexdigest()[:16]
    path = cache_dir() / f"tokens-{split}-{key}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path).astype(np.int64))
    ids = np.asarray(tok.encode(split_text(split, max_bytes)), dtype=np.int32)
    np.save(path, ids)
    return torch.from_numpy(ids.astype(np.int64))


def train_batches(stream: torch.Tensor, batch: int, length: int, seed: int):
    """Endless generator of [batch, length] random windows of ``stream`` (torch.Generator seeded)."""
    if stream.numel() <= length:
        raise ValueError(f"token stream ({stream.numel()}) shorter than a window ({length})")
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, stream.numel() - length, (batch,), generator=g)
        yield torch.stack([stream[s:s + length] for s in starts.tolist()])


def heldout_tokens(cfg, n_tokens: int, seq_len: int, seed: int) -> torch.Tensor:
    """[ceil(n_tokens/seq_len), seq_len] LongTensor of held-out text (never trained on); consecutive windows
    from an offset chosen by ``seed``."""
    if n_tokens <= 0 or seq_len <= 0:
        raise ValueError(f"n_tokens ({n_tokens}) and seq_len ({seq_len}) must be > 0")
    rows = -(-n_tokens // seq_len)
    need = rows * seq_len
    stream = token_stream("heldout", cfg.vocab_size, max_bytes=max(600_000, 6 * need))
    if stream.numel() < need:
        raise ValueError(f"held-out split has {stream.numel()} tokens, {need} requested")
    g = torch.Generator().manual_seed(seed)
    off = int(torch.randint(0, stream.numel() - need + 1, (1,), generator=g))
    return stream[off:off + need].view(rows, seq_len).clone()
