"""Hardware table: every figure sourced, lookups, and peaks that agree with clock x SMs x FLOP/clk."""

from __future__ import annotations

import pytest

from dsv3sim.config.hardware import GPUS, get_gpu, known_gpus


def test_known_names_and_aliases():
    for name in ("H800", "H100", "H200", "B200", "GB200", "cpu"):
        assert get_gpu(name).name == name
    assert get_gpu("nvidia h200").name == "H200"
    assert get_gpu("h100-sxm").name == "H100"
    with pytest.raises(ValueError, match="H800"):
        get_gpu("A100")


def test_every_figure_has_a_source():
    for spec in GPUS.values():
        for key in ("peak_flops", "hbm_bytes", "hbm_bandwidth", "n_sms", "nvlink_bandwidth", "nic_bandwidth",
                    "sm_clock"):
            assert spec.sources[key], (spec.name, key)


def test_hopper_peak_is_sms_times_clock_times_4096():
    # Hopper whitepaper: 4096 dense BF16 FLOP/clk/SM; datasheet 989.4 TFLOP/s at 132 SMs and 1.83 GHz.
    for name in ("H800", "H100", "H200"):
        g = get_gpu(name)
        assert g.peak("bf16") == pytest.approx(g.n_sms * 4096 * g.sm_clock, rel=2e-3)
        assert g.peak("fp8") == pytest.approx(2 * g.peak("bf16"), rel=1e-3)


def test_deepseek_h800_links():
    g = get_gpu("H800")  # DeepSeek-V3 report §3.2.2: NVLink 160 GB/s, IB 50 GB/s, 3.2x
    assert g.nvlink_bandwidth / g.nic_bandwidth == pytest.approx(3.2)
    assert get_gpu("H200").hbm_bandwidth / get_gpu("H100").hbm_bandwidth == pytest.approx(4.8 / 3.35)
    assert set(known_gpus()) >= {"H800", "H100", "H200", "B200", "GB200"}
    with pytest.raises(ValueError, match="known"):
        get_gpu("H200").peak("int4")
