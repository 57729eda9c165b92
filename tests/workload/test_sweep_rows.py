"""Sweep rows read back (``split_row``, ``sweep_axes``): what is a parameter, a metric, an axis."""

from __future__ import annotations

from dsv3sim.workload.sweep import split_row, sweep_axes


def test_split_row():
    p, m, r = split_row({"scenario": "s[ep=8]", "params": {"ep": 8, "x": [1]}, "comm_model": "bound",
                         "step_time_s": 2.0, "n_gpus": 8, "ib_utilisation": 0.5, "sim_wall_s": 0.1, "mfu": "0.25"})
    assert p == {"scenario": "s[ep=8]", "ep": 8, "comm_model": "bound", "n_gpus": 8}
    assert m == {"step_time_s": 2.0, "ib_utilisation": 0.5, "mfu": 0.25}  # a number written as text is a number
    assert r is None
    assert split_row({"params": {"ep": 128}, "infeasible": "does not fit"}) == ({"ep": 128}, {}, "does not fit")
    note = "x" * 41  # a long string (a note, a source) is neither a parameter nor a metric
    assert split_row({"params": {"gpu": "H800"}, "note": note}) == ({"gpu": "H800"}, {}, None)
    assert split_row({"note": note}, max_chars=41)[0] == {"note": note}


def _flat(rows):
    return rows, [split_row(r) for r in rows]


def test_sweep_axes_of_a_grid():
    rows = [{"scenario": f"s[ep={ep},nl={nl}]", "params": {"ep": ep, "nl": nl}, "n_gpus": 64, "gpu": g,
             "step_time_s": ep * nl} for ep in (8, 16) for nl, g in ((2, "H800"), (4, "H200"))]
    varying, axes = sweep_axes(*_flat(rows))
    assert varying == ["scenario", "ep", "nl"]  # gpu varies with nl but is no grid key: it stays in the table
    assert axes == ["ep", "nl"]  # a name on every row of more than three is no x axis


def test_sweep_axes_without_params():
    """Rows without a ``params`` group (results rendered as a sweep): every column that varies."""
    rows = [{"scenario": "a", "gpu": "H800", "n_gpus": 8, "mfu": 0.3}, {"scenario": "b", "gpu": "H200", "n_gpus": 8}]
    assert sweep_axes(*_flat(rows)) == (["scenario", "gpu"], ["scenario", "gpu"])  # two rows: names chart too
    assert sweep_axes(*_flat(rows[:1])) == ([], [])
