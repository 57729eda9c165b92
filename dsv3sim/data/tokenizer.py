"""Byte-level BPE tokenizer trained locally (Sennrich et al. 2016; GPT-2's byte-level variant).

Ids 0..255 are the raw bytes (so any text encodes, nothing is unknown); ids 256.. are merges learnt on the
training split, most frequent adjacent pair first, within pre-tokenised words (GPT-2-style regex: optional
leading space + letters/digits, punctuation runs, whitespace). Merges = min(vocab_size, 256 + max_merges) - 256;
ids above that stay unused (DeepSeek's 129k vocab is never trained here). Trained merges are cached as JSON
under ~/.cache/dsv3sim keyed by the text hash and the number of merges.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

from dsv3sim.config.errors import ConfigError

PRETOKEN = re.compile(r" ?[A-Za-z_]+| ?[0-9]+| ?[^\sA-Za-z_0-9]+|\s+")


def _words(text: str) -> list[bytes]:
    return [m.group().encode("utf-8") for m in PRETOKEN.finditer(text)]


class BPETokenizer:
    def __init__(self, merges: list[tuple[int, int]], vocab_size: int) -> None:
        if vocab_size < 256 + len(merges):
            raise ConfigError(f"vocab_size ({vocab_size}) must be >= 256 + merges ({len(merges)})")
        self.merges = merges
        self.vocab_size = vocab_size
        self.ranks = {p: i for i, p in enumerate(merges)}
        self.pieces: list[bytes] = [bytes([i]) for i in range(256)]
        for a, b in merges:
            self.pieces.append(self.pieces[a] + self.pieces[b])
        self._cache: dict[bytes, list[int]] = {}

    def _encode_word(self, w: bytes) -> list[int]:
        ids = self._cache.get(w)
        if ids is not None:
            return ids
        ids = list(w)
        while len(ids) > 1:
            best, pos = None, -1
            for i in range(len(ids) - 1):
                r = self.ranks.get((ids[i], ids[i + 1]))
                if r is not None and (best is None or r < best):
                    best, pos = r, i
            if best is None:
                break
            ids = ids[:pos] + [256 + best] + ids[pos + 2:]
        self._cache[w] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in _words(text):
            out.extend(self._encode_word(w))
        return out

    def decode(self, ids) -> str:
        return b"".join(self.pieces[i] if i < len(self.pieces) else b"?" for i in ids).decode("utf-8", "replace")


def train_bpe(text: str, n_merges: int) -> list[tuple[int, int]]:
    """Learn ``n_merges`` merges on ``text`` (incremental pair counts over unique words)."""
    counts = Counter(_words(text))
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pairs: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freq[wi]
            where.setdefault(p, set()).add(wi)
    merges: list[tuple[int, int]] = []
    for m in range(n_merges):
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]
        if pairs[best] < 2:
            break
        new = 256 + m
        merges.append(best)
        for wi in list(where.get(best, ())):
            w, f = words[wi], freq[wi]
            for p in zip(w, w[1:]):
                pairs[p] -= f
                if pairs[p] <= 0:
                    del pairs[p]
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pairs[p] += f
                where.setdefault(p, set()).add(wi)
        where.pop(best, None)
    return merges


def cache_dir() -> Path:
    d = Path.home() / ".cache" / "dsv3sim"
    d.mkdir(parents=True, exist_ok=True)
    return d


def get_tokenizer(vocab_size: int, text: str, max_merges: int = 1024) -> BPETokenizer:
    """Tokenizer with min(vocab_size - 256, max_merges) merges learnt on ``text`` (cached)."""
    if vocab_size < 256:
        raise ConfigError(f"byte-level BPE needs vocab_size >= 256, got {vocab_size}")
    n = min(vocab_size - 256, max_merges)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = cache_dir() / f"bpe-{key}-{n}.json"
    if path.is_file():
        merges = [tuple(p) for p in json.loads(path.read_text())]
    else:
        merges = train_bpe(text, n)
        path.write_text(json.dumps(merges))
    return BPETokenizer(merges, vocab_size)
