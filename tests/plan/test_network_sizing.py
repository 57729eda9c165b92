"""Network sizing against "Insights into DeepSeek-V3: Scaling Challenges and Reflections on Hardware for AI
Architectures" (Zhao et al., ISCA'25, arXiv 2505.09343) Table 3, "Network topology comparison", 64-port 400G
switches. Its rows (endpoints, switches, links, cost $M, cost per endpoint $k):
FT2 2048, 96, 2048, 9, 4.39 | MPFT 16384, 768, 16384, 72, 4.39 | FT3 65536, 5120, 131072, 491, 7.5 |
SF 32928, 1568, 32928, 146, 4.4 | DF 261632, 16352, 384272, 1522, 5.8."""

from __future__ import annotations

import pytest

from dsv3sim.cost.network_sizing import (
    cheapest,
    dragonfly,
    fat_tree_2,
    fat_tree_3,
    multi_plane_fat_tree,
    size_all,
    slim_fly,
)

TABLE3 = {  # topology: (endpoints, switches, links, cost $M, cost per endpoint $k)
    "FT2": (2048, 96, 2048, 9, 4.39), "MPFT": (16384, 768, 16384, 72, 4.39), "FT3": (65536, 5120, 131072, 491, 7.5),
    "SF": (32928, 1568, 32928, 146, 4.4), "DF": (261632, 16352, 384272, 1522, 5.8)}
MAKERS = {"FT2": fat_tree_2, "MPFT": lambda k, n: multi_plane_fat_tree(k, n, planes=8), "FT3": fat_tree_3,
          "SF": slim_fly, "DF": dragonfly}


@pytest.mark.parametrize("topo", list(TABLE3))
def test_table3_counts_exact_cost_within_2_percent(topo):
    n, sw, links, cost_m, per_k = TABLE3[topo]
    s = MAKERS[topo](64, n)
    assert (s.capacity, s.switches, s.links) == (n, sw, links)
    assert s.cost_usd / 1e6 == pytest.approx(cost_m, rel=0.02)
    assert s.cost_usd_per_endpoint / 1e3 == pytest.approx(per_k, rel=0.02)


def test_mpft_is_chosen_at_16k_endpoints_as_deepseek_did():
    rows = size_all(64, 16384, planes=8)
    assert [r["topology"] for r in rows if "infeasible" in r] == ["FT2"]  # one FT2 stops at 2048
    assert cheapest(rows)["topology"] == "MPFT"
    ft3 = next(r for r in rows if r["topology"] == "FT3")
    assert ft3["cost_usd_per_endpoint"] > 1.5 * cheapest(rows)["cost_usd_per_endpoint"]


def test_slim_fly_reports_whether_mms_can_build_it():
    assert not slim_fly(64, 32928).constructible  # q = 28 is not a prime power
    assert slim_fly(64, 1000).constructible or slim_fly(64, 1000).detail["q"] in (6, 10, 14)


@pytest.mark.parametrize("radix,n", [(63, 100), (64, 0), (2, 10)])
def test_bad_input(radix, n):
    with pytest.raises(ValueError):
        size_all(radix, n)


def test_generated_topology_loads_and_runs(tmp_path):
    from dsv3sim.config.topology import load_topology_config
    from dsv3sim.plan.network import plan_network, write_topology
    from dsv3sim.workload import simulate
    from dsv3sim.workload.loader import load

    plan = plan_network(radix=64, n_gpus=2048)
    assert plan["chosen"] == "MPFT"
    p = write_topology(plan, tmp_path / "mpft.yaml")
    cfg = load_topology_config(p)
    assert (cfg.n_gpus, cfg.fabric.kind, cfg.fabric.n_planes, cfg.fabric.nodes_per_leaf) == (2048, "multi-plane", 8, 32)
    base = next(iter(load(None).values())).with_(comm_model="bound", record=False)
    a, b = simulate(base), simulate(base.with_(topology=str(p)))
    assert b.step_time_s == pytest.approx(a.step_time_s, rel=1e-3)  # the same network as h800-deepseek.yaml
