"""The shared input checks and the CLI's argparse types: one-line refusals, limits that can be raised."""

from __future__ import annotations

import argparse
import datetime

import pytest
import yaml

from dsv3sim.cli import main
from dsv3sim.commands import _args as A
from dsv3sim.config import checks as ck
from dsv3sim.config.errors import ConfigError
from dsv3sim.config.topology import load_topology_config


@pytest.mark.parametrize("v", [None, "3", [3], True, 2.5, float("nan"), float("inf"), datetime.date(2024, 1, 1)])
def test_integer_refuses_non_integers(v):
    with pytest.raises(ConfigError, match="n_nodes") as ei:
        ck.integer(v, "n_nodes")
    assert "\n" not in str(ei.value)


def test_integer_and_number_ranges():
    assert ck.integer(4.0, "x") == 4 and ck.integer(7, "x", lo=1) == 7
    with pytest.raises(ConfigError, match=">= 1"):
        ck.integer(0, "x", lo=1)
    assert ck.number(0.5, "f", lo=0, lo_open=True, hi=1) == 0.5
    for bad in (0, 1.5, float("nan"), "0.5", None):
        with pytest.raises(ConfigError, match="f"):
            ck.number(bad, "f", lo=0, lo_open=True, hi=1)


def test_limits_named_and_raisable(monkeypatch):
    with pytest.raises(ConfigError, match=r"size limit gpus=131,072.*--limit gpus=N"):
        ck.check_limit("gpus", 10**8, "n_nodes x gpus_per_node")
    monkeypatch.setenv(ck.LIMITS_ENV, "gpus=1000000000")
    ck.check_limit("gpus", 10**8, "n_nodes x gpus_per_node")
    with pytest.raises(ConfigError, match="NAME=N"):
        ck.parse_limits("nope=3")
    with pytest.raises(ConfigError, match="positive integer"):
        ck.parse_limits("gpus=nan")


def _topo(tmp_path, **changes):
    with open("topologies/h800-deepseek.yaml") as f:
        raw = yaml.safe_load(f)
    raw.pop("n_gpus", None)
    for k, v in changes.items():
        d = raw
        *head, last = k.split(".")
        for h in head:
            d = d[h]
        d[last] = v
    p = tmp_path / "t.yaml"
    p.write_text(yaml.dump(raw, Dumper=yaml.SafeDumper))
    return p


@pytest.mark.parametrize(("field", "value", "match"), [
    ("n_nodes", 2.5, "n_nodes must be an integer"), ("n_nodes", None, "n_nodes must be an integer"),
    ("n_nodes", 10**8, "size limit gpus"), ("nic.latency_us", float("nan"), "latency_us must be a finite"),
    ("nic.latency_us", float("inf"), "latency_us must be a finite"), ("scale_up.bandwidth_GBps", [1], "must be a number"),
    ("fabric.oversubscription", "2", "must be a number"), ("kernel_latency_us", datetime.date(2024, 1, 1), "number"),
    ("sources", 3, "list of strings"), ("fabric", [1], "must be a mapping"),
])
def test_topology_fields_refused(tmp_path, field, value, match):
    with pytest.raises(ConfigError, match=match):
        load_topology_config(_topo(tmp_path, **{field: value}))


def test_topology_limit_lowered_and_raised_by_flag(tmp_path, capsys, monkeypatch):
    p = _topo(tmp_path, n_nodes=4)
    argv = ["comm", "--topology", str(p), "--kind", "dispatch", "--ep", "16", "--tokens-per-rank", "8", "--json"]
    assert main(["--limit", "gpus=16", *argv]) == 2 and "--limit gpus=N" in capsys.readouterr().err
    monkeypatch.setenv(ck.LIMITS_ENV, "gpus=16")
    assert main(argv) == 2
    assert main(["--limit", "gpus=32", *argv]) == 0


@pytest.mark.parametrize(("fn", "text"), [(A.pos_int, "0"), (A.pos_int, "2.5"), (A.pos_float, "nan"),
                                          (A.pos_float, "inf"), (A.fraction, "1.5"), (A.threads, "0"),
                                          (A.nonneg_float, "-1")])
def test_arg_types_refuse(fn, text):
    with pytest.raises(argparse.ArgumentTypeError):
        fn(text)


def test_out_path_refuses_directories(tmp_path):
    with pytest.raises(argparse.ArgumentTypeError, match="directory"):
        A.out_path(str(tmp_path))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="not a folder"):
        A.out_path(str(f / "out.json"))
    assert A.out_path(str(tmp_path / "new" / "out.json"))


def test_cli_one_line_errors(tmp_path, capsys):
    cases = [["stats", "tiny", "--gpu-memory-GiB", "0"], ["schedule", "1f1b", "--pp", "4", "--microbatches", "1000000"],
             ["comm", "--topology", "h800-deepseek", "--kind", "dispatch", "--ep", "8", "--tokens-per-rank",
              "10000000"], ["run", "scenarios/deepseek_v3_serving.py:prefill", "--json", str(tmp_path)],
             ["report", "model/tiny.json", "--out", str(tmp_path / "r.html")]]
    for argv in cases:
        with pytest.raises(SystemExit) if argv[0] in ("stats", "run") else _nothing():
            rc = main(argv)
            assert rc == 2, argv
        err = capsys.readouterr().err
        assert sum("error:" in ln for ln in err.splitlines()) == 1, (argv, err)


def test_dualpipe_too_few_microbatches_is_infeasible(capsys):
    assert main(["schedule", "dualpipe", "--pp", "4", "--microbatches", "4", "--json"]) == 0
    assert '"infeasible"' in capsys.readouterr().out


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_round_trip_conservation_check():
    from dsv3sim.workload.comm import check_round_trip

    ok = {"dispatch(F)": {"kind": "dispatch", "tokens_dispatched": 96}, "combine(F)": {"kind": "combine",
                                                                                      "tokens_combined": 96}}
    check_round_trip(ok)
    check_round_trip({"dispatch(F)": {"kind": "dispatch", "method": "busiest-link bound"}})
    with pytest.raises(AssertionError, match="token conservation"):
        check_round_trip({**ok, "combine(F)": {"kind": "combine", "tokens_combined": 95}})
