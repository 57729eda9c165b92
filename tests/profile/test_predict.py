"""Predictor: measured rows come back exactly, interpolation agrees with a closed form, scaling follows the
hardware table, and the committed H200 table predicts held-out shapes it never saw."""

from __future__ import annotations

import statistics

import pytest

from dsv3sim.config.hardware import get_gpu
from dsv3sim.profile import predict as P
from dsv3sim.profile.table import Row, profile_dir, read_raw, read_rows

H200 = profile_dir("H200")


def _row(op, dtype, t, **shape):
    f, b = P.flops_bytes(op, dtype, shape)
    return Row(op=op, dtype=dtype, role="", set="lattice", shape=tuple(sorted(shape.items())), time_s=t, flops=f,
               bytes=b)


def test_measured_rows_come_back_exactly():
    rows = [r for r in read_rows(str(H200 / "kernels.csv")) if r.op == "gemm" and r.set == "model"][:20]
    assert rows
    for r in rows:
        p = P.kernel_time("H200", "gemm", r.dtype, **dict(r.shape))
        assert p.source == "measured"
        same = [x.time_s for x in read_rows(str(H200 / "kernels.csv"))
                if x.op == "gemm" and x.dtype == r.dtype and x.shape == r.shape]
        assert p.time_s == sorted(same)[len(same) // 2]  # the (upper) median of repeated rows, unchanged


def test_flops_bytes_match_the_profiler_counts():
    for r in read_rows(str(H200 / "kernels.csv")):
        sh = dict(P.DEFAULTS.get(r.op, {}))
        sh.update(dict(r.shape))
        f, b = P.flops_bytes(r.op, r.dtype, sh)
        assert f == pytest.approx(r.flops, rel=1e-9, abs=1e-9) and b == pytest.approx(r.bytes, rel=1e-9), r


def test_log_linear_efficiency_is_interpolated_exactly():
    # eff(m) = 0.01 * m^0.5 (power law) on a synthetic table: log-log interpolation must be exact in between.
    spec = get_gpu("H200")
    rows = []
    for m in (16, 64, 256):
        f, b = P.flops_bytes("gemm", "bf16", {"m": m, "n": 4096, "k": 4096})
        roof = P.roofline_time(spec, "gemm", "bf16", f, b)
        rows.append(_row("gemm", "bf16", roof / (0.01 * m ** 0.5), m=m, n=4096, k=4096))
    tabs = P.build_tables(rows, spec)
    eff, src, _ = P._efficiency(tabs[("gemm", "bf16")], "gemm", {"m": 32, "n": 4096, "k": 4096})
    assert src == "interpolated" and eff == pytest.approx(0.01 * 32 ** 0.5, rel=1e-9)
    eff, _, _ = P._efficiency(tabs[("gemm", "bf16")], "gemm", {"m": 4096, "n": 4096, "k": 4096})
    assert eff == pytest.approx(0.01 * 256 ** 0.5)  # held at the edge (saturation)


def test_scaling_follows_the_hardware_table():
    # compute-bound GEMM: H100 and H200 share the tensor peak -> same time; B200 bf16 peak 2250/989.4 faster
    g200 = P.kernel_time("H200", "gemm", "bf16", m=8192, n=8192, k=8192)
    g100 = P.kernel_time("H100", "gemm", "bf16", m=8192, n=8192, k=8192)
    gb = P.kernel_time("B200", "gemm", "bf16", m=8192, n=8192, k=8192)
    assert g100.source == "scaled" and g100.time_s == pytest.approx(g200.time_s, rel=1e-6)
    assert g200.time_s / gb.time_s == pytest.approx(2250 / 989.4, rel=1e-6)
    # memory-bound op: time ~ 1 / HBM bandwidth (4.8 vs 3.35 TB/s)
    r200 = P.kernel_time("H200", "rmsnorm", "bf16", m=65536, n=7168)
    r100 = P.kernel_time("H100", "rmsnorm", "bf16", m=65536, n=7168)
    assert r100.time_s / r200.time_s == pytest.approx(4.8 / 3.35, rel=1e-6)
    # 112 of 132 SMs computing: compute-bound time x 132/112, memory-bound unchanged
    s112 = P.kernel_time("H200", "gemm", "bf16", m=8192, n=8192, k=8192, sms=112)
    assert s112.source == "scaled" and s112.time_s / g200.time_s == pytest.approx(132 / 112, rel=1e-6)
    assert P.kernel_time("H200", "rmsnorm", "bf16", m=65536, n=7168, sms=112).time_s == pytest.approx(r200.time_s)
    # launch latency does not shrink on a bigger chip: the smallest H200 time is a floor
    tiny = P.kernel_time("GB200", "rmsnorm", "bf16", m=1, n=512)
    assert tiny.time_s >= min(r.time_s for r in read_rows(str(H200 / "kernels.csv")) if r.op == "rmsnorm") * 0.999


def test_heldout_h200_shapes_within_20_percent():
    """Random shapes never in the grid (profiles/h200/heldout.csv, measured on the H200 in the same run)."""
    errs = []
    for r in read_raw(H200 / "heldout.csv"):
        if r["error"] or not r["time_s"]:
            continue
        shape = {k: (int(r[k]) if r[k].isdigit() else r[k]) for k in ("m", "n", "k", "e", "b", "s", "t", "h", "dist",
                                                                       "impl") if r[k]}
        p = P.kernel_time("H200", r["op"], r["dtype"], **shape)
        if p.source == "measured":  # a random shape that the later midpoint lattice happened to contain
            continue
        errs.append(abs(p.time_s / float(r["time_s"]) - 1))
    assert len(errs) >= 100
    errs.sort()
    assert statistics.median(errs) <= 0.05
    within = sum(e <= 0.20 for e in errs) / len(errs)
    assert within >= 0.85, (within, errs[-8:])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="known"):
        P.kernel_time("H200", "conv2d", "bf16", m=1)
    with pytest.raises(ValueError, match="missing k"):
        P.kernel_time("H200", "gemm", "bf16", m=1, n=2)
    with pytest.raises(ValueError, match="sms must be in"):
        P.kernel_time("H200", "gemm", "bf16", m=64, n=64, k=64, sms=500)
    with pytest.raises(ValueError, match="positive"):
        P.kernel_time("H200", "gemm", "bf16", m=0, n=64, k=64)
    with pytest.raises(ValueError, match="H800"):
        P.kernel_time("A100", "gemm", "bf16", m=1, n=2, k=3)


