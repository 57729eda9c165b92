"""The DeepSeek-V3 (and V2 / V2-Lite, Kimi K2) decoder with Multi-Token Prediction, built from a ModelConfig;
GQA models (Qwen3-MoE, Qwen2-MoE, Mixtral, gpt-oss, dense Llama/Qwen) build with nn/gqa.py attention.

Module tree and names follow HF modeling_deepseek.py (checkpoint.py maps them to ``model.layers.{i}...``):
embed_tokens, layers[i] (input_layernorm, self_attn: MLA, post_attention_layernorm, mlp: MLP | MoE), norm,
lm_head, and ``mtp[k]`` for the num_nextn_predict_layers MTP modules (V3 §2.2), which borrow embed_tokens and
lm_head (the same tensors). Layer i is MoE when cfg.is_moe_layer(i) (the first first_k_dense_replace are dense).
The model builds on the ``meta`` device for any config (no allocation), e.g. the 671B one.

Legend: B batch, S sequence, H hidden, V vocab, D MTP depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig
from dsv3sim.nn.block import Block
from dsv3sim.nn.layers import Linear, RMSNorm, rope_cos_sin, yarn_inv_freq
from dsv3sim.nn.mla import LatentKVCache
from dsv3sim.nn.moe import Experts, MoE
from dsv3sim.nn.mtp import MTPModule


class Transformer(nn.Module):
    """forward(tokens [B,S]) -> logits [B,S,V]; ``loss(tokens [B, S+1+D])`` for training with MTP."""

    def __init__(self, cfg: ModelConfig, *, init: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, H)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(H, cfg.rms_norm_eps)
        self.lm_head = Linear(H, cfg.vocab_size, fp8_capable=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.mtp = nn.ModuleList(MTPModule(cfg, cfg.num_hidden_layers + k) for k in range(cfg.num_nextn_predict_layers))
        inv_freq, self.rope_mscale = yarn_inv_freq(cfg)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.mtp_lambda = 0.3  # V3 §4.2: 0.3 for the first 10T tokens, then 0.1
        if init and self.embed_tokens.weight.device.type != "meta":
            self.reset_parameters()

    # --- parameters -----------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02, seed: int | None = None) -> None:
        """Normal(0, std) for matrices (HF initializer_range), ones for norms, zeros for biases and sinks."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if name.endswith(("bias", "sinks")):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)

    def set_fp8(self, on: bool) -> None:
        """Run every FP8-capable linear (attention projections, MLPs, experts) through FP8 GEMMs."""
        for m in self.modules():
            if isinstance(m, (Linear, Experts)):
                m.fp8 = on

    def moe_layers(self, include_mtp: bool = True) -> list[MoE]:
        out = [b.mlp for b in self.layers if isinstance(b.mlp, MoE)]
        if include_mtp:
            out += [m.block.mlp for m in self.mtp if isinstance(m.block.mlp, MoE)]
        return out

    # --- forward ---------------------------------------------------------------------------------------
    def rope(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, start + length, device=self.inv_freq.device)
        return rope_cos_sin(self.inv_freq, pos, self.rope_mscale)

    def hidden(self, tokens: torch.Tensor, *, cache: LatentKVCache | None = None, start: int = 0,
               impl: str | None = None) -> torch.Tensor:
        """tokens [B,S] -> final hidden state after the last norm [B,S,H]."""
        h = self.embed_tokens(tokens)
        cos, sin = self.rope(start, tokens.shape[1])
        for i, blk in enumerate(self.layers):
            h = blk(h, cos, sin, cache=cache, cache_layer=i, start=start, impl=impl)
        return self.norm(h)

    def forward(self, tokens: torch.Tensor, *, cache: LatentKVCache | None = None, start: int = 0,
                impl: str | None = None) -> torch.Tensor:
        return self.lm_head(self.hidden(tokens, cache=cache, start=start, impl=impl))

    def mtp_logits(self, k: int, h_prev: torch.Tensor, next_tokens: torch.Tensor, *, start: int = 0,
                   cache: LatentKVCache | None = None, impl: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth k+1 MTP: h_prev [B,S,H] (depth k), next_tokens [B,S] (t_{i+k+1}) -> (logits [B,S,V], h [B,S,H])."""
        cos, sin = self.rope(start, next_tokens.shape[1])
        h = self.mtp[k](h_prev, self.embed_tokens(next_tokens), cos, sin, start=start, cache=cache, impl=impl)
        return self.lm_head(self.mtp[k].shared_head_norm(h)), h

    def loss(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """tokens [B, S+1+D]: inputs [:, :S], main targets [:, 1:S+1], MTP depth k targets [:, k+1:S+k+1].
        L = L_main + lambda/D sum_k L_MTP^k (V3 eq. 24-25) + sum of MoE balance losses."""
        D = len(self.mtp)
        S = tokens.shape[1] - 1 - D
        if S <= 0:
            raise ConfigError(f"loss needs tokens of length > 1 + MTP depth ({D}), got {tokens.shape[1]}")
        h = self.hidden(tokens[:, :S])
        logits = self.lm_head(h)
        V = logits.shape[-1]
        main = F.cross_entropy(logits.float().view(-1, V), tokens[:, 1:S + 1].reshape(-1))
        total = main
        parts = {"main": float(main.detach())}
        for k in range(D):
            lg, h = self.mtp_logits(k, h, tokens[:, k + 1:S + k + 1])
            lk = F.cross_entropy(lg.float().view(-1, V), tokens[:, k + 2:S + k + 2].reshape(-1))
            total = total + self.mtp_lambda / D * lk
            parts[f"mtp{k + 1}"] = float(lk.detach())
        aux = [m.aux_loss for m in self.moe_layers() if m.aux_loss is not None]
        if aux:
            a = torch.stack(aux).sum()
            total = total + a
            parts["balance"] = float(a.detach())
        return total, parts

    def allocate_cache(self, batch: int, max_len: int, *, include_mtp: bool = False) -> LatentKVCache:
        if self.cfg.attention != "mla":
            raise ConfigError(f"{self.cfg.name}: dsv3sim.nn decodes with a KV cache for MLA models only "
                             f"(attention={self.cfg.attention!r})")
        n = self.cfg.num_hidden_layers + (len(self.mtp) if include_mtp else 0)
        p = self.embed_tokens.weight
        return LatentKVCache.allocate(self.cfg, n, batch, max_len, dtype=p.dtype, device=p.device)
