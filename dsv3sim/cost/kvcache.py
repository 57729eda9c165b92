"""KV-cache size per token and the largest context x batch that fits a GPU.

MLA caches only the compressed latent c^{KV} (kv_lora_rank) and the decoupled rope key k^R (qk_rope_head_dim),
per token per layer (DeepSeek-V2 §2.1.2-2.1.3, Table 1: (d_c + d_h^R) l elements). DeepSeek-V3: (512 + 64) x 61
x 2 B = 70,272 B/token in BF16 ("Insights into DeepSeek-V3", ISCA'25, Table 1). MTP layers are not cached
during plain decoding and are excluded. The MHA equivalent caches full K (d_n + d_r per head) and V (d_v per head);
GQA caches K and V of num_key_value_heads x head_dim each. A sliding-window layer (gpt-oss: every other layer,
W = 128) keeps only its last W tokens, so a sequence of C tokens holds min(C, W) there: the bytes per token
depend on the context for such models (``context=``), and equal the all-layers figure without windows.
``kv_sizing``: what one KV budget holds for a model (bytes per token, tokens, longest sequence, batch per context),
the MLA-vs-GQA comparison of `dsv3sim report` (``kv_comparison``) and the capacity lines of `dsv3sim stats`.
"""

from __future__ import annotations

from dsv3sim.config import load_model_config
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig

CONTEXTS = (4096, 32768, 131072)  # the contexts capacity is quoted at: 4K, 32K, 128K (V3's longest, §4.3)
GQA_REFERENCES = ("qwen2.5-72b", "llama3-70b")  # dense GQA models the MLA cache is compared with


def kv_elements_per_token_per_layer(cfg: ModelConfig) -> int:
    if cfg.attention == "mla":
        return cfg.kv_lora_rank + cfg.qk_rope_head_dim
    return 2 * cfg.num_key_value_heads * cfg.head_dim


def kv_cache_bytes(cfg: ModelConfig, context: int, dtype_bytes: float = 2) -> int:
    """Bytes cached for one sequence of ``context`` tokens over all main-model layers (windows capped at W)."""
    per = kv_elements_per_token_per_layer(cfg) * dtype_bytes
    held = sum(min(context, cfg.window_of(i)) if cfg.window_of(i) else context for i in range(cfg.num_hidden_layers))
    return int(per * held)


def kv_cache_bytes_per_token(cfg: ModelConfig, dtype_bytes: float = 2, context: int | None = None) -> int:
    """Bytes cached per token over all main-model layers; with ``context``, the mean per token of a sequence that
    long (sliding-window layers hold at most W tokens). FP8 cache: dtype_bytes=1 (scales not included)."""
    if context is not None and context > 0 and cfg.sliding_window:
        return int(kv_cache_bytes(cfg, context, dtype_bytes) / context)
    return int(kv_elements_per_token_per_layer(cfg) * cfg.num_hidden_layers * dtype_bytes)


def mha_equivalent_bytes_per_token(cfg: ModelConfig, dtype_bytes: float = 2) -> int:
    """What plain MHA with the same heads would cache: K (qk_head_dim) and V (v_head_dim) per head per layer."""
    if cfg.attention == "mla":
        per_layer = cfg.num_attention_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
    else:
        per_layer = 2 * cfg.num_attention_heads * cfg.head_dim
    return int(per_layer * cfg.num_hidden_layers * dtype_bytes)


def max_kv_tokens(cfg: ModelConfig, free_bytes: float, dtype_bytes: float = 2, layers_fraction: float = 1.0) -> int:
    """Tokens of KV cache that fit in ``free_bytes`` (a GPU holding ``layers_fraction`` of the layers)."""
    per = kv_cache_bytes_per_token(cfg, dtype_bytes) * layers_fraction
    return max(0, int(free_bytes // per)) if per > 0 else 0


def max_batch_at_context(cfg: ModelConfig, free_bytes: float, context: int, dtype_bytes: float = 2,
                         layers_fraction: float = 1.0, replicas: int = 1) -> int:
    """Largest number of sequences of ``context`` tokens whose cache fits in ``free_bytes``; ``replicas``: the
    GPUs holding a copy of each sequence's cache (MLA's latent on every rank of a TP attention group)."""
    if context <= 0:
        raise ConfigError(f"context must be > 0, got {context}")
    per_seq = kv_cache_bytes(cfg, context, dtype_bytes) * layers_fraction * replicas
    return max(0, int(free_bytes // per_seq)) if per_seq > 0 else 0


def max_batch_by_context(cfg: ModelConfig, free_bytes: float, contexts: tuple[int, ...] = CONTEXTS,
                         dtype_bytes: float = 2, layers_fraction: float = 1.0) -> dict[int, int]:
    """{context: ``max_batch_at_context``} for each of ``contexts``."""
    return {c: max_batch_at_context(cfg, free_bytes, c, dtype_bytes, layers_fraction) for c in contexts}


def kv_sizing(cfg: ModelConfig, free_bytes: float, contexts: tuple[int, ...] = CONTEXTS,
              layers_fraction: float = 1.0) -> dict:
    """What ``free_bytes`` of BF16 KV cache holds for ``cfg``: bytes per token (BF16, FP8), ``tokens`` in all, the
    longest single sequence (``max_context``, at most max_position_embeddings: ``model_limit`` when that caps it)
    and the largest ``batch`` at each of ``contexts``."""
    tokens, top = max_kv_tokens(cfg, free_bytes, 2, layers_fraction), cfg.max_position_embeddings
    return {"model": cfg.name, "attention": cfg.attention, "bytes_per_token": kv_cache_bytes_per_token(cfg, 2),
            "bytes_per_token_fp8": kv_cache_bytes_per_token(cfg, 1), "tokens": tokens,
            "max_context": min(tokens, top), "model_limit": tokens > top,
            "batch": max_batch_by_context(cfg, free_bytes, contexts, 2, layers_fraction)}


def kv_comparison(names: list[str], free_bytes: float, layers_fraction: float = 1.0) -> tuple[list[dict], list[str]]:
    """``kv_sizing`` of each model config of ``names`` that loads (one row per config), and "name (why)" of the
    others: the same budget for every model, so the rows compare bytes."""
    sizing, skipped = {}, []
    for n in names:
        try:
            cfg = load_model_config(n)
        except (ValueError, FileNotFoundError, OSError) as e:
            skipped.append(f"{n} ({e})")
            continue
        sizing[cfg.name] = sizing.get(cfg.name) or kv_sizing(cfg, free_bytes, CONTEXTS, layers_fraction)
    return list(sizing.values()), skipped
