from __future__ import annotations

import pytest

from dsv3sim.config.scenario import DecodeWorkload, ParallelDims, Perturbation, Scenario, TrainingWorkload


def test_ep_must_divide_stage_gpus_names_numbers():
    with pytest.raises(ValueError, match=r"ep=48 .*128"):
        ParallelDims(pp=16, dp=128, ep=48)


def test_dualpipe_needs_even_microbatches():
    with pytest.raises(ValueError, match="even"):
        Scenario(name="x", parallel=ParallelDims(pp=4, dp=2, ep=2),
                 workload=TrainingWorkload(global_batch_sequences=6, seq_len=128))


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="schedule"):
        TrainingWorkload(schedule="gpipe")
    with pytest.raises(ValueError, match="gemm_dtype"):
        TrainingWorkload(gemm_dtype="fp4")
    with pytest.raises(ValueError, match="mtp_acceptance"):
        DecodeWorkload(mtp_acceptance=1.5)
    with pytest.raises(ValueError, match="straggler_slowdown"):
        Perturbation(straggler_slowdown=0.5)
    with pytest.raises(ValueError, match="multiple"):
        Scenario(name="x", parallel=ParallelDims(pp=1, dp=7, ep=1), workload=TrainingWorkload(global_batch_sequences=10))


def test_with_updates_nested_fields():
    s = Scenario(name="a", parallel=ParallelDims(pp=2, dp=4, ep=4), workload=TrainingWorkload(global_batch_sequences=16))
    t = s.with_(name="b", parallel={"ep": 2}, perturb={"nic_bandwidth_scale": 0.5})
    assert (t.parallel.ep, t.parallel.pp, t.perturb.nic_bandwidth_scale, s.parallel.ep) == (2, 2, 0.5, 4)
    assert t.microbatches == 16 // 4
