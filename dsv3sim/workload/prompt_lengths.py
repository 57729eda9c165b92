"""Prompt lengths of a serving load: a distribution, not one length, because attention is not linear in it.

A prefill step's GEMMs and all-to-alls cost the same per token whatever prompt a token belongs to; the attention
core of a token at position j costs O(j) (V3 §2.1.1: causal MLA). Per computed token, a prompt of S tokens with a
cached prefix of h S tokens (the computed tokens attend to it, Day 6's on-disk KV cache) has the mean context
S (1 + h) / 2, so the attention core per computed token is the **token-weighted** mean over prompts:

    E_tok[c(S)] = E[S c(S)] / E[S]           (each prompt weighs by its tokens)

For a cost linear in S this is c(E[S] (1 + cv^2)): a mix of prompts with mean E[S] and coefficient of variation
cv costs (1 + cv^2) x the attention of fixed-length prompts of E[S] tokens (cv = 1: twice).

Distribution: Gamma(k = 1 / cv^2, theta = E[S] cv^2), truncated at the model's context window. cv = 1 is the
exponential, the maximum-entropy law on (0, inf) given only the mean -- what a published mean alone supports
(DeepSeek publishes no length distribution); cv = 0 is the fixed length. Token-weighting a Gamma(k, theta) gives
Gamma(k + 1, theta). ``token_weighted_bins`` splits that law into n bins of equal token mass and returns each
bin's conditional mean length: exact for any cost linear in S inside a bin.

Mean prompt from Day 6 (open-infra-index, 2025-02): 608B input and 168B output tokens in 24 h (ratio r = E[S] /
E[O] = 3.619) and an average KV-cache length per output token of 4,989. Generating output token j of a request
holds S + j cached tokens, so per output token the mean KV length is E[S O + O (O + 1) / 2] / E[O]
= E[S] + (1 + cv_O^2) E[O] / 2 + 1/2 for S, O independent. Hence E[O] = (KV - 1/2) / (r + (1 + cv_O^2) / 2),
E[S] = r E[O]: 3,909 tokens with exponential outputs (cv_O = 1), 4,383 with fixed-length outputs.
"""

from __future__ import annotations

import math

import numpy as np

from dsv3sim.config.errors import ConfigError

N_BINS = 16  # token-mass bins; the attention cost is near-linear in S within a bin


def token_weighted_bins(mean: float, cv: float, *, max_len: int, n: int = N_BINS) -> list[tuple[float, float]]:
    """[(length, token weight)] with weights summing to 1: the token-weighted Gamma law of prompt lengths
    (module docstring), truncated at ``max_len``, in ``n`` bins of equal token mass, each at its conditional
    mean length. cv = 0: [(mean, 1.0)]."""
    if not (mean > 0 and math.isfinite(mean)):
        raise ConfigError(f"prompt length mean must be > 0, got {mean}")
    if not (0 <= cv <= 4 and math.isfinite(cv)):
        raise ConfigError(f"prompt_len_cv must be in [0, 4], got {cv}")
    if cv == 0:
        return [(float(min(mean, max_len)), 1.0)]
    k, theta = 1.0 / cv**2, mean * cv**2
    # token-weighted density S f(S) ~ S^k e^(-S / theta) on a grid fine at short prompts and out to the window
    s = np.unique(np.concatenate([np.geomspace(1e-3 * mean, max_len, 20_000), np.linspace(1.0, max_len, 20_000)]))
    logd = k * np.log(s) - s / theta
    d = np.exp(logd - logd.max())
    seg = 0.5 * (d[1:] + d[:-1]) * np.diff(s)  # trapezoid mass of each grid interval
    seg_s = 0.5 * (s[1:] + s[:-1])
    cum_mid = (np.cumsum(seg) - 0.5 * seg) / seg.sum()
    b = np.minimum((cum_mid * n).astype(int), n - 1)  # each grid interval to its equal-token-mass bin
    mass = np.bincount(b, weights=seg, minlength=n)
    moment = np.bincount(b, weights=seg * seg_s, minlength=n)
    keep = mass > 0
    return [(float(m1 / m0), float(m0 / seg.sum())) for m0, m1 in zip(mass[keep], moment[keep])]


def mean_prompt_from_kv_length(kv_len_per_output_token: float, input_tokens: float, output_tokens: float,
                               output_cv: float = 1.0) -> float:
    """E[S] from a day's input / output token totals and the mean KV length per output token (module
    docstring): E[O] = (KV - 1/2) / (r + (1 + cv_O^2) / 2), E[S] = r E[O], r = input / output tokens."""
    if min(kv_len_per_output_token, input_tokens, output_tokens) <= 0 or output_cv < 0:
        raise ConfigError(f"KV length {kv_len_per_output_token}, input {input_tokens} and output {output_tokens} "
                          f"tokens must be > 0 and output_cv {output_cv} >= 0")
    r = input_tokens / output_tokens
    mean_out = (kv_len_per_output_token - 0.5) / (r + (1.0 + output_cv**2) / 2.0)
    return r * mean_out
