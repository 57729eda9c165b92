"""The load model of a day of serving (workload/fleet.py): closed forms, monotonicity, the SLA batch."""

from __future__ import annotations

import numpy as np
import pytest

from dsv3sim.config.errors import ConfigError
from dsv3sim.plan.fleet import decode_pool, prefill_pool
from dsv3sim.workload.fleet import Autoscaler, DiurnalLoad, Pool, fleet_day, pool_day, z_quantile

TOK = 100e9  # tokens per day
CAP = 10_000.0  # tokens/s per node


def _pool(unit=1e-6, slots=100.0, min_units=0, curve=()):
    return Pool(name="decode", capacity_tokens_per_s_per_node=CAP, slots_per_node=slots, unit_nodes=unit,
                min_units=min_units, curve=curve)


def test_z_quantile():
    assert z_quantile(0.5) == pytest.approx(0.0, abs=1e-9)
    assert z_quantile(0.99) == pytest.approx(2.3263, abs=1e-4)
    with pytest.raises(ConfigError, match="quantile"):
        z_quantile(1.0)


def test_flat_load_equals_the_capacity_model():
    no_burst = Autoscaler(burst_quantile=0.5, scale_interval_h=1.0)
    d = pool_day(_pool(), TOK, DiurnalLoad(shape="flat", peak_to_mean=1.0), no_burst)
    assert d.tokens_per_s_per_node_average == pytest.approx(CAP, rel=1e-6)
    assert d.average_nodes == pytest.approx(TOK / 86400 / CAP, rel=1e-6)


@pytest.mark.parametrize("r", [1.2, 1.5, 2.0])
def test_sinusoid_node_hours_closed_forms(r):
    no_burst = 0.5
    load = DiurnalLoad(shape="sinusoid", peak_to_mean=r, peak_hour=13.0)
    mean_nodes = TOK / 86400 / CAP
    # resizing every minute follows the curve: node-hours = tokens / capacity (the integral of a sinusoid)
    fine = pool_day(_pool(), TOK, load, Autoscaler(scale_interval_h=1 / 60, burst_quantile=no_burst))
    assert fine.node_hours == pytest.approx(24 * mean_nodes, rel=1e-3)
    # a day/night split centred on the peak: 12 h at the peak (1 + a) + 12 h at the night's maximum (1)
    dn = pool_day(_pool(), TOK, load, Autoscaler(scale_interval_h=12, burst_quantile=no_burst))
    assert dn.node_hours == pytest.approx(12 * mean_nodes * (2 + (r - 1)), rel=1e-3)
    assert dn.peak_nodes == pytest.approx(r * mean_nodes, rel=1e-3)


def test_higher_peak_to_mean_needs_more_nodes_and_lowers_the_average():
    sc = Autoscaler()
    days = [fleet_day(prefill=_pool(unit=4), decode=_pool(unit=18), daily_input_tokens=4 * TOK,
                      daily_output_tokens=TOK, load=DiurnalLoad(peak_to_mean=r), scaler=sc) for r in (1.0, 1.4, 1.8)]
    nodes = [d["average_nodes"] for d in days]
    assert nodes[0] < nodes[1] < nodes[2]
    avg = [d["decode"]["tokens_per_s_per_node_average"] for d in days]
    assert avg[0] > avg[1] > avg[2]
    assert all(d["decode"]["tokens_per_s_per_node_average"] <= CAP for d in days)
    assert days[2]["peak_to_average_nodes"] > days[0]["peak_to_average_nodes"]


def test_burst_headroom_units_and_warm_minimum():
    load, sc = DiurnalLoad(peak_to_mean=1.5), Autoscaler()
    c = pool_day(_pool(unit=18, min_units=1, slots=1000.0), TOK, load, sc).node_hours_by_cause
    vals = list(c.values())
    assert vals == sorted(vals)  # each cause adds node-hours
    # fewer slots per node (smaller batches) -> relatively larger Poisson fluctuations -> more headroom
    small = pool_day(_pool(slots=10.0), TOK, load, Autoscaler(scale_interval_h=1 / 60)).node_hours
    big = pool_day(_pool(slots=1e4), TOK, load, Autoscaler(scale_interval_h=1 / 60)).node_hours
    assert small > big
    # a tiny load still keeps the warm minimum
    tiny = pool_day(_pool(unit=18, min_units=2), 1.0, load, sc)
    assert tiny.min_nodes == 36 and tiny.average_nodes == pytest.approx(36)


