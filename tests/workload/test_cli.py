"""`dsv3sim run` and `dsv3sim sweep` end to end on a small scenario file; infeasible sweep points are kept."""
from __future__ import annotations

import json
import textwrap

import pytest

from dsv3sim.cli import main
from dsv3sim.workload.sweep import apply, grid, parse_grid, run_sweep, split_row, sweep_axes

SCENARIO = textwrap.dedent('''
    from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

    def small():
        return Scenario(name="small", model="deepseek-v2-lite", topology="h800-deepseek",
                        parallel=ParallelDims(pp=2, dp=16, ep=16), comm_model="bound",
                        workload=TrainingWorkload(global_batch_sequences=64, seq_len=256, node_limit=2))

    def two():
        s = small()
        return {"a": s, "b": s.with_(name="small-ib2", perturb=dict(nic_bandwidth_scale=2.0))}

    DEFAULT = small
''')


def test_run_writes_json_and_trace(tmp_path, capsys):
    f = tmp_path / "sc.py"
    f.write_text(SCENARIO)
    out, tr = tmp_path / "r.json", tmp_path / "t.json"
    assert main(["run", str(f), "--json", str(out), "--chrome-trace", str(tr)]) == 0
    d = json.loads(out.read_text())
    for k in ("step_time_s", "breakdown_s", "mfu", "tokens_per_s", "gpu_hours_per_trillion_tokens", "memory_per_gpu",
              "ib_utilisation", "nvlink_utilisation", "exposed_communication_s", "link_utilisation", "timeline",
              "expert_load_before", "expert_load_after", "nodes_per_token"):
        assert k in d, k
    t = json.loads(tr.read_text())
    assert any(e.get("name") == "dispatch(F)" for e in t["traceEvents"])
    assert "step s" in capsys.readouterr().out
    out2 = tmp_path / "r2.json"
    assert main(["run", f"{f}:two", "--json", str(out2)]) == 0
    d2 = json.loads(out2.read_text())
    assert set(d2) == {"small", "small-ib2"}  # nested by scenario name


def test_run_unknown_function_is_a_clean_error(tmp_path):
    f = tmp_path / "sc.py"
    f.write_text(SCENARIO)
    assert main(["run", f"{f}:nope"]) == 2


def test_sweep_keeps_infeasible_rows(tmp_path):
    import importlib.util

    f = tmp_path / "sc.py"
    f.write_text(SCENARIO)
    sp = importlib.util.spec_from_file_location("sc_mod", f)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    axes = parse_grid(["parallel.ep=8,12", "workload.node_limit=1,2"])
    pts = grid(axes)
    assert len(pts) == 4 and apply(mod.small(), pts[0]).parallel.ep == 8
    rows = run_sweep(mod.small(), pts, workers=1)
    bad = [r for r in rows if r.get("infeasible")]
    assert len(bad) == 2 and all("ep=12" in r["infeasible"] for r in bad)
    good = [r for r in rows if not r.get("infeasible")]
    assert all(r["step_time_s"] > 0 and "breakdown.bubble_s" in r for r in good)
    flat = [split_row(r) for r in rows]  # read back as the report does: the grid's axes and nothing else vary
    assert sweep_axes(rows, flat) == (["parallel.ep", "workload.node_limit"], ["parallel.ep", "workload.node_limit"])
    assert flat[0][0] == {**pts[0], "comm_model": "bound", "n_gpus": 32}  # the name (over 40 characters) is no column
    assert [bool(r) for *_, r in flat] == [bool(r.get("infeasible")) for r in rows]
    assert flat[0][1]["step_time_s"] == good[0]["step_time_s"] and "sim_wall_s" not in flat[0][1]


@pytest.mark.slow
def test_run_default_is_v3_pretraining(tmp_path):
    out = tmp_path / "v3.json"
    assert main(["run", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["scenario"] == "deepseek-v3-pretrain" and d["n_gpus"] == 2048
    assert d["validation"]["rows"][0]["published"] == 180_000.0
