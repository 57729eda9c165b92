"""Commands that build the executable model refuse a model larger than the device's memory before allocating."""

from __future__ import annotations

import pytest

from dsv3sim.cli import main
from dsv3sim.commands import _args as A
from dsv3sim.config import ConfigError, load_model_config
from dsv3sim.cost.params import count_params


@pytest.mark.parametrize("argv", [["train", "deepseek-v3", "--steps", "1"], ["generate", "deepseek-v3", "--tokens", "4"],
                                  ["trace", "capture", "deepseek-v3", "--tokens", "64", "--seed", "0",
                                   "--out", "unused"]])
def test_full_size_model_is_refused_in_one_line(argv, capsys, tmp_path):
    if argv[0] == "trace":
        argv[-1] = str(tmp_path / "t")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GiB to build" in err[0] and "deepseek-v3" in err[0]
    assert not (tmp_path / "t.npz").exists()


def test_bound_is_parameters_times_bytes_against_memory(monkeypatch):
    cfg = load_model_config("tiny")
    n = count_params(cfg).total_with_mtp
    monkeypatch.setattr(A, "memory_bytes", lambda dev: 16 * n)
    A.check_model_fits(cfg, "cpu", "train")  # exactly fits: 16 B/param
    monkeypatch.setattr(A, "memory_bytes", lambda dev: 16 * n - 1)
    with pytest.raises(ConfigError, match="to train"):
        A.check_model_fits(cfg, "cpu", "train")
    A.check_model_fits(cfg, "cpu", "build")  # 4 B/param still fits