def test_batch_follows_the_load_inside_an_interval():
    curve = ((32, 5_000.0), (64, 8_000.0), (128, CAP))
    d = pool_day(_pool(curve=curve), TOK, DiurnalLoad(peak_to_mean=1.5), Autoscaler(burst_quantile=0.5))
    assert 0 < d.mean_batch_per_gpu < 128
    assert _pool(curve=curve).batch_at(np.array([8_000.0]))[0] == pytest.approx(64)


def test_sla_batches_from_simulated_points():
    # decode: (batch, tok/s/node, tok/s/user); 20 tok/s/user is crossed between batch 112 and 128
    pts = [(64, 16_000.0, 32.0), (112, 19_000.0, 22.0), (128, 20_000.0, 18.0)]
    dp = decode_pool(pts, min_speed=20.0, unit_nodes=18, gpus_per_node=8)
    assert dp.sla_batch_per_gpu == pytest.approx(120)
    assert dp.capacity_tokens_per_s_per_node == pytest.approx(19_500)
    assert dp.slots_per_node == pytest.approx(960)
    with pytest.raises(ConfigError, match="tokens/s per user"):
        decode_pool(pts, min_speed=40.0, unit_nodes=18, gpus_per_node=8)
    # prefill: p99 TTFT = 2 x step
    pp = prefill_pool([(4096, 100e3, 0.5), (8192, 120e3, 1.0), (16384, 125e3, 2.0)], ttft_s=2.0, isl=4000,
                      cache_hit=0.5, unit_nodes=4, gpus_per_node=8)
    assert pp.sla_batch_per_gpu == 8192 and pp.capacity_tokens_per_s_per_node == 120e3
    assert pp.slots_per_node == pytest.approx(8192 * 8 / 2000)


def test_bad_load_parameters():
    with pytest.raises(ConfigError, match="peak_to_mean"):
        DiurnalLoad(shape="sinusoid", peak_to_mean=2.5)
    with pytest.raises(ConfigError, match="shape"):
        DiurnalLoad(shape="square")
    with pytest.raises(ConfigError, match="scale_interval_h"):
        Autoscaler(scale_interval_h=0)


def test_aggregated_ttft_includes_the_prefill_queue():
    from dsv3sim.workload.aggregated import RHO_MAX, prefill_queue_wait

    # M/D/1 (Pollaczek-Khinchine): rho S / (2 (1 - rho)); saturated budget -> unbounded (capped) wait
    assert prefill_queue_wait(0.0, 1.0) == 0.0
    assert prefill_queue_wait(0.5, 1.0) == pytest.approx(0.5)
    assert prefill_queue_wait(1.0, 1.0) == pytest.approx(RHO_MAX / (2 * (1 - RHO_MAX)))


def test_separate_services_round_separately():
    load, sc = DiurnalLoad(peak_to_mean=1.5), Autoscaler()
    one = fleet_day(prefill=_pool(unit=4), decode=_pool(unit=18, min_units=1), daily_input_tokens=4 * TOK,
                    daily_output_tokens=TOK, load=load, scaler=sc)
    two = fleet_day(prefill=_pool(unit=4), decode=_pool(unit=18, min_units=1), daily_input_tokens=4 * TOK,
                    daily_output_tokens=TOK, load=load, scaler=sc, services=2)
    assert two["average_nodes"] >= one["average_nodes"]
    assert two["decode"]["tokens"] == pytest.approx(TOK)
    # with no rounding and no minimum two services need what one does, bursts aside
    fine = Autoscaler(burst_quantile=0.5)
    a = fleet_day(prefill=_pool(), decode=_pool(), daily_input_tokens=TOK, daily_output_tokens=TOK, load=load,
                  scaler=fine)
    b = fleet_day(prefill=_pool(), decode=_pool(), daily_input_tokens=TOK, daily_output_tokens=TOK, load=load,
                  scaler=fine, services=3)
    assert b["node_hours"] == pytest.approx(a["node_hours"], rel=1e-6)
