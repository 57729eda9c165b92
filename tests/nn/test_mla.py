"""MLA: naive and absorbed attention agree; cached decode equals the full forward; cache size equals the
analytic model's (DeepSeek-V2 Table 1: (d_c + d_r) per token per layer); YaRN facts."""

from __future__ import annotations

import math

import pytest
import torch

from dsv3sim.cost.kvcache import kv_cache_bytes_per_token
from dsv3sim.nn.layers import yarn_inv_freq
from dsv3sim.nn.mla import attention_absorbed, attention_naive
from dsv3sim.nn.transformer import Transformer


def test_absorbed_equals_naive_attention():
    g = torch.Generator().manual_seed(0)
    B, S, T, nh, dn, dr, dv, dc = 2, 3, 7, 4, 8, 4, 6, 10
    args = (torch.randn(B, S, nh, dn, generator=g), torch.randn(B, S, nh, dr, generator=g),
            torch.randn(B, T, dc, generator=g), torch.randn(B, T, dr, generator=g),
            torch.randn(nh * (dn + dv), dc, generator=g))
    kw = dict(n_heads=nh, d_nope=dn, d_v=dv, scale=0.3, start=T - S)
    a, b = attention_naive(*args, **kw), attention_absorbed(*args, **kw)
    assert a.shape == (B, S, nh, dv)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["tiny", "lite_small"])
def test_cached_absorbed_decode_equals_naive_forward(which, request):
    cfg = request.getfixturevalue(which)
    torch.manual_seed(0)
    m = Transformer(cfg).eval()
    tok = torch.randint(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        full = m(tok, impl="naive")
        cache = m.allocate_cache(2, 16)
        parts = [m(tok[:, :4], cache=cache, start=0, impl="naive")]
        parts += [m(tok[:, i:i + 1], cache=cache, start=i) for i in range(4, 11)]  # absorbed, from the cache
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("name", ["tiny", "deepseek-v3", "deepseek-v2-lite"])
@pytest.mark.parametrize("dtype,nbytes", [(torch.bfloat16, 2), (torch.float32, 4)])
def test_cache_bytes_per_token_equal_analytic(name, dtype, nbytes):
    from dsv3sim.config.model import load_model_config
    from dsv3sim.nn.mla import LatentKVCache

    cfg = load_model_config(name)
    cache = LatentKVCache.allocate(cfg, cfg.num_hidden_layers, 1, 1, dtype=dtype, device="meta")
    assert cache.bytes_per_token() == kv_cache_bytes_per_token(cfg, dtype_bytes=nbytes)
    if name == "deepseek-v3" and nbytes == 2:
        assert cache.bytes_per_token() == 70_272  # (512 + 64) x 61 x 2 B, "Insights into DeepSeek-V3" Table 1


def test_model_cache_holds_only_latent_and_rope_key(tiny):
    m = Transformer(tiny)
    c = m.allocate_cache(3, 10)
    assert len(c.kv) == tiny.num_hidden_layers and c.kv[0].shape == (3, 10, tiny.kv_lora_rank)
    assert c.pe[0].shape == (3, 10, tiny.qk_rope_head_dim)
    assert c.nbytes() == 3 * 10 * kv_cache_bytes_per_token(tiny, dtype_bytes=4)


def test_yarn_frequencies_and_mscale(tiny):
    f_ext, m = yarn_inv_freq(tiny)  # tiny: 1024 > 256 original, factor 4
    f_plain, _ = yarn_inv_freq(tiny.with_(max_position_embeddings=256))
    d = tiny.qk_rope_head_dim
    base = 1.0 / tiny.rope_theta ** (torch.arange(0, d, 2).double() / d)
    torch.testing.assert_close(f_plain.double(), base, rtol=1e-6, atol=0)
    assert float(f_ext[0]) == pytest.approx(float(f_plain[0]))  # high-frequency dims untouched
    assert float(f_ext[-1]) == pytest.approx(float(f_plain[-1]) / 4, rel=1e-6)  # low-frequency dims interpolated by the factor
    assert m == 1.0  # mscale == mscale_all_dim
    ms = 0.1 * 1.0 * math.log(4) + 1
    assert tiny.softmax_scale == pytest.approx(tiny.qk_head_dim ** -0.5 * ms * ms)
    assert Transformer(tiny).layers[0].self_attn.scale == tiny.softmax_scale
