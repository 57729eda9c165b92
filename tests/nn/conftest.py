"""Fixtures for tests/nn: tiny configs in FP32, one CPU thread."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dsv3sim.config.model import load_model_config


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    return load_model_config("tiny")


@pytest.fixture(scope="session")
def lite_small():
    """V2-Lite's features (no q LoRA, softmax gate, greedy top-k, no bias, no MTP) at tiny width."""
    c = load_model_config("deepseek-v2-lite")
    return c.with_(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=2, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                   n_routed_experts=8, moe_intermediate_size=32, num_experts_per_tok=2, vocab_size=300,
                   max_position_embeddings=512)
