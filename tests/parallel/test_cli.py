"""`dsv3sim schedule` and `dsv3sim place`: JSON keys, Chrome trace, the EPLB README file, an SGLang dump."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsv3sim.cli import build_parser, main

# deepseek-ai/EPLB README example (also in test_placement.py)
README_WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                 [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
README_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]


def _run(capsys, argv) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_schedule_json_and_chrome_trace(capsys, tmp_path):
    trace = tmp_path / "dp.json"
    rc, out, _ = _run(capsys, ["schedule", "dualpipe", "--pp", "8", "--microbatches", "20", "--f", "1",
                               "--b", "2", "--w", "1", "--fb", "2.5", "--json", "--chrome-trace", str(trace)])
    assert rc == 0
    d = json.loads(out)
    for key in ("ranks", "bubble_closed_form", "bubble_simulated", "activation_memory", "param_copies",
                "makespan", "bubble_per_rank"):
        assert key in d
    assert d["bubble_closed_form"] == pytest.approx(4.5) and d["bubble_simulated"] == pytest.approx(4.5)
    assert d["activation_memory"] == 9 and d["param_copies"] == 2
    assert d["ranks"]["0"][:2] == ["F0.0", "F0.1"] and "F0.7&BW1.3" in d["ranks"]["0"]
    t = json.loads(trace.read_text())
    slices = [e for e in t["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in slices} == set(range(8))
    assert {e["cat"] for e in slices} == {"F", "B", "W", "BW", "F&B"}
    pair = next(e for e in slices if e["name"] == "F0.7&BW1.3")
    assert pair["cat"] == "F&B" and pair["dur"] == pytest.approx(2500.0)      # 2.5 ms in microseconds
    end = max(e["ts"] + e["dur"] for e in slices)
    assert end == pytest.approx(d["makespan"] * 1000)


def test_schedule_text_and_errors(capsys):
    rc, out, _ = _run(capsys, ["schedule", "1f1b", "--pp", "4", "--microbatches", "8"])
    assert rc == 0 and "bubble_closed_form: 9 ms" in out and "bubble_simulated:   9 ms" in out
    rc, _, err = _run(capsys, ["schedule", "dualpipe", "--pp", "3", "--microbatches", "12"])
    assert rc == 2 and "even pp" in err


def test_place_on_eplb_readme_json(capsys, tmp_path):
    f = tmp_path / "w.json"
    f.write_text(json.dumps({"weight": README_WEIGHT}))
    rc, out, _ = _run(capsys, ["place", "--load", str(f), "--replicas", "16", "--groups", "4", "--nodes", "2",
                               "--gpus", "8", "--json"])
    assert rc == 0
    d = json.loads(out)
    assert d["phy2log"] == README_PHY2LOG and d["policy"] == "hierarchical"
    assert set(d) >= {"log2phy", "logcnt", "gpu_load_before", "gpu_load_after"}
    rc, out, _ = _run(capsys, ["place", "--load", str(f), "--replicas", "16", "--groups", "4", "--nodes", "2",
                               "--gpus", "8"])
    lines = out.splitlines()
    assert lines[0].startswith("placement: 2 layers x 12 experts -> 16 replicas")  # the summary comes first
    assert "max/mean" in lines[1] and "layer 0: 5 6 5 7" not in out and len(lines) < 12  # maps only on request
    rc, out, _ = _run(capsys, ["place", "--load", str(f), "--replicas", "16", "--groups", "4", "--nodes", "2",
                               "--gpus", "8", "--maps"])
    assert "layer 0: 5 6 5 7 8 4 3 4 10 9 10 2 0 1 11 1" in out


def test_place_on_sglang_dump_balances(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.5, size=(3, 2, 32)).clip(max=1000)                    # [steps, layers, experts]
    f = tmp_path / "dump.pt"
    torch.save({"logical_count": torch.from_numpy(counts)}, f)
    rc, out, _ = _run(capsys, ["place", "--load", str(f), "--replicas", "40", "--groups", "4", "--nodes", "2",
                               "--gpus", "8", "--json"])
    assert rc == 0
    d = json.loads(out)
    assert d["gpu_load_after"]["max_over_mean_avg"] < d["gpu_load_before"]["max_over_mean_avg"]
    assert np.allclose(np.array(d["gpu_load_after"]["mean"]), counts.sum(0).sum(1) / 8)


def test_place_on_token_trace_reports_dispatch(capsys, tmp_path):
    from dsv3sim.trace import RoutingTrace, save_trace

    rng = np.random.default_rng(0)
    E, T, k = 32, 400, 4
    pop = rng.zipf(1.8, size=E).astype(float)
    ids = np.stack([np.stack([rng.choice(E, k, replace=False, p=pop / pop.sum()) for _ in range(T)])
                    for _ in range(2)])                                           # [L=2, T, k]
    f = save_trace(RoutingTrace(n_experts=E, layers=np.array([3, 4]), expert_ids=ids), tmp_path / "t.npz")
    rc, out, _ = _run(capsys, ["place", "--load", str(f), "--replicas", "40", "--groups", "4", "--nodes", "2",
                               "--gpus", "8", "--hidden", "1024", "--json"])
    assert rc == 0
    d = json.loads(out)
    before, after = d["dispatch"]["before"], d["dispatch"]["after"]
    assert after["slots_per_gpu_max_over_mean"] < before["slots_per_gpu_max_over_mean"]
    # GPU work after placement = EPLB's prediction (even split over replicas), up to rounding
    assert after["slots_per_gpu_max_over_mean"] == pytest.approx(
        np.mean(d["gpu_load_after"]["max_over_mean"]), rel=0.05)
    assert 0 < before["ib_sends_per_token"] <= 1 and before["max_nodes_per_token"] <= 2


def test_schedule_command_names_are_the_generators(monkeypatch, capsys):
    """`schedule`'s choices are read from dsv3sim.parallel.SCHEDULES, not a copy: a generator registered there is
    a name the command accepts and lists (the parser itself imports nothing heavy: tests/commands/test_startup.py)."""
    from dsv3sim import parallel
    from dsv3sim.commands.schedule import NAMES

    assert list(NAMES) == sorted(parallel.SCHEDULES) == ["1f1b", "dualpipe", "dualpipev", "zb1p"]
    monkeypatch.setitem(parallel.SCHEDULES, "zz-test", parallel.SCHEDULES["1f1b"])
    assert "zz-test" in NAMES and len(NAMES) == 5
    assert build_parser().parse_args(["schedule", "zz-test", "--pp", "2", "--microbatches", "2"]).name == "zz-test"
    with pytest.raises(SystemExit):
        main(["schedule", "--help"])
    assert "{1f1b,dualpipe,dualpipev,zb1p,zz-test}" in capsys.readouterr().out
