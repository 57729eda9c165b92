"""Network sizing: switches, links and cost of scale-out topologies from the switch radix and the endpoints.

Every topology is sized for ``endpoints`` NIC ports at full bisection bandwidth with switches of ``radix`` ports.
``links`` counts switch-to-switch cables (endpoint cables are one per endpoint and counted apart), as
"Insights into DeepSeek-V3" (ISCA'25, arXiv 2505.09343) Table 3 does; ``capacity`` is the most endpoints the built
network takes (its Endpoints column), which is what the table reports.

* FT2, two-layer fat tree (folded Clos): leaves with k/2 down and k/2 up ports, spines with k ports.
  capacity k^2/2; leaves = ceil(N / (k/2)), spines = ceil(leaves / 2), links = leaves x k/2.
* MPFT, multi-plane fat tree (ISCA'25 §5.1.1): ``planes`` independent FT2s, endpoint i of a node in plane i;
  capacity planes x k^2/2.
* FT3, three-layer fat tree (Al-Fares et al. 2008, k-ary): edge and aggregation switches k/2 down, k/2 up,
  cores k down. capacity k^3/4; edge = ceil(N/(k/2)), agg = edge, cores = ceil(agg x k/2 / k),
  links = edge x k/2 + agg x k/2.
* SF, Slim Fly (Besta & Hoefler SC'14, MMS graph): q = 4w + d with d in {-1, 0, 1}, 2q^2 routers of network
  radix k' = (3q - d)/2 and p = ceil(k'/2) endpoints each (full global bandwidth); the smallest q whose
  capacity reaches N with k' + p <= k. MMS needs q a prime power: ``constructible`` says whether it is
  (Table 3's SF at radix 64 has q = 28, which is not).
* DF, canonical Dragonfly (Kim et al. ISCA'08, balanced a = 2p = 2h): p = h = floor(k/4), a = 2p routers per
  group, all-to-all inside a group, groups g = ceil(N / (a p)) <= a h + 1; links = g a (a-1)/2 local +
  g a h / 2 global (every global port cabled).

Cost = switches x switch price + switch links x inter-switch link price + endpoints x endpoint link price.
The default prices (400G InfiniBand, 64 ports) are a least-squares fit to Table 3's cost column, the only
public anchor of the method DeepSeek used (the Slim Fly paper's cost model, whose cable lengths come from a
physical layout not published with the table); they reproduce its costs within 1 % and are inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dsv3sim.config.errors import ConfigError

TOPOLOGIES = ("FT2", "MPFT", "FT3", "SF", "DF")
# $ per 64-port 400G switch, per endpoint cable (NIC-leaf), per switch-to-switch cable (optics at both ends):
# least-squares fit to ISCA'25 Table 3's Cost column (module docstring).
DEFAULT_PRICES = {"switch_usd": 10_761.0, "endpoint_link_usd": 1_168.0, "switch_link_usd": 2_729.0}


@dataclass(frozen=True, kw_only=True, slots=True)
class NetworkSize:
    topology: str
    radix: int
    endpoints: int  # asked for
    capacity: int  # endpoints the built network takes
    switches: int
    links: int  # switch-to-switch cables
    endpoint_links: int
    cost_usd: float
    diameter_switch_hops: int  # switches on the longest shortest path
    detail: dict
    constructible: bool = True

    @property
    def cost_usd_per_endpoint(self) -> float:
        return self.cost_usd / self.capacity

    def to_dict(self) -> dict:
        return dict(asdict(self), cost_usd_per_endpoint=self.cost_usd_per_endpoint)


def _check(radix: int, endpoints: int, planes: int = 1) -> None:
    if not isinstance(radix, int) or radix < 4 or radix % 2:
        raise ConfigError(f"switch radix must be an even integer >= 4, got {radix!r}")
    if not isinstance(endpoints, int) or endpoints < 1:
        raise ConfigError(f"endpoints must be a positive integer, got {endpoints!r}")
    if planes < 1:
        raise ConfigError(f"planes must be >= 1, got {planes}")


def _cost(switches: int, links: int, endpoints: int, prices: dict) -> float:
    return (switches * prices["switch_usd"] + links * prices["switch_link_usd"]
            + endpoints * prices["endpoint_link_usd"])


def _ft2_counts(radix: int, n: int) -> tuple[int, int, int]:
    half = radix // 2
    leaves = math.ceil(n / half)
    spines = math.ceil(leaves * half / radix)
    return leaves, spines, leaves * half


def fat_tree_2(radix: int, endpoints: int, prices: dict | None = None) -> NetworkSize:
    _check(radix, endpoints)
    cap = radix * radix // 2
    if endpoints > cap:
        raise ConfigError(f"FT2 of radix {radix} takes at most {cap} endpoints, asked {endpoints}")
    leaves, spines, links = _ft2_counts(radix, endpoints)
    capacity = leaves * radix // 2
    return NetworkSize(topology="FT2", radix=radix, endpoints=endpoints, capacity=capacity, switches=leaves + spines,
                       links=links, endpoint_links=capacity, cost_usd=_cost(leaves + spines, links, capacity,
                                                                              prices or DEFAULT_PRICES),
                       diameter_switch_hops=3 if leaves > 1 else 1, detail={"leaves": leaves, "spines": spines})


def multi_plane_fat_tree(radix: int, endpoints: int, planes: int = 8, prices: dict | None = None) -> NetworkSize:
    _check(radix, endpoints, planes)
    per = math.ceil(endpoints / planes)
    if per > radix * radix // 2:
        raise ConfigError(f"MPFT of radix {radix} with {planes} planes takes at most {planes * radix * radix // 2} "
                         f"endpoints, asked {endpoints}")
    one = fat_tree_2(radix, per, prices)
    cap = one.capacity * planes
    return NetworkSize(topology="MPFT", radix=radix, endpoints=endpoints, capacity=cap, switches=one.switches * planes,
                       links=one.links * planes, endpoint_links=cap,
                       cost_usd=_cost(one.switches * planes, one.links * planes, cap, prices or DEFAULT_PRICES),
                       diameter_switch_hops=one.diameter_switch_hops,
                       detail={"planes": planes, "leaves_per_plane": one.detail["leaves"],
                               "spines_per_plane": one.detail["spines"], "endpoints_per_plane": one.capacity})


def fat_tree_3(radix: int, endpoints: int, prices: dict | None = None) -> NetworkSize:
    _check(radix, endpoints)
    half = radix // 2
    cap = radix**3 // 4
    if endpoints > cap:
        raise ConfigError(f"FT3 of radix {radix} takes at most {cap} endpoints, asked {endpoints}")
    edge = math.ceil(endpoints / half)
    pods = math.ceil(edge / half)
    agg = edge
    cores = math.ceil(agg * half / radix)
    links = edge * half + agg * half
    capacity = edge * half
    return NetworkSize(topology="FT3", radix=radix, endpoints=endpoints, capacity=capacity,
                       switches=edge + agg + cores, links=links, endpoint_links=capacity,
                       cost_usd=_cost(edge + agg + cores, links, capacity, prices or DEFAULT_PRICES),
                       diameter_switch_hops=5, detail={"edge": edge, "aggregation": agg, "core": cores, "pods": pods})


def _is_prime_power(q: int) -> bool:
    if q < 2:
        return False
    for p in range(2, int(q**0.5) + 1):
        if q % p == 0:
            while q % p == 0:
                q //= p
            return q == 1
    return True


def slim_fly(radix: int, endpoints: int, prices: dict | None = None) -> NetworkSize:
    _check(radix, endpoints)
    best = None
    for q in range(3, 4 * radix):
        d = {0: 0, 1: 1, 3: -1}.get(q % 4)
        if d is None:  # q = 4w + 2 has no MMS construction
            continue
        kp = (3 * q - d) // 2
        p = math.ceil(kp / 2)
        if kp + p > radix:
            break
        routers = 2 * q * q
        if routers * p >= endpoints:
            best = (q, d, kp, p, routers)
            break
    if best is None:
        raise ConfigError(f"Slim Fly of radix {radix} cannot take {endpoints} endpoints")
    q, d, kp, p, routers = best
    links = routers * kp // 2
    cap = routers * p
    return NetworkSize(topology="SF", radix=radix, endpoints=endpoints, capacity=cap, switches=routers, links=links,
                       endpoint_links=cap, cost_usd=_cost(routers, links, cap, prices or DEFAULT_PRICES),
                       diameter_switch_hops=3, constructible=_is_prime_power(q),
                       detail={"q": q, "delta": d, "network_radix": kp, "endpoints_per_router": p})


def dragonfly(radix: int, endpoints: int, prices: dict | None = None) -> NetworkSize:
    _check(radix, endpoints)
    p = h = radix // 4
    a = 2 * p
    g_max = a * h + 1
    g = math.ceil(endpoints / (a * p))
    if g > g_max:
        raise ConfigError(f"Dragonfly of radix {radix} takes at most {g_max * a * p} endpoints, asked {endpoints}")
    routers = g * a
    local = g * a * (a - 1) // 2
    glob = g * a * h // 2 if g > 1 else 0
    cap = routers * p
    return NetworkSize(topology="DF", radix=radix, endpoints=endpoints, capacity=cap, switches=routers,
                       links=local + glob, endpoint_links=cap,
                       cost_usd=_cost(routers, local + glob, cap, prices or DEFAULT_PRICES),
                       diameter_switch_hops=3 if g > 1 else 2,
                       detail={"groups": g, "routers_per_group": a, "endpoints_per_router": p,
                               "global_ports_per_router": h, "local_links": local, "global_links": glob})


def size_all(radix: int, endpoints: int, *, planes: int = 8, prices: dict | None = None) -> list[dict]:
    """Every topology that can take ``endpoints``; those that cannot are rows with ``infeasible``.
    Bad input (odd radix, no endpoints) raises ValueError."""
    _check(radix, endpoints, planes)
    makers = {"FT2": lambda: fat_tree_2(radix, endpoints, prices),
              "MPFT": lambda: multi_plane_fat_tree(radix, endpoints, planes, prices),
              "FT3": lambda: fat_tree_3(radix, endpoints, prices), "SF": lambda: slim_fly(radix, endpoints, prices),
              "DF": lambda: dragonfly(radix, endpoints, prices)}
    rows = []
    for name, make in makers.items():
        try:
            rows.append(make().to_dict())
        except ValueError as e:
            rows.append({"topology": name, "radix": radix, "endpoints": endpoints, "infeasible": str(e)})
    return rows


def cheapest(rows: list[dict]) -> dict | None:
    """The feasible row with the lowest cost per endpoint (ties: fewer switch hops, then more planes, which
    isolate failures and congestion — ISCA'25 §5.1.1)."""
    ok = [r for r in rows if "infeasible" not in r]
    return min(ok, key=lambda r: (round(r["cost_usd_per_endpoint"], 6), r["diameter_switch_hops"],
                                  -r["detail"].get("planes", 1))) if ok else None
