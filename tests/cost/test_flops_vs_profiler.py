"""Analytic FLOPs == torch's FLOP counter on the executable model (a second, independent route)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dsv3sim.config import load_model_config
from dsv3sim.cost.flops import attention_core_flops_per_token, layer_linear_params_activated
from dsv3sim.cost.params import count_params


def _analytic_forward(cfg, tokens: int, context: int) -> float:
    """Forward FLOPs of ``tokens`` tokens that each attend ``context`` keys (the naive path computes the
    full S x S score matrix and masks it, so the counted context is S, not the causal mean)."""
    per_tok = 2.0 * cfg.vocab_size * cfg.hidden_size
    for i in range(cfg.num_hidden_layers):
        per_tok += 2.0 * sum(layer_linear_params_activated(cfg, i).values())
        per_tok += attention_core_flops_per_token(cfg, context)
    return per_tok * tokens


@pytest.mark.parametrize("name", ["tiny"])
def test_forward_flops_match_flop_counter(name):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from dsv3sim.nn.transformer import Transformer

    cfg = load_model_config(name)
    model = Transformer(cfg).eval()
    B, S = 2, 32
    tokens = torch.randint(0, cfg.vocab_size, (B, S))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(tokens, impl="naive")
    counted = fc.get_total_flops()
    assert counted == pytest.approx(_analytic_forward(cfg, B * S, S), rel=1e-9)


def test_param_count_matches_numel_on_meta_for_671b():
    from dsv3sim.nn.transformer import Transformer

    cfg = load_model_config("deepseek-v3")
    with torch.device("meta"):
        m = Transformer(cfg, init=False)
    main = sum(p.numel() for n, p in m.named_parameters() if not n.startswith("mtp."))
    mtp = sum(p.numel() for n, p in m.named_parameters() if n.startswith("mtp."))
    pc = count_params(cfg)
    assert main == pc.total
    assert mtp == pc.mtp
