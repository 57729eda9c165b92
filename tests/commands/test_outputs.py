"""What a newcomer sees: JSON alone on stdout, outputs where the checkout stays clean and said where, the GPU /
topology pairing said, trace names that round-trip, HBM in GB, the version, the bottleneck sentence."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from dsv3sim.cli import main

SCENARIO = textwrap.dedent('''
    from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

    def small(gpu=None):
        return Scenario(name="small", model="deepseek-v2-lite", topology="h800-deepseek", gpu=gpu,
                        parallel=ParallelDims(pp=2, dp=16, ep=16), comm_model="bound",
                        workload=TrainingWorkload(global_batch_sequences=64, seq_len=256, node_limit=2))

    def h100():
        return small("H100")

    def b200():
        return small("B200")

    DEFAULT = small
''')


@pytest.fixture
def scenario(tmp_path):
    f = tmp_path / "sc.py"
    f.write_text(SCENARIO)
    return f


def test_print_json_is_alone_on_stdout(scenario, capsys):
    assert main(["run", str(scenario), "--print-json"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)  # the whole of stdout parses
    assert d["scenario"] == "small" and "step s" in err and "limits the step" in err
    assert main(["run", str(scenario), "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["scenario"] == "small" and "wrote" not in out


def test_default_outputs_go_to_ignored_reports_and_are_named(scenario, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(scenario)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "reports" / "small.json").exists() and (tmp_path / "reports" / "small.html").exists()
    assert "wrote reports/small.html" in out and "git-ignored" in out and "open reports/small.html" in out
    assert main(["run", str(scenario), "--no-report"]) == 0
    assert "nothing written" in capsys.readouterr().out
    j = tmp_path / "only.json"
    assert main(["run", str(scenario), "--json", str(j)]) == 0  # an explicit path writes only that
    out = capsys.readouterr().out
    assert f"dsv3sim report {j}" in out and not (tmp_path / "reports" / "only.html").exists()


def test_gitignore_keeps_generated_reports_out_of_the_checkout():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    lines = (root / ".gitignore").read_text().splitlines()
    assert "/reports/*" in lines and "!/reports/examples/" in lines
    assert (root / "reports" / "examples" / "deepseek-v3-pretrain.html").exists()


def test_gpu_on_another_gpus_topology_is_said(scenario, capsys):
    assert main(["run", f"{scenario}:h100", "--print-json"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert any("network" in n and "comes from the topology" in n for n in d["notes"])
    assert "warning" not in err
    assert main(["run", f"{scenario}:b200", "--print-json"]) == 0
    out, err = capsys.readouterr()
    assert "warning: inconsistent pairing: B200 (sm100) on a network built for H800 (sm90)" in err
    assert any(n.startswith("warning") for n in json.loads(out)["notes"])


def test_pairing_notes_are_empty_for_the_topologys_own_gpu():
    from dsv3sim.config.pairing import gpu_topology_notes

    assert gpu_topology_notes("h800-deepseek", None) == [] and gpu_topology_notes("h800-deepseek", "h800") == []
    (note,) = gpu_topology_notes("h800-deepseek", "H200")
    assert note.level == "note" and "200 GB/s" in note.text  # the topology's NVLink, not the H200's 450


def test_trace_out_without_suffix_round_trips(tmp_path, capsys):
    out = tmp_path / "d" / "trace"
    assert main(["trace", "synth", "--layers", "2", "--experts", "8", "--topk", "2", "--tokens", "256",
                 "--out", str(out)]) == 0
    assert f"wrote {out}.npz" in capsys.readouterr().out and (tmp_path / "d" / "trace.npz").exists()
    assert main(["trace", "stats", str(out), "--json"]) == 0  # the name the user gave finds the archive
    assert json.loads(capsys.readouterr().out)["n_experts"] == 8
    raw = tmp_path / "noext"
    raw.write_bytes((tmp_path / "d" / "trace.npz").read_bytes())
    assert main(["trace", "stats", str(raw), "--json"]) == 0  # no suffix at all: recognised by content
    assert json.loads(capsys.readouterr().out)["n_layers"] == 2


def test_stats_hbm_in_decimal_gb(capsys):
    assert main(["stats", "deepseek-v3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["gpu_memory_bytes"] == 141e9  # H200: 141 GB (not GiB)
    kv = d["kv_cache_bytes_per_token"]
    assert d["max_batch_per_gpu_memory"]["4096"] == int(141e9 // kv) // 4096
    assert main(["stats", "deepseek-v3", "--gpu-memory-GiB", "141", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_memory_bytes"] == 141 * 2 ** 30
    assert main(["stats", "deepseek-v3"]) == 0
    assert "H200 141 GB (131.3 GiB)" in capsys.readouterr().out


def test_stats_counts_read_to_a_thousandth_of_their_prefix(capsys):
    """The stats table's counts keep three decimals (not the reports' three significant digits)."""
    assert main(["stats", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^params total +671\.026 G$", out, re.M)
    assert re.search(r"^params as on the Hub \(.*\) +684\.490 G$", out, re.M)
    assert main(["stats", "tiny"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  norms +1\.536 K$", out, re.M) and re.search(r"^train FLOPs .* +20\.488 MFLOP$", out, re.M)


def test_version(capsys):
    from dsv3sim import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dsv3sim {__version__}"


def test_no_bars_off_a_terminal():
    from dsv3sim.commands._progress import bars_wanted, progress

    assert not bars_wanted(False) and not bars_wanted(True)  # pytest's stderr is not a tty
    with progress(3, "x", enabled=False) as bar:
        bar.step("y")


def test_a_bar_draws_on_stderr_only(capsys):
    from dsv3sim.commands._progress import progress

    with progress(2, "work", enabled=True) as bar:
        bar.step("half")
        bar.describe("more")
        bar.step()
    out, _err = capsys.readouterr()
    assert out == ""
