"""Worker of test_ep.py: EPMoE over 2 gloo ranks vs the same layer computed on one rank with all experts."""

from __future__ import annotations

import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def main(rank: int, world: int, init: str, out: str, fp8: bool, n_nodes_size: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=30))
    from dsv3sim.config import load_model_config
    from dsv3sim.nn.transformer import Transformer
    from dsv3sim.validate.ep import EPMoE, route
    from dsv3sim.validate.nn_adapter import parts_of
    from dsv3sim.validate.timeline import Timeline

    cfg = load_model_config("tiny")
    torch.manual_seed(0)
    parts = parts_of(Transformer(cfg))  # real weights: every expert slice copies the same tensors
    blk = next(b for b in parts.blocks if b.is_moe)
    Er = cfg.n_routed_experts // world
    tl = Timeline(torch.device("cpu"))
    moe = EPMoE(cfg=cfg, layer=blk.layer, gate_weight=blk.gate_weight, gate_bias=blk.gate_bias,
                experts=blk.expert_slice(rank * Er, (rank + 1) * Er), n_local=Er, shared=blk.shared, group=dist.group.WORLD,
                ep_rank=rank, ep_size=world, node_size=n_nodes_size, fp8=fp8, tl=tl)
    x = torch.randn(2, 16, cfg.hidden_size, generator=torch.Generator().manual_seed(100 + rank)).requires_grad_()
    y = moe(x)
    (y * y).sum().backward()
    xs = [torch.empty_like(x) for _ in range(world)]
    ys = [torch.empty_like(y) for _ in range(world)]
    gs = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(xs, x.detach())
    dist.all_gather(ys, y.detach())
    dist.all_gather(gs, x.grad)
    sent = torch.tensor([tl.bytes["dispatch(F)"]])
    sents = [torch.empty_like(sent) for _ in range(world)]
    dist.all_gather(sents, sent)
    if rank == 0:
        # reference: all experts on one rank, dense loop, same routing rule
        X = torch.cat(xs).view(-1, cfg.hidden_size).requires_grad_()
        idx, w = route(X, blk.gate_weight, blk.gate_bias, cfg, n_nodes=moe.n_nodes, m_nodes=moe.m_nodes)
        ex = [blk.expert_slice(e, e + 1) for e in range(cfg.n_routed_experts)]
        Y = torch.stack([sum(w[t, k] * ex[int(idx[t, k])](X[t:t + 1], [1])[0] for k in range(idx.shape[1]))
                         for t in range(X.shape[0])]) + blk.shared(X)
        (Y * Y).sum().backward()
        # DeepEP-style: one row per (token, destination rank), not per (token, expert)
        rows_off = [int(sum(len({int(idx[t, k]) // Er for k in range(idx.shape[1])} - {r})
                            for t in range(r * 32, (r + 1) * 32))) for r in range(world)]
        torch.save({"y": torch.cat(ys).view(-1, cfg.hidden_size), "Y": Y.detach(),
                    "g": torch.cat(gs).view(-1, cfg.hidden_size), "G": X.grad, "sent": [int(s) for s in sents],
                    "rows_off": rows_off, "n_nodes": moe.n_nodes, "m_nodes": moe.m_nodes,
                    "idx": idx}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    r, w, init, out, fp8, nn_ = sys.argv[1:]
    main(int(r), int(w), init, out, fp8 == "1", int(nn_))
