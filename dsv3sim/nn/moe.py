"""DeepSeekMoE layer (V2 §2.2, V3 §2.1.2): shared experts + fine-grained routed experts.

  h' = h + sum_{i<=N_s} FFN_i^(s)(h) + sum_{i<=N_r} g_{i,t} FFN_i^(r)(h)      (V3 eq. 12)

Legend: T tokens, H hidden, E routed experts, k experts per token, I moe_intermediate_size.
Routed experts are stored stacked (gate_proj/up_proj [E,I,H], down_proj [E,H,I]) so that the expert GEMMs run
as one grouped GEMM over tokens sorted by expert (torch._grouped_mm on a GPU in BF16, a per-expert loop
otherwise); the checkpoint splits them into HF's ``mlp.experts.{j}.gate_proj.weight`` etc. The shared
experts are one SwiGLU of width I * n_shared_experts (HF DeepseekV3MoE), or of its own width I_s scaled by
sigmoid(shared_expert_gate x) (Qwen2-MoE). gpt-oss experts carry biases (gate/up [E,I], down [E,H]) and a
clamped SwiGLU: g = min(gate, L), u = clamp(up, -L, L), y = (u + 1) g sigmoid(1.702 g) (HF modeling_gpt_oss.py,
L = swiglu_limit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsv3sim.config.model import ModelConfig
from dsv3sim.nn import fp8_experts
from dsv3sim.nn.balance import aux_balance_loss, sequence_balance_loss
from dsv3sim.nn.fp8 import fp8_linear
from dsv3sim.nn.layers import MLP, Linear
from dsv3sim.nn.routing import Gate


def routed_experts(x_sorted: torch.Tensor, tokens_per_expert: torch.Tensor, w_gate: torch.Tensor,
                   w_up: torch.Tensor, w_down: torch.Tensor, *, fp8: bool = False) -> torch.Tensor:
    """Grouped SwiGLU: x_sorted [N,H] (rows grouped by expert, counts tokens_per_expert [E]), w_gate/w_up
    [E,I,H], w_down [E,H,I] -> [N,H]. Profiler op (timed at given tokens per expert). FP8 on a GPU with Triton:
    the grouped block-scaled kernels (nn/fp8_experts.py); else one fp8_linear per expert (CPU: emulated)."""
    if fp8 and fp8_experts.triton_ok(x_sorted, w_gate.shape[2], w_gate.shape[1]):
        lay = fp8_experts.layout_from_counts(tokens_per_expert, x_sorted.shape[0])
        ys = fp8_experts.fp8_experts(x_sorted, lay, w_gate, w_up, w_down)
        return ys.index_select(0, lay.pos).to(x_sorted.dtype)
    if (not fp8 and x_sorted.is_cuda and x_sorted.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm")):
        offs = torch.cumsum(tokens_per_expert, 0).to(torch.int32)
        g = torch._grouped_mm(x_sorted, w_gate.transpose(-2, -1), offs=offs)
        u = torch._grouped_mm(x_sorted, w_up.transpose(-2, -1), offs=offs)
        return torch._grouped_mm(F.silu(g) * u, w_down.transpose(-2, -1), offs=offs)
    lin = fp8_linear if fp8 else F.linear
    outs = []
    wg, wu, wd = w_gate.unbind(0), w_up.unbind(0), w_down.unbind(0)  # one backward op each, not E selects
    sizes = tokens_per_expert.tolist()
    rest = x_sorted.shape[0] - sum(sizes)
    # split, not per-expert slices: one backward op (a cat) instead of a full-size zero-filled [N, H] gradient
    # per expert summed by the autograd engine (~0.45 s GPU of the H200 FP8 layer step:
    # profiles/h200/layer_fp8_profile.txt)
    parts = x_sorted.split(sizes + [rest] if rest > 0 else sizes)
    for e, n in enumerate(sizes):
        if n:
            xe = parts[e]
            if fp8:  # gate and up as one [2I, H] FP8 operand: one GEMM per direction (nn/fp8.py)
                g, u = fp8_linear(xe, (wg[e], wu[e])).split(wg[e].shape[0], -1)
            else:
                g, u = lin(xe, wg[e]), lin(xe, wu[e])
            outs.append(lin(F.silu(g) * u, wd[e]))
    return torch.cat(outs) if outs else x_sorted.new_zeros(0, w_down.shape[1])


def shared_expert(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """Profiler op: the shared expert(s) as one SwiGLU, x [T,H] -> [T,H]."""
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


def expert_counts(ids: torch.Tensor, n_experts: int) -> torch.Tensor:
    """ids [T,k] -> tokens per expert [E] (int64), without the host sync of torch.bincount (CUDA-graph safe)."""
    flat = ids.reshape(-1)
    return torch.zeros(n_experts, dtype=torch.int64, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))


def permute(x: torch.Tensor, ids: torch.Tensor, n_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens x [T,H], ids [T,k] -> (x_sorted [T*k,H], counts [E], order [T*k]: flat (token*k + slot) of each row)."""
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = expert_counts(ids, n_experts)
    return x[order // ids.shape[1]], counts, order


GPT_OSS_ALPHA = 1.702  # HF modeling_gpt_oss.py GptOssExperts.alpha


def biased_experts(x_sorted: torch.Tensor, tokens_per_expert: torch.Tensor, w: tuple[torch.Tensor, ...],
                   b: tuple[torch.Tensor, ...], limit: float) -> torch.Tensor:
    """gpt-oss experts: w = (gate [E,I,H], up [E,I,H], down [E,H,I]), b = (gate [E,I], up [E,I], down [E,H]);
    clamped SwiGLU with limit ``limit`` (0: plain SwiGLU). x_sorted [N,H] grouped by expert -> [N,H]."""
    outs = []
    for e, xe in enumerate(x_sorted.split(tokens_per_expert.tolist())):
        if not xe.shape[0]:
            continue
        g = F.linear(xe, w[0][e], b[0][e])
        u = F.linear(xe, w[1][e], b[1][e])
        if limit:
            g, u = g.clamp(max=limit), u.clamp(-limit, limit)
            h = (u + 1) * g * torch.sigmoid(GPT_OSS_ALPHA * g)
        else:
            h = F.silu(g) * u
        outs.append(F.linear(h, w[2][e], b[2][e]))
    return torch.cat(outs) if outs else x_sorted.new_zeros(0, w[2].shape[1])


class Experts(nn.Module):
    """E routed SwiGLU experts, stacked (with biases and the clamped SwiGLU for gpt-oss)."""

    def __init__(self, n: int, dim: int, inter: int, *, bias: bool = False, swiglu_limit: float = 0.0) -> None:
        super().__init__()
        self.gate_proj = nn.Parameter(torch.empty(n, inter, dim))
        self.up_proj = nn.Parameter(torch.empty(n, inter, dim))
        self.down_proj = nn.Parameter(torch.empty(n, dim, inter))
        if bias:
            self.gate_proj_bias = nn.Parameter(torch.empty(n, inter))
            self.up_proj_bias = nn.Parameter(torch.empty(n, inter))
            self.down_proj_bias = nn.Parameter(torch.empty(n, dim))
        self.has_bias, self.swiglu_limit = bias, swiglu_limit
        self.fp8 = False

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        if self.has_bias or self.swiglu_limit:
            w = (self.gate_proj, self.up_proj, self.down_proj)
            z = [torch.zeros(t.shape[:2], dtype=t.dtype, device=t.device) for t in w] if not self.has_bias else None
            b = (self.gate_proj_bias, self.up_proj_bias, self.down_proj_bias) if self.has_bias else tuple(z)
            return biased_experts(x_sorted, counts, w, b, self.swiglu_limit)
        return routed_experts(x_sorted, counts, self.gate_proj, self.up_proj, self.down_proj, fp8=self.fp8)


class MoE(nn.Module):
    """Gate + routed experts + shared experts. After each forward: ``last_load`` [E] tokens per expert and
    ``aux_loss`` (a scalar tensor; 0 unless balance_loss is "sequence" or "aux" with alpha > 0)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.n_experts, self.top_k = cfg.n_routed_experts, cfg.num_experts_per_tok
        self.gate = Gate(cfg, layer)
        self.experts = Experts(cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size,
                               bias=cfg.expert_bias, swiglu_limit=cfg.swiglu_limit)
        self.shared_experts = (MLP(cfg.hidden_size, cfg.shared_intermediate_size)
                               if cfg.n_shared_experts else None)
        self.shared_expert_gate = (Linear(cfg.hidden_size, 1, fp8_capable=False)
                                   if cfg.shared_expert_gate and cfg.n_shared_experts else None)
        self.balance_loss = "none"  # "none" | "sequence" | "aux"; set by the trainer
        self.alpha = 0.0
        self.last_load: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, H = x.shape
        xt = x.reshape(B * S, H)
        ids, w, scores = self.gate(xt)
        self.last_load = expert_counts(ids, self.n_experts).detach()
        self.aux_loss = None
        if self.training and self.alpha > 0 and self.balance_loss != "none":
            if self.balance_loss == "sequence":
                self.aux_loss = sequence_balance_loss(scores, ids, batch=B, top_k=self.top_k, alpha=self.alpha)
            else:
                self.aux_loss = aux_balance_loss(scores, ids, top_k=self.top_k, alpha=self.alpha)
        ex = self.experts
        if ex.fp8 and fp8_experts.triton_ok(xt, H, ex.gate_proj.shape[1]):
            # dispatch gathers and quantises x in one kernel; combine: y_t = sum_j w_tj y[pos(t, j)]
            lay = fp8_experts.layout_from_ids(ids, self.n_experts)
            ys = fp8_experts.fp8_experts(xt, lay, ex.gate_proj, ex.up_proj, ex.down_proj)  # [M_pad, H]
            yk = ys.index_select(0, lay.pos).view(B * S, self.top_k, H)
            y = torch.einsum("tkh,tk->th", yk, w.to(yk.dtype)).to(xt.dtype)
        else:
            xs, counts, order = permute(xt, ids, self.n_experts)
            ys = self.experts(xs, counts)  # [T*k, H]
            ws = w.reshape(-1)[order].to(ys.dtype)
            y = torch.zeros_like(xt).index_add_(0, order // self.top_k, (ys * ws[:, None]).to(xt.dtype))
        if self.shared_experts is not None:
            sh = self.shared_experts(xt)
            if self.shared_expert_gate is not None:  # Qwen2-MoE: sigmoid(W x) scales the shared expert
                sh = torch.sigmoid(self.shared_expert_gate(xt)) * sh
            y = y + sh
        return y.view(B, S, H)
