"""`validate --fp8` means FP8 compute and FP8 dispatch (`--fp8-dispatch-only` the dispatch alone): the built
model parts carry the FP8 flags, and the GPU comparison uses the tables' FP8 GEMMs. CPU, no job launched."""

from __future__ import annotations

import argparse

import pytest

from dsv3sim.commands.validate import add_arguments, make_spec
from dsv3sim.config import load_model_config


def _spec(*flags: str):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return make_spec(p.parse_args(["--nproc", "1", *flags]), "/tmp/x")


def test_fp8_flag_switches_compute_and_dispatch():
    s = _spec("--fp8")
    assert s.fp8 and s.fp8_compute
    s = _spec("--fp8-dispatch-only")
    assert s.fp8 and not s.fp8_compute
    s = _spec()
    assert not s.fp8 and not s.fp8_compute


def test_built_parts_carry_fp8_flags():
    from dsv3sim.validate.nn_adapter import build

    cfg = load_model_config("tiny")
    for on in (True, False):
        parts = build(cfg, 0, fp8=on)
        moe = next(b for b in parts.blocks if b.is_moe)
        assert moe.expert_slice(0, 2).fp8 is on
        flags = [m.fp8 for b in parts.blocks for m in b.attn.modules() if hasattr(m, "fp8")]
        assert flags and all(f is on for f in flags)


def test_tables_use_fp8_gemms_with_fp8_compute():
    pytest.importorskip("dsv3sim.workload.layer_ops")
    from dsv3sim.validate.gpu_tables import compare_to_tables
    from dsv3sim.validate.spec import RunSpec

    cfg = load_model_config("one-layer")
    comp = {"attn(F)": 1e-3, "gate(F)": 1e-4, "mlp(F)": 2e-3, "shared(F)": 1e-4, "attn(B)": 2e-3, "mlp(B)": 4e-3,
            "shared(B)": 2e-4, "head(F)": 5e-4}
    train = [{"rank": 0, "tokens_per_mb": 4096, "microbatches": 1, "n_stages": 1, "stages": {"0": [0]},
              "routing": {"0": [{"step": 1, "mb": 0, "send_rows": [32768], "expert_rows": [128] * 256,
                                 "tokens": 4096}]}, "component_s_per_step": comp}]
    out = {}
    for fp8 in (False, True):
        spec = RunSpec(job="train", model="one-layer", nproc=1, device="cpu", seq_len=1024, micro_batch=4,
                       fp8=fp8, fp8_compute=fp8)
        out[fp8] = compare_to_tables(cfg, spec, train, "H200")
    assert out[False]["gemm_dtype"] == "bf16" and out[True]["gemm_dtype"] == "fp8"
    attn = lambda c: next(r for r in c["rows"] if r["name"] == "attn(F)")["table_s"]
    assert attn(out[True]) < attn(out[False])  # the FP8 tables' projection GEMMs are faster


@pytest.mark.parametrize(("model", "ep"), [("one-layer", 1), ("tiny", 2)])
def test_calibrated_requant_quantises_the_weights_the_tables_price(model, ep):
    """The calibration's re-quantisation stand-ins (validate/requant.py) are this rank's FP8 weights: as many
    elements as the tables' requant row prices (gpu_tables.fp8_weight_elements), gate and up as one operand."""
    import math

    from dsv3sim.validate.components import rank_fp8_operands
    from dsv3sim.validate.gpu_tables import fp8_weight_elements
    from dsv3sim.validate.nn_adapter import build
    from dsv3sim.validate.spec import RunSpec

    cfg = load_model_config(model)
    spec = RunSpec(job="train", model=model, nproc=ep, ep=ep, fp8=True, fp8_compute=True)
    ops = rank_fp8_operands(build(cfg, 0, fp8=True), cfg, spec, 0)
    local = cfg.n_routed_experts // ep
    assert sum(math.prod(s) for o in ops for s in o) == fp8_weight_elements(
        cfg, [(i, local) for i in range(cfg.num_hidden_layers)])
    assert sum(len(o) == 2 for o in ops) == sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))
