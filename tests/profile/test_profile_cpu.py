"""The profiler end to end on this CPU (same code path as on the GPU, minus CUDA graphs), the FP8 quantisers,
and the kernel-time CLI."""

from __future__ import annotations

import json

import pytest
import torch

from dsv3sim.cli import main
from dsv3sim.nn import fp8 as fp8m
from dsv3sim.profile.predict import kernel_time
from dsv3sim.profile.table import read_raw


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_profile_cli_writes_a_table_the_predictor_reads(tmp_path, capsys):
    out = tmp_path / "kernels.csv"
    rc = main(["profile", "tiny", "--device", "cpu", "--grid", "quick", "--dtypes", "bf16", "--ops",
               "gemm,rmsnorm,attn_decode", "--out", str(out)])
    assert rc == 0
    rows = read_raw(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["device"] == "cpu" and meta["n_measured"] == len(rows) and meta["n_errors"] == 0
    g = [r for r in rows if r["op"] == "gemm"]
    assert len(g) == 12 and all(float(r["time_s"]) > 0 for r in g)
    r = g[5]
    assert float(r["flops"]) == 2 * int(r["m"]) * int(r["n"]) * int(r["k"])
    assert float(r["tflops"]) == pytest.approx(float(r["flops"]) / float(r["time_s"]) / 1e12)
    p = kernel_time("cpu", "gemm", "bf16", m=int(r["m"]), n=int(r["n"]), k=int(r["k"]), table=str(out), base="cpu")
    assert p.source == "measured" and p.time_s == float(r["time_s"])
    p = kernel_time("cpu", "gemm", "bf16", m=8, n=256, k=384, table=str(out), base="cpu")
    assert p.source == "interpolated"


def test_fp8_quantisers_round_trip_within_e4m3_precision():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 256, generator=g) * torch.logspace(-3, 3, 256)  # a wide dynamic range per row
    q, s = fp8m.quantize_1x128(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (8, 2)
    rel = ((fp8m.dequantize(q, s, 1) - x).abs() / x.abs().clamp_min(1e-30))
    big = x.abs() >= x.view(8, 2, 128).abs().amax(-1).repeat_interleave(128, 1) / 64  # normal range of E4M3
    assert rel[big].max() <= 2 ** -4 + 1e-6  # 3 mantissa bits: half an ulp is 2^-4
    w = torch.randn(200, 384, generator=g)  # ragged N (200 = 128 + 72)
    wq, ws = fp8m.quantize_128x128(w)
    assert wq.shape == (200, 384) and ws.shape == (2, 3)
    assert ((fp8m.dequantize(wq, ws, 128) - w).norm() / w.norm()) < 0.04


def test_emulated_fp8_gemm_matches_bf16_reference():
    g = torch.Generator().manual_seed(2)
    a, w = torch.randn(64, 256, generator=g), torch.randn(128, 256, generator=g)
    aq, sa = fp8m.quantize_1x128(a)
    wq, sw = fp8m.quantize_128x128(w)
    out = fp8m.fp8_gemm(aq, sa, wq, sw, b_block=True, out_dtype=torch.float32)
    ref = a @ w.t()
    assert ((out - ref).norm() / ref.norm()).item() < 0.05


def test_kernel_time_cli_json(capsys):
    assert main(["kernel-time", "--gpu", "H800", "--op", "gemm", "--m", "4096", "--n", "7168", "--k", "2048",
                 "--dtype", "fp8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["source"] == "scaled" and d["time_s"] > 0 and d["tflops"] == pytest.approx(
        2 * 4096 * 7168 * 2048 / d["time_s"] / 1e12)
    assert main(["kernel-time", "--gpu", "H200", "--op", "attn_decode", "--b", "8", "--t", "4096", "--h", "128"]) == 0
    text = capsys.readouterr().out
    assert "time_s" in text and "tflops" in text and "source" in text
    assert main(["kernel-time", "--gpu", "nope", "--op", "gemm", "--m", "1", "--n", "1", "--k", "1"]) == 2


def test_kernel_time_impl_reads_the_model_kernels_rows(capsys):
    """--impl nn.gluon answers from the executable model's own grouped FP8 kernel's rows (kernels-fp8nn.csv): the
    measured time at a measured shape; the default (loop: cuBLAS per expert) is another table; a bad --impl, or
    --impl off grouped_gemm, is one error line and exit 2."""
    import csv

    from dsv3sim.profile.table import PROFILES_DIR

    rows = [r for r in csv.DictReader((PROFILES_DIR / "h200" / "kernels-fp8nn.csv").open()) if r["impl"] == "nn.gluon"]
    r = rows[0]
    shape = ["--e", r["e"], "--m", r["m"], "--n", r["n"], "--k", r["k"]]
    base = ["kernel-time", "--gpu", "H200", "--op", "grouped_gemm", "--dtype", "fp8", *shape, "--json"]
    assert main([*base, "--impl", "nn.gluon"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["source"] == "measured" and d["time_s"] == pytest.approx(float(r["time_s"]))
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["time_s"] != d["time_s"]
    assert main([*base, "--impl", "nope"]) == 2
    assert "--impl nope" in capsys.readouterr().err
    assert main(["kernel-time", "--gpu", "H200", "--op", "gemm", "--m", "8", "--n", "8", "--k", "8", "--impl",
                 "loop"]) == 2


def test_ragged_k_quantises_with_a_zero_padded_last_tile():
    x = torch.randn(4, 200, generator=torch.Generator().manual_seed(3))
    q, s = fp8m.quantize_1x128(x)
    assert q.shape == (4, 200) and s.shape == (4, 2)
    assert ((fp8m.dequantize(q, s, 1) - x).norm() / x.norm()) < 0.04


def test_resume_skips_the_point_that_killed_the_previous_process(tmp_path):
    """A CUDA illegal address kills the process; --resume writes that point as an error row and goes on."""
    from dsv3sim.profile.run import run

    out = tmp_path / "k.csv"
    run("tiny", "cpu", "quick", out, dtypes=("bf16",), only_ops={"gemm"})
    full = read_raw(out)
    # pretend a process died while measuring point 2 after writing rows 0 and 1
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]))
    out.with_suffix(".cur").write_text("2")
    run("tiny", "cpu", "quick", out, dtypes=("bf16",), only_ops={"gemm"}, resume=True)
    rows = read_raw(out)
    assert len(rows) == len(full)
    assert rows[2]["error"].startswith("ProcessCrashed") and not rows[2]["time_s"]
    assert [(r["m"], r["n"], r["k"]) for r in rows] == [(r["m"], r["n"], r["k"]) for r in full]
    assert all(r["time_s"] for i, r in enumerate(rows) if i != 2)
    assert not out.with_suffix(".cur").exists()
