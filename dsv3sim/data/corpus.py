"""Training / held-out text: the Python standard library's .py sources of the running interpreter.

Split by file (so held-out text is never seen in training, not even as overlapping windows): a file is
held out when crc32(relative path) % 20 == 0 (~5 %). Test suites and site-packages are excluded. Files are
ordered by crc32 of their path (a fixed shuffle) and concatenated up to a byte budget. Token streams are
cached as .npy under ~/.cache/dsv3sim. Numpy only: the torch batches are ``dsv3sim.nn.batches``.
"""

from __future__ import annotations

import hashlib
import sysconfig
import zlib
from pathlib import Path

import numpy as np

from dsv3sim.config.errors import ConfigError
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
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
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


def token_ids(split: str, vocab_size: int, max_bytes: int = 3_000_000) -> np.ndarray:
    """1-D int64 array of the split's tokens (cached as .npy)."""
    tok = tokenizer_for(vocab_size)
    ident = repr((split, vocab_size, max_bytes, len(tok.merges), tok.merges[:8]))
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    path = cache_dir() / f"tokens-{split}-{key}.npy"
    if path.is_file():
        return np.load(path).astype(np.int64)
    ids = np.asarray(tok.encode(split_text(split, max_bytes)), dtype=np.int32)
    np.save(path, ids)
    return ids.astype(np.int64)
