"""Prompt-length mix (workload/prompt_lengths.py): the token-weighted bins re-derived by sampling, Day 6's mean
prompt re-derived by simulating requests, and the prefill step pricing attention over the mix."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.scenario import PrefillWorkload
from dsv3sim.workload import simulate
from dsv3sim.workload.prompt_lengths import mean_prompt_from_kv_length, token_weighted_bins

SCEN = Path(__file__).resolve().parents[2] / "scenarios" / "deepseek_v3_serving.py"


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_token_weighted_bins_match_sampled_prompts(cv):
    mean, cap = 4000.0, 163_840
    bins = token_weighted_bins(mean, cv, max_len=cap)
    assert sum(w for _s, w in bins) == pytest.approx(1.0)
    # closed form for a linear cost: E_tok[S] = E[S^2] / E[S] = mean (1 + cv^2)
    assert sum(s * w for s, w in bins) == pytest.approx(mean * (1 + cv**2), rel=0.01)
    # a convex cost (S^2, attention over a whole prompt per token) against sampled Gamma prompts
    rng = np.random.default_rng(0)
    s = np.minimum(rng.gamma(1 / cv**2, mean * cv**2, 2_000_000), cap)
    sampled = float((s * s**2).sum() / s.sum())
    assert sum(w * x**2 for x, w in bins) == pytest.approx(sampled, rel=0.03)


def test_fixed_length_is_one_bin_and_bad_input_is_refused():
    assert token_weighted_bins(4096, 0.0, max_len=163_840) == [(4096.0, 1.0)]
    with pytest.raises(ConfigError, match="prompt_len_cv"):
        token_weighted_bins(4096, -1.0, max_len=100)
    with pytest.raises(ConfigError, match="prompt_len_cv"):
        PrefillWorkload(prompt_len_cv=5.0)


def test_day6_mean_prompt_rederived_by_simulating_requests():
    """Requests with exponential outputs and prompts r = 608/168 times longer on average: the mean KV length
    seen per output token comes back as Day 6's 4,989 with the derived mean prompt."""
    s_mean = mean_prompt_from_kv_length(4989.0, 608e9, 168e9, output_cv=1.0)
    assert s_mean == pytest.approx(3909, abs=1)
    rng = np.random.default_rng(1)
    o = np.maximum(1, np.round(rng.exponential(s_mean * 168 / 608, 2_000_000)))
    s = rng.exponential(s_mean, o.size)
    kv_per_output = (o * s + o * (o + 1) / 2).sum() / o.sum()
    assert kv_per_output == pytest.approx(4989, rel=0.01)


def test_prefill_prices_attention_over_the_mix():
    sp = importlib.util.spec_from_file_location("srv_pl", SCEN)
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    base = m.prefill_day6_traffic().with_(comm_model="bound")
    rate = {cv: simulate(base.with_(workload={"prompt_len_cv": cv})).metrics["prefill_input_tokens_per_s_per_node"]
            for cv in (0.0, 0.5, 1.0)}
    assert rate[0.0] > rate[0.5] > rate[1.0]  # same mean, more spread: more attention per token
    # cv = 0 is the fixed-length model: the attention core of whole prompts, (1 + h) x for the cached prefix
    fixed = simulate(m.prefill_day6_cache_hits().with_(comm_model="bound",
                                                       workload={"prompt_len": base.workload.prompt_len}))
    assert fixed.metrics["prefill_input_tokens_per_s_per_node"] == pytest.approx(rate[0.0], rel=1e-9)