def test_fp8_faster_than_bf16_at_v3_shapes():
    for m, n, k in ((4096, 7168, 2048), (4096, 4096, 7168), (16384, 24576, 1536)):
        f8 = P.kernel_time("H200", "gemm", "fp8", m=m, n=n, k=k)
        b16 = P.kernel_time("H200", "gemm", "bf16", m=m, n=n, k=k)
        assert 1.2 < b16.time_s / f8.time_s < 2.0  # measured 1.5-1.7x; the peak ratio is 2


def test_skewed_expert_load_predicted_from_uniform_groups():
    from dsv3sim.profile.ops import tokens_per_expert
    n = 0
    for r in read_rows(str(H200 / "kernels.csv")):
        if r.op == "grouped_gemm" and r.get("dist") == "zipf":
            s = dict(r.shape)
            toks = tokens_per_expert(s["e"], s["m"], "zipf")
            p = P.kernel_time("H200", "grouped_gemm", r.dtype, tokens=toks, n=s["n"], k=s["k"], impl=s["impl"])
            assert p.flops == pytest.approx(r.flops, rel=1e-6)
            assert 0.75 < p.time_s / r.time_s < 1.1, (s, p.time_s, r.time_s)
            n += 1
    assert n >= 10
    uni = P.kernel_time("H200", "grouped_gemm", "bf16", tokens=[64] * 8, n=4096, k=7168)
    assert uni.time_s == P.kernel_time("H200", "grouped_gemm", "bf16", e=8, m=64, n=4096, k=7168).time_s
