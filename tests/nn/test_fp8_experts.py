"""Contiguous grouped layout of the FP8 expert path (nn/fp8_experts.py): every routed row lands once, inside its
expert's 128-aligned segment, padding rows are marked, and the tile map names the right expert. CPU, no Triton."""

from __future__ import annotations

import torch

from dsv3sim.nn.fp8_experts import layout_from_counts, layout_from_ids


def _check(lay, expert_of_src, n_experts):
    src, pos = lay.src.long(), lay.pos
    assert lay.rows % 128 == 0 and lay.tile_expert.shape[0] * 128 == lay.rows
    assert torch.unique(pos).numel() == pos.numel()  # one padded row per source row
    ex = lay.tile_expert.long()[pos // 128]
    assert torch.equal(ex, expert_of_src)
    starts, n_tiles = lay.tile_start.long(), lay.n_tiles.long()
    assert torch.equal(starts, torch.cumsum(n_tiles, 0) - n_tiles)
    counts = torch.bincount(expert_of_src, minlength=n_experts)
    assert torch.equal(n_tiles, (counts + 127) // 128)
    assert int((src >= 0).sum()) == pos.numel()
    tail = lay.tile_expert.long() >= n_experts
    assert int(tail.sum()) == lay.tile_expert.numel() - int(n_tiles.sum())
    return src


def test_layout_from_ids_ragged_and_empty_experts():
    g = torch.Generator().manual_seed(0)
    T, k, E = 300, 4, 9
    ids = torch.stack([torch.randperm(E - 1, generator=g)[:k] for _ in range(T)])  # expert E-1 gets no tokens
    lay = layout_from_ids(ids, E)
    src = _check(lay, ids.reshape(-1), E)
    assert torch.equal(src[lay.pos], torch.arange(T * k) // k)  # padded row of (t, j) gathers token t
    assert int(lay.n_tiles[E - 1]) == 0


def test_layout_from_counts_sorted_rows():
    counts = torch.tensor([0, 129, 1, 256, 0, 5])
    n = int(counts.sum())
    lay = layout_from_counts(counts, n)
    src = _check(lay, torch.repeat_interleave(torch.arange(6), counts), 6)
    assert torch.equal(src[lay.pos], torch.arange(n))
