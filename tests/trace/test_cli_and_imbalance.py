"""`dsv3sim trace` end to end in-process, and the training-imbalance series (written and read back)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsv3sim.cli import main
from dsv3sim.trace.imbalance import MAX_FILE_BYTES, imbalance_from_files, imbalance_series, series_of, series_under


def test_synth_stats_export_round_trip(tmp_path, capsys):
    t = tmp_path / "s.npz"
    assert main(["trace", "synth", "--experts", "32", "--topk", "8", "--tokens", "1000", "--ep", "16",
                 "--gpus-per-node", "4", "--node-limit", "2", "--hidden", "7168", "--out", str(t)]) == 0
    capsys.readouterr()
    assert main(["trace", "stats", str(t), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["max_nodes_per_token"] <= 2 and st["node_limit"] == 2 and st["node_limit_respected"]
    assert st["comm"]["hidden"] == 7168 and st["comm"]["dispatch_message_bytes"] == 7392
    e = tmp_path / "e.json"
    assert main(["trace", "export-eplb", str(t), "--out", str(e)]) == 0
    capsys.readouterr()
    assert main(["trace", "stats", str(e), "--json"]) == 0
    st2 = json.loads(capsys.readouterr().out)
    assert st2["expert_load"] == st["expert_load"]
    assert st2["expert_load_max_over_mean"] == st["expert_load_max_over_mean"]
    assert main(["trace", "stats", str(t)]) == 0  # the table renders


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["trace", "synth", "--ep", "8", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--gpus-per-node" in capsys.readouterr().err
    assert main(["trace", "synth", "--experts", "16", "--ep", "3", "--gpus-per-node", "1",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "divisible" in capsys.readouterr().err


def _fake_run(balance, loads_per_step):
    return {"balance": balance, "config": "tiny", "seed": 0,
            "history": [{"step": i, "loss": 5.0 - i, "expert_load": l} for i, l in enumerate(loads_per_step)]}


def test_imbalance_series(tmp_path):
    balanced = [[[10, 10, 10, 10], [10, 10, 10, 10]]] * 3
    skewed = [[[40, 0, 0, 0], [10, 10, 10, 10]], [[20, 20, 0, 0], [10, 10, 10, 10]]]
    s = imbalance_series(_fake_run("aux-free", balanced))
    assert s["max_over_mean_worst"] == [1.0, 1.0, 1.0] and s["label"] == "aux-free"
    s = imbalance_series(_fake_run("none", skewed))
    assert s["max_over_mean_by_layer"] == [[4.0, 1.0], [2.0, 1.0]]
    assert s["max_over_mean_worst"] == [4.0, 2.0] and s["max_over_mean_mean"] == [2.5, 1.5]
    assert s["final_max_over_mean_worst"] == 2.0 and s["loss"] == [5.0, 4.0]
    # windowed: loads of steps 0..1 summed = [60,20,0,0], mean 20 -> 3.0 in layer 0
    assert s["max_over_mean_worst_windowed"] == [4.0, 3.0]
    assert imbalance_series(_fake_run("none", skewed), window=1)["max_over_mean_worst_windowed"] == [4.0, 2.0]
    # a dict layer -> counts is accepted too
    d = _fake_run("aux-loss", [{"1": [1, 3], "2": [2, 2]}])
    assert imbalance_series(d)["max_over_mean_by_layer"] == [[1.5, 1.0]]
    p = tmp_path / "r.json"
    p.write_text(json.dumps(_fake_run("none", skewed)))
    out = tmp_path / "imb.json"
    assert main(["trace", "imbalance", str(p), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["runs"][0]["step"] == [0, 1]
    assert imbalance_from_files([p])["quantity"] == "expert_load_max_over_mean"
    with pytest.raises(ValueError, match="history"):
        imbalance_series({"steps": []})
    assert np.isfinite(s["final_max_over_mean_worst"])


def test_series_of_a_train_output_equals_the_runs_file():
    """Two routes to one series: a `dsv3sim train --json` output read directly, and through the runs file."""
    run = {"balance": "aux-free", "history": [{"step": i, "expert_load": el, "expert_load_max_over_mean": 1.0}
                                              for i, el in enumerate([[[4, 4], [6, 2]], [[4, 4], [5, 3]]])]}
    direct = series_of(run)
    assert direct["aux-free"] == ([0, 1], [1.5, 1.25])  # worst layer by hand: max(1, 6/4), max(1, 5/4)
    assert direct == series_of({"quantity": "expert_load_max_over_mean", "runs": [imbalance_series(run)]})
    assert series_of({"aux-free": [3.0, 2.0]}) == {} and series_of([1, 2]) == {}  # not a shape anything writes
    assert series_of({"history": [{"step": 0, "loss": 1.0}]}) == {}  # a dense model's train output: no loads


def test_series_of_several_runs():
    runs = []
    for bal, loads in (("aux-free", [[[4, 4], [6, 2]], [[4, 4], [5, 3]]]), ("none", [[[7, 1], [4, 4]], [[8, 0], [4, 4]]])):
        runs.append(imbalance_series({"balance": bal, "history": [{"step": i, "expert_load": el}
                                                                   for i, el in enumerate(loads)]}))
    got = series_of({"quantity": "expert_load_max_over_mean", "runs": runs + [dict(runs[1], label=None)]})
    # worst layer max/mean by hand: aux-free step0 max(1, 6/4)=1.5, step1 5/4; none: 7/4, 8/4
    assert {k: v for k, v in got.items() if not k.endswith("(windowed)")} == {
        "aux-free": ([0, 1], [1.5, 1.25]), "none": ([0, 1], [1.75, 2.0]), "none (2)": ([0, 1], [1.75, 2.0])}
    assert got["none (windowed)"] == ([0, 1], [1.75, 15 / 8])  # loads summed over both steps: 15 of 16 on one


def test_series_under_a_folder(tmp_path):
    run = _fake_run("none", [[[3, 1]], [[2, 2]]])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bare.json").write_text(json.dumps(run))  # read only when it names the quantity, as
    run["history"][0]["expert_load_max_over_mean"] = 1.5  # `dsv3sim train --json` does per step
    (tmp_path / "a" / "train.json").write_text(json.dumps(run))
    (tmp_path / "b.json").write_text(json.dumps(imbalance_from_files([tmp_path / "a" / "train.json"])))
    (tmp_path / "c.json").write_text(json.dumps({"expert_load_max_over_mean": 2.0}))  # named, but no series
    (tmp_path / "d.json").write_text("{not json expert_load_max_over_mean")
    (tmp_path / "e.json").write_text(json.dumps({"runs": []}) + " " * MAX_FILE_BYTES)  # too large to read
    series, used = series_under(tmp_path)
    assert used == ["train.json", "b.json"]  # sorted by path: a/train.json before b.json
    assert series["none"] == series["none (b)"] == ([0, 1], [1.5, 1.0])
    assert set(series) == {"none", "none (windowed)", "none (b)", "none (windowed) (b)"}
    assert series_under(tmp_path / "missing") == ({}, []) and series_under(None) == ({}, [])
