"""The CLI turns only user-input errors (ConfigError) into one line and exit 2; any other ValueError is a bug
and must surface as a traceback, not be disguised as bad input."""

from __future__ import annotations

import pytest

import dsv3sim.commands.stats as stats_cmd
from dsv3sim.cli import main
from dsv3sim.config.errors import ConfigError


def test_internal_value_error_is_not_exit_2(monkeypatch):
    def broken(args):
        raise ValueError("internal invariant violated")

    monkeypatch.setattr(stats_cmd, "run", broken)
    with pytest.raises(ValueError, match="internal invariant violated"):
        main(["stats", "deepseek-v3"])


def test_config_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def bad_input(args):
        raise ConfigError("--seq-len must be > 0, got -1")

    monkeypatch.setattr(stats_cmd, "run", bad_input)
    assert main(["stats", "deepseek-v3"]) == 2
    err = capsys.readouterr().err
    assert err == "dsv3sim stats: error: --seq-len must be > 0, got -1\n"


def test_real_bad_input_still_exits_2(capsys):
    assert main(["stats", "deepseek-v3", "--gpu", "NOPE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsv3sim stats: error: unknown GPU 'NOPE'") and err.count("\n") == 1
