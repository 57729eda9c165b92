"""--device cuda compares measured compute with the H200 profile tables: the table side scales with the run's
routed rows and the comparison's arithmetic is consistent (no GPU needed: synthetic measured side)."""

from __future__ import annotations

import pytest

from dsv3sim.config import load_model_config
from dsv3sim.validate.gpu_tables import compare_to_tables, gpu_name
from dsv3sim.validate.spec import RunSpec


def _train(rows: int) -> list[dict]:
    comp = {"attn(F)": 1e-3, "gate(F)": 1e-4, "mlp(F)": 2e-3, "shared(F)": 1e-4, "attn(B)": 2e-3, "mlp(B)": 4e-3,
            "shared(B)": 2e-4, "head(F)": 5e-4}
    return [{"rank": 0, "tokens_per_mb": 4096, "microbatches": 1, "n_stages": 1, "stages": {"0": [0]},
             "routing": {"0": [{"step": 1, "mb": 0, "send_rows": [rows], "expert_rows": [rows // 256] * 256,
                                "tokens": 4096}]}, "component_s_per_step": comp}]


def test_tables_scale_with_routed_rows_and_errors_add_up():
    pytest.importorskip("dsv3sim.workload.layer_ops")
    cfg = load_model_config("one-layer")
    spec = RunSpec(job="train", model="one-layer", nproc=1, ep=1, device="cpu", seq_len=1024, micro_batch=4)
    small = compare_to_tables(cfg, spec, _train(4096 * 8), "H200")
    big = compare_to_tables(cfg, spec, _train(4 * 4096 * 8), "H200")
    mlp = lambda c: next(r for r in c["rows"] if r["name"] == "mlp(F)")["table_s"]
    assert mlp(big) > 2 * mlp(small) > 0
    for r in small["rows"]:
        assert r["error"] == pytest.approx((r["table_s"] - r["measured_s"]) / r["measured_s"])
    assert small["compute_measured_s"] == pytest.approx(sum(r["measured_s"] for r in small["rows"]))
    assert gpu_name("NVIDIA H200") == "H200"
    with pytest.raises(ValueError, match="no profile tables"):
        gpu_name("Tesla K80")


def test_fp8_requant_row_prices_the_bytes_the_runs_quantiser_moves():
    """With FP8 compute and a timed ``requant`` span the table gets a requant row: the FP8 weights' elements x the
    run's bytes per parameter at the memory-bound rate; 4 B (production's one pass) is 2/3 of the two-launch
    kernel's 6 B. A run without the span (weights quantised inside mlp(F)) gets no such row."""
    from dsv3sim.validate.gpu_tables import fp8_weight_elements
    from dsv3sim.workload.kernels import MEM_EFF, gpu_perf

    cfg = load_model_config("one-layer")
    spec = RunSpec(job="train", model="one-layer", nproc=1, ep=1, device="cpu", seq_len=1024, micro_batch=4,
                   fp8=True, fp8_compute=True)
    assert "requant" not in [r["name"] for r in compare_to_tables(cfg, spec, _train(4096 * 8), "H200")["rows"]]
    rows = {}
    for b in (6.0, 4.0):
        tr = _train(4096 * 8)
        tr[0]["component_s_per_step"]["requant"] = 0.016
        tr[0]["requant_bytes_per_param"] = b
        rows[b] = next(r for r in compare_to_tables(cfg, spec, tr, "H200")["rows"] if r["name"] == "requant")
    el = fp8_weight_elements(cfg, [(0, 256)])
    assert el == 11_505_434_624  # MLA linears + shared expert + 256 experts of one-layer
    assert rows[6.0]["table_s"] == pytest.approx(6.0 * el / (gpu_perf("H200").hbm_bw * MEM_EFF))
    assert rows[4.0]["table_s"] == pytest.approx(rows[6.0]["table_s"] * 4 / 6)
    assert rows[6.0]["measured_s"] == 0.016


def test_kernel_impl_reprices_only_that_kernel_and_ops_add_up_to_the_layer_rows():
    """``kernel_impl`` prices the grouped FP8 GEMMs from another implementation's profile rows (the executable
    model's kernel) and nothing else; ``table_by_op_s`` splits the layers' table time by kernel op."""
    cfg = load_model_config("one-layer")
    spec = RunSpec(job="train", model="one-layer", nproc=1, ep=1, device="cpu", seq_len=1024, micro_batch=4,
                   fp8=True, fp8_compute=True)
    base = compare_to_tables(cfg, spec, _train(4096 * 8), "H200")
    own = compare_to_tables(cfg, spec, _train(4096 * 8), "H200", kernel_impl={("grouped_gemm", "fp8"): "nn.gluon"})
    b_ops, o_ops = base["table_by_op_s"], own["table_by_op_s"]
    assert o_ops["grouped_gemm"] != b_ops["grouped_gemm"]
    assert {k: v for k, v in o_ops.items() if k != "grouped_gemm"} == {k: v for k, v in b_ops.items()
                                                                         if k != "grouped_gemm"}
    t = {r["name"]: r["table_s"] for r in base["rows"]}
    assert t["attn(F)"] == next(r["table_s"] for r in own["rows"] if r["name"] == "attn(F)")
    assert sum(b_ops.values()) == pytest.approx(sum(v for k, v in t.items() if k != "head(F)"))
    assert b_ops["fp8_cast_fused"] > 0
