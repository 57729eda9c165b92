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
