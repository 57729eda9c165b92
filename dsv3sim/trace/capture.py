"""Capture a routing trace by running the executable model (dsv3sim.nn) over held-out text.

The model's MoE gates append, per forward, {"layer", "expert_ids" [T,k], "weights" [T,k], "scores" [T,E]}
to the list yielded by ``dsv3sim.nn.routing.capture_routing``; this module batches the text, runs
forwards under ``torch.no_grad``, and concatenates the records into a RoutingTrace (token order = batch-major,
row-major [B, S] as the model flattens it).

Node-limited routing (DeepSeek-V3 §2.1.2): with an EP layout and ``node_limit`` M the gate's groups are set to
the layout's nodes (n_group = n_nodes, topk_group = M) and a node is scored by the sum of its K/M highest
affinities (``group_score_topk``; V3: 8 experts, 4 nodes -> 2). Without a node limit the model's own
n_group/topk_group apply and the layout only labels where each selection lands.
"""

from __future__ import annotations

import numpy as np

from dsv3sim.config.errors import ConfigError
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import RoutingTrace


def node_limit_overrides(cfg, layout: EpLayout, node_limit: int) -> dict:
    """Gate overrides for node-limited routing: groups = nodes, keep ``node_limit``, score by top K/M."""
    k = cfg.num_experts_per_tok
    if not 1 <= node_limit <= layout.n_nodes:
        raise ConfigError(f"--node-limit ({node_limit}) must be in [1, n_nodes={layout.n_nodes}] "
                         f"(ep {layout.ep} / gpus_per_node {layout.gpus_per_node})")
    if k > node_limit * layout.experts_per_node:
        raise ConfigError(f"top-{k} routing cannot fit in {node_limit} node(s) of {layout.experts_per_node} experts")
    gst = min(layout.experts_per_node, max(1, k // node_limit))   # V3 §2.1.2: sum of the K_r/M highest affinities
    return {"n_group": layout.n_nodes, "topk_group": node_limit, "group_score_topk": gst}


def _records_to_trace(records: list[dict], n_tokens: int, n_experts: int) -> tuple[np.ndarray, ...]:
    by_layer: dict[int, list[dict]] = {}
    for r in records:
        by_layer.setdefault(int(r["layer"]), []).append(r)
    layers, ids, weights, skipped = [], [], [], []
    for layer in sorted(by_layer):
        rs = by_layer[layer]
        e = np.concatenate([r["expert_ids"].detach().cpu().numpy().reshape(-1, r["expert_ids"].shape[-1]) for r in rs])
        if e.shape[0] != n_tokens:   # e.g. an MTP module that sees a shifted / shorter sequence
            skipped.append(layer)
            continue
        w = np.concatenate([r["weights"].detach().float().cpu().numpy().reshape(-1, e.shape[1]) for r in rs])
        layers.append(layer)
        ids.append(e.astype(np.int64))
        weights.append(w.astype(np.float32))
    if not layers:
        raise RuntimeError(f"capture recorded no MoE layer with {n_tokens} tokens (layers seen: {sorted(by_layer)})")
    return np.asarray(layers), np.stack(ids), np.stack(weights), skipped


def capture_trace(model, cfg, tokens, *, layout: EpLayout | None = None, node_limit: int | None = None,
                  batch_size: int = 8, meta: dict | None = None) -> RoutingTrace:
    """Run ``model`` over ``tokens`` [B, S] (LongTensor) and return every MoE layer's routing."""
    import torch

    from dsv3sim.nn.routing import capture_routing

    over: dict = {}
    if node_limit is not None:
        if layout is None:
            raise ConfigError("--node-limit needs an EP layout (--ep and --gpus-per-node)")
        over = node_limit_overrides(cfg, layout, node_limit)
    B, S = tokens.shape
    model.eval()
    with torch.no_grad(), capture_routing(model, **over) as records:
        for i in range(0, B, batch_size):
            model(tokens[i:i + batch_size])
    layers, ids, weights, skipped = _records_to_trace(records, B * S, cfg.n_routed_experts)
    m = dict(meta or {})
    m.update(source="capture", model=cfg.name, hidden_size=cfg.hidden_size,
             topk_group=over.get("topk_group", cfg.topk_group),
             group_score_topk=over.get("group_score_topk", 2), gate_overrides=over, skipped_layers=skipped,
             scoring_func=cfg.scoring_func, topk_method=cfg.topk_method)
    return RoutingTrace(
        n_experts=cfg.n_routed_experts, layers=layers, expert_ids=ids, weights=weights,
        seq_ids=np.repeat(np.arange(B), S), positions=np.tile(np.arange(S), B),
        token_ids=tokens.reshape(-1).cpu().numpy().astype(np.int64),
        n_group=over.get("n_group", cfg.n_group), layout=layout, node_limit=node_limit, meta=m)


def capture_from_config(cfg, *, checkpoint: str | None, n_tokens: int, seq_len: int, seed: int,
                        layout: EpLayout | None, node_limit: int | None, config_arg: str | None = None,
                        batch_size: int = 8) -> RoutingTrace:
    """Build the model (loading ``checkpoint`` when given), read held-out text, capture.
    Tokens are rounded up to whole sequences of ``seq_len``."""
    import torch

    from dsv3sim.nn.transformer import Transformer

    if n_tokens <= 0 or seq_len <= 0:
        raise ConfigError(f"--tokens ({n_tokens}) and --seq-len ({seq_len}) must be > 0")
    if not cfg.is_moe:
        raise ConfigError(f"{cfg.name} has no routed experts (n_routed_experts = {cfg.n_routed_experts})")
    torch.manual_seed(seed)
    model = Transformer(cfg)
    if checkpoint:
        from dsv3sim.nn import checkpoint as ckpt

        ckpt.load(model, checkpoint)   # HF-named safetensors, incl. the gate biases (e_score_correction_bias)
    from dsv3sim.nn.batches import heldout_tokens

    tokens = heldout_tokens(cfg, n_tokens, seq_len, seed)   # [ceil(N/S), S], a split never trained on
    meta = {"seed": seed, "checkpoint": checkpoint, "config": config_arg, "seq_len": seq_len,
            "text": "dsv3sim.data held-out split (Python stdlib sources, files never trained on)"}
    return capture_trace(model, cfg, tokens, layout=layout, node_limit=node_limit, batch_size=batch_size, meta=meta)
