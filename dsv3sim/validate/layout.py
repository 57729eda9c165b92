"""Rank layout of a validation run: rank = (dp_i * pp + pp_i) * ep + ep_i (EP innermost, as DeepSeek-V3
places its EP group within and across nodes). Process groups are created here, by every rank in the same
order (torch.distributed requires it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from dsv3sim.config.errors import ConfigError


@dataclass(frozen=True, kw_only=True, slots=True)
class Coord:
    dp: int
    pp: int
    ep: int


def coord(rank: int, ep: int, pp: int) -> Coord:
    return Coord(dp=rank // (ep * pp), pp=(rank // ep) % pp, ep=rank % ep)


def rank_of(c: Coord, ep: int, pp: int) -> int:
    return (c.dp * pp + c.pp) * ep + c.ep


def stage_layers(n_layers: int, pp: int) -> list[range]:
    """Contiguous, as even as possible; earlier stages take the remainder (they also hold the embedding)."""
    if pp > n_layers:
        raise ConfigError(f"--pp ({pp}) must be <= num_hidden_layers ({n_layers})")
    base, rem = divmod(n_layers, pp)
    out, a = [], 0
    for s in range(pp):
        n = base + (1 if s < rem else 0)
        out.append(range(a, a + n))
        a += n
    return out


@dataclass(kw_only=True)
class Groups:
    ep: object  # this rank's EP group (same dp, pp)
    replica: object  # ranks holding the same non-expert weights (same pp): gradient all-reduce of dense params
    dp: object  # ranks holding the same experts (same pp, ep): gradient all-reduce of expert params
    replica_size: int
    dp_size: int


def pp_peers(p: int, pp: int, mirror: bool) -> list[int]:
    """Pipeline ranks holding the same stages as ``p``: itself, and with DualPipe's mirrored copies
    (bidirectional layout: rank p holds stages p and P-1-p) also P-1-p."""
    return sorted({p, pp - 1 - p}) if mirror else [p]


def make_groups(rank: int, ep: int, pp: int, dp: int, mirror: bool = False) -> Groups:
    """EP groups, replica groups (dense weights) and DP groups (expert weights). ``mirror``: DualPipe's two
    copies of each stage also average their gradients (DeepSeek-V3 §3.2.1: parameters are kept twice)."""
    me = coord(rank, ep, pp)
    found: dict[str, object] = {}
    for d in range(dp):
        for p in range(pp):
            ranks = [rank_of(Coord(dp=d, pp=p, ep=e), ep, pp) for e in range(ep)]
            g = dist.new_group(ranks)
            if rank in ranks:
                found["ep"] = g
    heads = sorted({pp_peers(p, pp, mirror)[0] for p in range(pp)})
    for h in heads:
        peers = pp_peers(h, pp, mirror)
        ranks = [rank_of(Coord(dp=d, pp=p, ep=e), ep, pp) for p in peers for d in range(dp) for e in range(ep)]
        g = dist.new_group(sorted(ranks))
        if rank in ranks:
            found["replica"] = g
    for h in heads:
        peers = pp_peers(h, pp, mirror)
        for e in range(ep):
            ranks = [rank_of(Coord(dp=d, pp=p, ep=e), ep, pp) for p in peers for d in range(dp)]
            g = dist.new_group(sorted(ranks))
            if rank in ranks:
                found["dp"] = g
    n_peers = len(pp_peers(me.pp, pp, mirror))
    return Groups(ep=found["ep"], replica=found["replica"], dp=found["dp"], replica_size=dp * ep * n_peers,
                  dp_size=dp * n_peers)
