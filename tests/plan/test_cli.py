"""CLI: plan and sweep exit codes, JSON on stdout, bad input in one line."""

from __future__ import annotations

import json

import pytest

from dsv3sim.cli import main


def test_plan_network_json(capsys, tmp_path):
    assert main(["plan", "network", "--radix", "64", "--gpus", "2048", "--json",
                 "--topology-out", str(tmp_path / "t.yaml")]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["chosen"] == "MPFT" and (tmp_path / "t.yaml").exists()
    assert "endpoints" in out.err  # the table went to stderr


def test_plan_network_bad_radix(capsys):
    assert main(["plan", "network", "--radix", "63", "--gpus", "16"]) == 2
    assert "radix" in capsys.readouterr().err


@pytest.mark.parametrize("key,hint", [("ep", "parallel.ep"), ("paralel.ep", "parallel.ep")])
def test_sweep_unknown_key_exits_2(capsys, key, hint):
    assert main(["sweep", "--set", f"{key}=32,64"]) == 2
    err = capsys.readouterr().err
    assert f"did you mean {hint}" in err and "workload.node_limit" in err and err.count("\n") == 1


def test_sweep_table_and_infeasible_row(capsys, tmp_path):
    assert main(["sweep", "--set", "parallel.ep=64,7", "--workers", "1", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "busiest-link bound" in out and "{" not in out.split("\n")[1]
    rows = json.loads((tmp_path / "s.json").read_text())["sweep"]
    assert rows[0]["cost_usd_per_trillion_tokens"] == pytest.approx(2.0 * rows[0]["gpu_hours_per_trillion_tokens"])
    assert "ep=7" in rows[1]["infeasible"] and rows[0]["comm_model"] == "bound"


def test_plan_train_bad_layout_key(capsys):
    assert main(["plan", "train", "--layout", "pipeline=4"]) == 2
    assert "keys are" in capsys.readouterr().err


def test_plan_serve_bad_load_parameter_exits_2(capsys):
    assert main(["plan", "serve", "--gpus", "8", "--peak-to-mean", "3", "--daily-input-tokens", "1e9",
                 "--daily-output-tokens", "1e9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "peak_to_mean 3.0" in err[0]
