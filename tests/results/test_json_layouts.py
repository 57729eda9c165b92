"""``load_json`` / ``split_results`` read back every layout ``save_json`` writes: one result, a study nested by
scenario name, a list of results (a sweep), and refuse what is not a result file."""

from __future__ import annotations

import pytest

from dsv3sim.config.errors import ConfigError
from dsv3sim.results import Infeasible, load_json, save_json, split_results

A = Infeasible(scenario="a", kind="training", reason="does not fit")
B = Infeasible(scenario="b", kind="decode", reason="no GPUs")


def test_one_result_round_trips(tmp_path):
    data = load_json(save_json(A, tmp_path / "a.json"))
    assert data == A.to_dict() and split_results(data) == [("", data)]


def test_a_study_splits_by_scenario_name(tmp_path):
    data = load_json(save_json({"first": A, "second": B}, tmp_path / "s.json"))
    assert split_results(data) == [("first", A.to_dict()), ("second", B.to_dict())]
    assert load_json({"first": A, "second": B}) == data  # Result objects in memory read the same
    assert split_results(data, "second") == [("second", B.to_dict())]
    with pytest.raises(ConfigError, match="'third' is not in this result .scenarios: first, second"):
        split_results(data, "third")


def test_a_list_is_a_sweep(tmp_path):
    data = load_json(save_json([A, B], tmp_path / "l.json"))
    assert data == {"sweep": [A.to_dict(), B.to_dict()]} and split_results(data) == [("", data)]
    assert load_json([A, B]) == data


def test_not_a_result_file(tmp_path):
    (bad := tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_json(bad)
    bad.write_text("3")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_json(bad)
    with pytest.raises(FileNotFoundError):
        load_json(tmp_path / "missing.json")
    mixed = {"a": A.to_dict(), "config": {"model_type": "x"}}  # not every entry a result: one result, not a study
    assert split_results(mixed) == [("", mixed)]
