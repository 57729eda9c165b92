"""Expert parallelism for the real run: node-limited routing, all-to-all dispatch and combine.

Dimensions: T tokens on this rank, D hidden, E routed experts, K experts per token, R = EP ranks,
E_r = E / R experts per rank, N = R / node_size (virtual) nodes, M = max nodes per token.

Routing (DeepSeek-V3 §2.1.2, eq. 12-16 and "node-limited routing"): s = sigmoid(x W_g^T) (softmax for V2),
selection on s + b (aux-loss-free bias); with N > 1 nodes each token first keeps the M nodes with the
largest sum of their top K/M selection scores, then takes its top K experts on those nodes; gate weights are
the un-biased scores of the chosen experts, normalised (norm_topk_prob) and times routed_scaling_factor.
With one node the model's own group-limited routing (n_group / topk_group) applies.

Dispatch/combine: each (token, expert) pair is sent to the rank owning the expert with
``torch.distributed.all_to_all_single`` (counts first, then payload). FP8 dispatch (V3 §3.3: activations
quantised in 1x128 tiles, e4m3, scale = amax/448) packs fp8 bytes + fp32 tile scales per row; combine is
BF16 when FP8 is on, else the model dtype; backward all-to-alls send gradients in the combine dtype. Unlike
DeepEP, a token going to two experts on one rank is sent twice (simpler; the bytes counted are the bytes sent).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dsv3sim.validate.timeline import Timeline, mark

FP8_MAX = 448.0  # float8_e4m3fn largest finite value
TILE = 128  # V3 §3.3.1: per-token 1x128 activation tiles


def limited_topk(sel: torch.Tensor, k: int, *, n_nodes: int, m_nodes: int, n_group: int, topk_group: int,
                 group_score: str = "top2") -> torch.Tensor:
    """Indices [T, k] of the chosen experts under node-limited (N > 1) or group-limited routing."""
    T, E = sel.shape
    if n_nodes > 1 and m_nodes < n_nodes:
        per = max(k // m_nodes, 1)
        node = sel.view(T, n_nodes, E // n_nodes).topk(per, dim=-1).values.sum(-1)  # [T, N]
        keep = node.topk(m_nodes, dim=-1).indices
        mask = torch.zeros(T, n_nodes, dtype=torch.bool, device=sel.device).scatter_(1, keep, True)
        sel = sel.masked_fill(~mask.repeat_interleave(E // n_nodes, dim=1), float("-inf"))
    elif n_nodes <= 1 and 1 < n_group and topk_group < n_group:
        g = sel.view(T, n_group, E // n_group)
        gs = g.topk(2, dim=-1).values.sum(-1) if group_score == "top2" and E // n_group >= 2 else g.amax(-1)
        keep = gs.topk(topk_group, dim=-1).indices
        mask = torch.zeros(T, n_group, dtype=torch.bool, device=sel.device).scatter_(1, keep, True)
        sel = sel.masked_fill(~mask.repeat_interleave(E // n_group, dim=1), float("-inf"))
    return sel.topk(k, dim=-1).indices


def route(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg, *, n_nodes: int,
          m_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(expert ids [T, K], gate weights [T, K]) for tokens x [T, D].

    Uses the model's own gate math (``dsv3sim.nn.routing``: groups = nodes, group score = sum of the top K/M
    affinities) when importable; else ``limited_topk`` here (tests check the two agree)."""
    K = cfg.num_experts_per_tok
    try:
        from dsv3sim.nn.routing import gate_scores, select_experts
    except ImportError:
        gate_scores = None
    if gate_scores is not None:
        scores = gate_scores(x, weight, cfg.scoring_func)
        node_limited = n_nodes > 1 and m_nodes < n_nodes
        b = bias.detach().float() if bias is not None else None
        idx, w = select_experts(scores, b, top_k=K, n_group=n_nodes if node_limited else cfg.n_group,
                                topk_group=m_nodes if node_limited else cfg.topk_group,
                                method="noaux_tc" if node_limited else cfg.topk_method,
                                group_score_topk=max(K // m_nodes, 1) if node_limited else None,
                                norm_topk_prob=cfg.norm_topk_prob, routed_scaling_factor=cfg.routed_scaling_factor)
        return idx, w.to(x.dtype)
    logits = F.linear(x.float(), weight.float())  # [T, E]
    scores = logits.sigmoid() if cfg.scoring_func == "sigmoid" else logits.softmax(dim=-1)
    sel = scores.detach() + (bias.detach().float() if bias is not None else 0.0)
    idx = limited_topk(sel, K, n_nodes=n_nodes, m_nodes=m_nodes, n_group=cfg.n_group,
                       topk_group=cfg.topk_group, group_score="top2" if bias is not None else "max")
    w = scores.gather(1, idx)
    if cfg.norm_topk_prob and K > 1:
        w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
    return idx, (w * cfg.routed_scaling_factor).to(x.dtype)


# --- wire encoding: every payload travels as uint8 rows, so any backend/dtype works ------------------------
def encode(x: torch.Tensor, wire: str) -> torch.Tensor:
    """[N, D] -> uint8 [N, bytes_per_row]; wire in {"fp8", "bf16", "native"}."""
    if wire == "fp8":
        N, D = x.shape
        nt = math.ceil(D / TILE)
        xp = F.pad(x.float(), (0, nt * TILE - D)).view(N, nt, TILE)
        scale = (xp.abs().amax(-1, keepdim=True) / FP8_MAX).clamp_min(1e-12)  # [N, nt, 1]
        q = (xp / scale).to(torch.float8_e4m3fn).view(N, nt * TILE)[:, :D]
        return torch.cat([q.contiguous().view(torch.uint8), scale.view(N, nt).contiguous().view(torch.uint8)], 1)
    t = x.to(torch.bfloat16) if wire == "bf16" else x
    return t.contiguous().view(torch.uint8).view(x.shape[0], -1)


def decode(b: torch.Tensor, wire: str, D: int, dtype: torch.dtype) -> torch.Tensor:
    N = b.shape[0]
    if wire == "fp8":
        nt = math.ceil(D / TILE)
        q = b[:, :D].contiguous().view(torch.float8_e4m3fn).float()
        scale = b[:, D:].contiguous().view(torch.float32).view(N, nt)
        q = F.pad(q, (0, nt * TILE - D)).view(N, nt, TILE) * scale.unsqueeze(-1)
        return q.view(N, nt * TILE)[:, :D].to(dtype)
    wd = torch.bfloat16 if wire == "bf16" else dtype
    return b.contiguous().view(wd).view(N, D).to(dtype)


def row_bytes(D: int, wire: str, dtype: torch.dtype) -> int:
    if wire == "fp8":
        return D + 4 * math.ceil(D / TILE)
    return D * (2 if wire == "bf16" else torch.finfo(dtype).bits // 8)


def _a2a_rows(x: torch.Tensor, send: list[int], recv: list[int], wire: str, group) -> torch.Tensor:
    D = x.shape[1]
    payload = encode(x, wire)
    out = torch.empty(sum(recv), payload.shape[1], dtype=torch.uint8, device=x.device)
    dist.all_to_all_single(out, payload, recv, send, group=group)
    return decode(out, wire, D, x.dtype)


class AllToAll(torch.autograd.Function):
    """Differentiable row all-to-all; forward in ``wire``, backward (reverse splits) in ``bwd_wire``."""

    @staticmethod
    def forward(ctx, x, send, recv, wire, bwd_wire, group, tl, name, layer, me):
        ctx.args = (send, recv, bwd_wire, group, tl, name, layer, me)
        t0 = tl.now()
        y = _a2a_rows(x, send, recv, wire, group)
        tl.add(f"{name}(F)", t0, tl.now(), layer)
        rb = row_bytes(x.shape[1], wire, x.dtype)
        tl.count_bytes(f"{name}(F)", (sum(send) - send[me]) * rb, send[me] * rb)
        return y

    @staticmethod
    def backward(ctx, g):
        send, recv, bwd_wire, group, tl, name, layer, me = ctx.args
        t0 = tl.now()
        gx = _a2a_rows(g.contiguous(), recv, send, bwd_wire, group)
        tl.add(f"{name}(B)", t0, tl.now(), layer)
        rb = row_bytes(g.shape[1], bwd_wire, g.dtype)
        tl.count_bytes(f"{name}(B)", (sum(recv) - recv[me]) * rb, recv[me] * rb)
        return gx, None, None, None, None, None, None, None, None, None


class EPMoE(torch.nn.Module):
    """One MoE layer split over an EP group: gate (replicated), E_r local experts, shared experts (replicated).

    ``experts`` holds this rank's E_r routed experts (global ids ``ep_rank * E_r + j``) and maps rows sorted by
    local expert plus per-expert row counts to outputs (``parts.Block.expert_slice``); ``shared`` maps [T, D] ->
    [T, D] or is None. Routing per step is kept in ``self.routing`` (rows sent per rank, rows per local
    expert) for the predictor: the simulation replays the routing the real run used.
    """

    def __init__(self, *, cfg, layer: int, gate_weight: torch.nn.Parameter, gate_bias: torch.Tensor | None,
                 experts: torch.nn.Module, n_local: int, shared: torch.nn.Module | None, group, ep_rank: int,
                 ep_size: int,
                 node_size: int, fp8: bool, tl: Timeline) -> None:
        super().__init__()
        E = cfg.n_routed_experts
        if E % ep_size:
            raise ValueError(f"n_routed_experts ({E}) must be divisible by --ep ({ep_size})")
        if n_local != E // ep_size:
            raise ValueError(f"rank {ep_rank} holds {n_local} experts, expected {E} / {ep_size}")
        self.cfg, self.layer, self.tl = cfg, layer, tl
        self.gate_weight, self.gate_bias = gate_weight, gate_bias
        self.experts, self.n_local = experts, n_local
        self.shared = shared
        self.group, self.ep_rank, self.ep_size = group, ep_rank, ep_size
        self.n_nodes = max(ep_size // max(node_size, 1), 1)
        self.m_nodes = min(cfg.topk_group, self.n_nodes) if self.n_nodes > 1 else 1
        self.fp8 = fp8
        self.routing: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] (or [T, D]) -> same shape."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [T, D]
        T, D = x.shape
        K, Er, tl, L = self.cfg.num_experts_per_tok, self.n_local, self.tl, self.layer
        with tl.span("gate(F)", L):
            idx, w = route(x, self.gate_weight, self.gate_bias, self.cfg, n_nodes=self.n_nodes,
                           m_nodes=self.m_nodes)
            flat = idx.reshape(-1)  # [T*K]
            order = torch.argsort(flat, stable=True)
            tok = torch.div(order, K, rounding_mode="floor")
            dest = torch.div(flat[order], Er, rounding_mode="floor")
            send = torch.bincount(dest, minlength=self.ep_size)
        wire = "fp8" if self.fp8 else "native"
        back = "bf16" if self.fp8 else "native"
        if self.ep_size == 1:  # no peers: a local permutation, no all-to-all
            send_l = recv_l = send.tolist()
            e_recv = flat[order] % Er
            xr = x[tok]
        else:
            t0 = tl.now()
            recv = torch.empty_like(send)
            dist.all_to_all_single(recv, send, group=self.group)
            send_l, recv_l = send.tolist(), recv.tolist()
            e_recv = torch.empty(sum(recv_l), dtype=torch.int64, device=x.device)
            dist.all_to_all_single(e_recv, (flat[order] % Er).contiguous(), recv_l, send_l, group=self.group)
            tl.add("layout(F)", t0, tl.now(), L)
            xr = AllToAll.apply(x[tok], send_l, recv_l, wire, back, self.group, tl, "dispatch", L, self.ep_rank)
        # local experts on the received rows, grouped by local expert id
        order2 = torch.argsort(e_recv, stable=True)
        per_expert = torch.bincount(e_recv, minlength=Er).tolist()
        xr_m = mark(xr, tl, "mlp", L, "in")
        with tl.span("mlp(F)", L):
            y_sorted = self.experts(xr_m[order2], per_expert)
            y = torch.empty_like(y_sorted).index_copy(0, order2, y_sorted) if y_sorted.shape[0] else y_sorted
        y = mark(y, tl, "mlp", L, "out")
        yb = y if self.ep_size == 1 else AllToAll.apply(y, recv_l, send_l, back, back, self.group, tl, "combine", L,
                                                         self.ep_rank)
        with tl.span("gate(F)", L):
            out = torch.zeros_like(x).index_add(0, tok, yb * w.reshape(-1)[order].unsqueeze(1))
        if self.shared is not None:
            xs = mark(x, tl, "shared", L, "in")
            with tl.span("shared(F)", L):
                s = self.shared(xs)
            out = out + mark(s, tl, "shared", L, "out")
        if tl.recording:
            self.routing.append({"step": tl.step, "mb": tl.mb, "send_rows": send_l, "expert_rows": per_expert,
                                 "tokens": T})
        return out.view(shape)
