"""Expert parallelism for the real run: node-limited routing, all-to-all dispatch and combine.

Dimensions: T tokens on this rank, D hidden, E routed experts, K experts per token, R = EP ranks,
E_r = E / R experts per rank, N = R / node_size (virtual) nodes, M = max nodes per token.

Routing (DeepSeek-V3 §2.1.2, eq. 12-16 and "node-limited routing"): s = sigmoid(x W_g^T) (softmax for V2),
selection on s + b (aux-loss-free bias); with N > 1 nodes each token first keeps the M nodes with the
largest sum of their top K/M selection scores, then takes its top K experts on those nodes; gate weights are
the un-biased scores of the chosen experts, normalised (norm_topk_prob) and times routed_scaling_factor.
With one node the model's own group-limited routing (n_group / topk_group) applies.

Dispatch/combine as DeepEP does it: a token goes once to each rank that owns at least one of its experts
(one row per (token, rank), not per (token, expert)), with its (local expert, gate weight) pairs beside it;
the expert rank runs each pair, sums the weighted outputs of a row and sends one row back, which the token's
rank adds up. ``torch.distributed.all_to_all_single`` carries counts, then the pair layout, the gate weights
(differentiable, FP32) and the rows. FP8 dispatch (V3 §3.3: activations quantised in 1x128 tiles, e4m3,
scale = amax/448) packs fp8 bytes + fp32 tile scales per row; combine is BF16 when FP8 is on, else the model
dtype; backward all-to-alls send gradients in the combine dtype. Bytes counted for dispatch/combine are the
rows'; the pair layout and weights (12 B a pair, DeepEP's topk_idx/topk_weights) are timed as ``layout(F)``, the
weights' gradients sent back in the backward as ``layout(B)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dsv3sim.config.errors import ConfigError
from dsv3sim.validate.timeline import Timeline, mark

FP8_MAX = 448.0  # float8_e4m3fn largest finite value
TILE = 128  # V3 §3.3.1: per-token 1x128 activation tiles


def route(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg, *, n_nodes: int,
          m_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(expert ids [T, K], gate weights [T, K]) for tokens x [T, D].

    The model's own gate math (``dsv3sim.nn.routing``) with groups = nodes under node-limited routing
    (group score = sum of the top K/M affinities, DeepSeek-V3 §2.1.2), the model's groups otherwise."""
    from dsv3sim.nn.routing import gate_scores, select_experts

    K = cfg.num_experts_per_tok
    scores = gate_scores(x, weight, cfg.scoring_func)
    node_limited = n_nodes > 1 and m_nodes < n_nodes
    b = bias.detach().float() if bias is not None else None
    idx, w = select_experts(scores, b, top_k=K, n_group=n_nodes if node_limited else cfg.n_group,
                            topk_group=m_nodes if node_limited else cfg.topk_group,
                            method="noaux_tc" if node_limited else cfg.topk_method,
                            group_score_topk=max(K // m_nodes, 1) if node_limited else None,
                            norm_topk_prob=cfg.norm_topk_prob, routed_scaling_factor=cfg.routed_scaling_factor)
    return idx, w.to(x.dtype)


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
    def forward(ctx, x, send, recv, wire, bwd_wire, group, tl, name, layer, me, fwd_timed=True):
        """``tl`` None: an untimed transfer, neither timed nor counted; ``fwd_timed`` False: the forward is part of
        an enclosing span (the gate weights inside ``layout(F)``) and only the backward is timed, as ``{name}(B)``."""
        ctx.args = (send, recv, bwd_wire, group, tl, name, layer, me)
        t0 = tl.now() if tl else 0.0
        y = _a2a_rows(x, send, recv, wire, group)
        if tl and fwd_timed:
            tl.add(f"{name}(F)", t0, tl.now(), layer)
            rb = row_bytes(x.shape[1], wire, x.dtype)
            tl.count_bytes(f"{name}(F)", (sum(send) - send[me]) * rb, send[me] * rb)
        return y

    @staticmethod
    def backward(ctx, g):
        send, recv, bwd_wire, group, tl, name, layer, me = ctx.args
        t0 = tl.now() if tl else 0.0
        gx = _a2a_rows(g.contiguous(), recv, send, bwd_wire, group)
        if tl:
            tl.add(f"{name}(B)", t0, tl.now(), layer)
            rb = row_bytes(g.shape[1], bwd_wire, g.dtype)
            tl.count_bytes(f"{name}(B)", (sum(recv) - recv[me]) * rb, recv[me] * rb)
        return gx, None, None, None, None, None, None, None, None, None, None


@dataclass(frozen=True, slots=True)
class _RowsAndPairs:
    """This rank's tokens as rows to send (one per (token, destination rank), grouped by rank) and its
    (token, expert) pairs in the same grouping: each pair's row inside its rank's block, local expert, weight."""

    row_tok: torch.Tensor  # [rows] token of each row
    send: torch.Tensor  # [R] rows per destination rank
    pair_send: torch.Tensor  # [R] pairs per destination rank
    pair_row: torch.Tensor  # [pairs] row of each pair (global row index)
    pair_rel: torch.Tensor  # [pairs] row index inside its rank's block
    pair_le: torch.Tensor  # [pairs] local expert on the destination rank
    pair_w: torch.Tensor  # [pairs, 1] gate weight (FP32)


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
            raise ConfigError(f"n_routed_experts ({E}) must be divisible by --ep ({ep_size})")
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

    def _rows_and_pairs(self, x: torch.Tensor) -> _RowsAndPairs:
        T, K, Er, R = x.shape[0], self.cfg.num_experts_per_tok, self.n_local, self.ep_size
        idx, w = route(x, self.gate_weight, self.gate_bias, self.cfg, n_nodes=self.n_nodes, m_nodes=self.m_nodes)
        dest = torch.div(idx, Er, rounding_mode="floor")  # [T, K] rank of each pair's expert
        tok = torch.arange(T, device=x.device).unsqueeze(1).expand(T, K)
        # one row per (token, rank), grouped by rank: key = rank * T + token, sorted
        rows_key, pair_row = torch.unique((dest * T + tok).reshape(-1), sorted=True, return_inverse=True)
        send = torch.bincount(torch.div(rows_key, T, rounding_mode="floor"), minlength=R)
        porder = torch.argsort(pair_row, stable=True)  # pairs grouped like their rows (by rank)
        row_start = torch.cumsum(send, 0) - send
        flat_dest = dest.reshape(-1)[porder]
        return _RowsAndPairs(row_tok=rows_key % T, send=send, pair_send=torch.bincount(dest.reshape(-1), minlength=R),
                             pair_row=pair_row[porder], pair_rel=pair_row[porder] - row_start[flat_dest],
                             pair_le=(idx.reshape(-1) % Er)[porder], pair_w=w.reshape(-1)[porder].unsqueeze(1).float())

    def _exchange_layout(self, rp: _RowsAndPairs, device):
        """Row and pair counts, each pair's (row, local expert) and its weight to the ranks that hold the experts
        (the ``layout(F)`` span); returns (rows sent, rows received per rank, received row / local expert /
        weight of each pair received)."""
        tl, L, R = self.tl, self.layer, self.ep_size
        t0, c0 = tl.now(), time.thread_time()
        counts = torch.stack([rp.send, rp.pair_send], 1).contiguous()  # [R, 2]: rows, pairs per destination
        counts_r = torch.empty_like(counts)
        host = time.thread_time() - c0
        dist.all_to_all_single(counts_r, counts, group=self.group)
        c1 = time.thread_time()
        send_l, recv_l = rp.send.tolist(), counts_r[:, 0].tolist()
        ps_l, pr_l = rp.pair_send.tolist(), counts_r[:, 1].tolist()
        lay = torch.stack([rp.pair_rel, rp.pair_le], 1).contiguous()
        lay_r = torch.empty(sum(pr_l), 2, dtype=torch.int64, device=device)
        host += time.thread_time() - c1
        dist.all_to_all_single(lay_r, lay, pr_l, ps_l, group=self.group)
        c2 = time.thread_time()
        # the gate weights' exchange: its forward inside this span, its backward (the weights' gradients back to
        # the ranks that routed them) the ``layout(B)`` span
        w_recv = AllToAll.apply(rp.pair_w, ps_l, pr_l, "native", "native", self.group, tl, "layout", L,
                                self.ep_rank, False)
        # the span's CPU: this thread's host work between the three exchanges (the blocked waits spend none;
        # the gate weights' autograd all-to-all counts whole, its gloo call is a few us of that)
        tl.add("layout(F)", t0, tl.now(), L, host + time.thread_time() - c2)
        # received row of each pair: its row inside the sender's block + where that block starts
        src_of_pair = torch.repeat_interleave(torch.arange(R, device=device), torch.tensor(pr_l, device=device))
        prow = lay_r[:, 0] + (torch.cumsum(counts_r[:, 0], 0) - counts_r[:, 0])[src_of_pair]
        return send_l, recv_l, prow, lay_r[:, 1], w_recv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] (or [T, D]) -> same shape."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [T, D]
        T, D = x.shape
        Er, tl, L, R = self.n_local, self.tl, self.layer, self.ep_size
        with tl.span("gate(F)", L):
            rp = self._rows_and_pairs(x)
        back = "bf16" if self.fp8 else "native"
        if R == 1:  # no peers: a local permutation, no all-to-all
            send_l = recv_l = rp.send.tolist()
            prow, le_recv, w_recv = rp.pair_row, rp.pair_le, rp.pair_w  # received row of each pair
            xr = x[rp.row_tok]
        else:
            send_l, recv_l, prow, le_recv, w_recv = self._exchange_layout(rp, x.device)
            xr = AllToAll.apply(x[rp.row_tok], send_l, recv_l, "fp8" if self.fp8 else "native", back, self.group,
                                tl, "dispatch", L, self.ep_rank)
        row_tok = rp.row_tok
        # the pairs on this rank: received row, local expert, gate weight; experts run grouped by local expert
        order2 = torch.argsort(le_recv, stable=True)
        per_expert = torch.bincount(le_recv, minlength=Er).tolist()
        xr_m = mark(xr, tl, "mlp", L, "in")
        with tl.span("mlp(F)", L):
            y_sorted = self.experts(xr_m[prow[order2]], per_expert)
            y_pair = torch.empty_like(y_sorted).index_copy(0, order2, y_sorted) if y_sorted.shape[0] else y_sorted
            y_rows = torch.zeros(xr.shape[0], D, dtype=y_pair.dtype, device=x.device).index_add(
                0, prow, y_pair * w_recv.to(y_pair.dtype))
        y_rows = mark(y_rows, tl, "mlp", L, "out")
        yb = y_rows if R == 1 else AllToAll.apply(y_rows, recv_l, send_l, back, back, self.group, tl, "combine", L,
                                                   self.ep_rank)
        with tl.span("gate(F)", L):
            out = torch.zeros_like(x).index_add(0, row_tok, yb.to(x.dtype))
        if self.shared is not None:
            xs = mark(x, tl, "shared", L, "in")
            with tl.span("shared(F)", L):
                s = self.shared(xs)
            out = out + mark(s, tl, "shared", L, "out")
        if tl.recording:
            self.routing.append({"step": tl.step, "mb": tl.mb, "send_rows": send_l, "expert_rows": per_expert,
                                 "tokens": T})
        return out.view(shape)
