"""Real torchrun jobs (2 gloo processes): the whole `dsv3sim validate` path, and its failure paths.

Every run is bounded by the command's own limits (--timeout, --collective-timeout); the tests only check
that the result is complete (measured vs predicted, bytes, traces) or that a failure names the rank."""

from __future__ import annotations

import json
import math

import pytest

from dsv3sim.cli import main

QUICK = ["--model", "tiny", "--nproc", "2", "--seq-len", "16", "--calib-sizes", "1024,262144",
         "--calib-iters", "2", "--profile-reps", "2", "--timeout", "240", "--collective-timeout", "30"]


def test_validate_ep2_end_to_end(tmp_path, capsys):
    rep = tmp_path / "val.html"
    rc = main(["validate", *QUICK, "--ep", "2", "--steps", "2", "--fp8", "--gpus-per-node", "1",
               "--out", str(tmp_path / "run"), "--json", "--report", str(rep)])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("measured_step_s", "predicted_step_s", "error", "components", "a2a_bytes_per_rank_per_step"):
        assert k in r
    assert r["measured_step_s"] > 0 and r["predicted_step_s"] > 0 and math.isfinite(r["error"])
    assert r["error"] == pytest.approx((r["predicted_step_s"] - r["measured_step_s"]) / r["measured_step_s"])
    names = {c["name"] for c in r["components"]}
    assert {"attn(F)", "dispatch(F)", "combine(F)", "mlp(B)", "layout(B)", "optim", "requant"} <= names
    lb = next(c for c in r["components"] if c["name"] == "layout(B)")  # the gate weights' backward exchange
    assert lb["measured_s"] > 0 and lb["predicted_s"] > 0
    rq = next(c for c in r["components"] if c["name"] == "requant")  # FP8 weights re-quantised once per step
    assert rq["measured_s"] > 0 and rq["predicted_s"] > 0
    # dispatch forward bytes (FP8 rows) and its backward (BF16 grads back) both crossed the wire
    b = r["a2a_bytes_per_rank_per_step"]
    assert all(b[k]["dispatch(F)"] > 0 and b[k]["dispatch(B)"] > 0 for k in ("0", "1"))
    assert (tmp_path / "run" / "trace_rank0.json").exists() and (tmp_path / "run" / "validation.json").exists()
    assert (tmp_path / "run" / "local-cpu.calibrated.yaml").exists()
    # the prediction is dsv3sim run's on the scenario file validate wrote (same step model, same numbers)
    assert r["scenario_path"] == str(tmp_path / "run" / "scenario.py")
    assert main(["run", r["scenario_path"], "--json", "-"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["step_time_s"] == pytest.approx(r["predicted_step_s"], rel=1e-12)
    assert {"framework", "allreduce_wait", "allreduce"} <= set(sim["breakdown_s"])
    html = rep.read_text()
    assert "Validation" in html and "step time" in html


def test_pipeline_stages_time_their_all_reduce_from_their_own_latest_entry(tmp_path, capsys):
    """pp2 x ep2 on 4 processes: each stage all-reduces in its own group, so each rank's gradient all-reduce is
    timed from its own group's latest entry; timed from the world's, a stage's whole call could end before the
    other stage entered, and ranks got 0 s."""
    argv = [*QUICK[:2], "--nproc", "4", *QUICK[4:]]
    rc = main(["validate", *argv, "--pp", "2", "--ep", "2", "--microbatches", "2", "--steps", "2",
               "--allow-oversubscribe", "--out", str(tmp_path / "run"), "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["measured_step_s"] > 0 and r["predicted_step_s"] > 0
    table = json.loads((tmp_path / "run" / "components.json").read_text())
    got = {k: x["grad_sync_s"] for k, x in table["ranks"].items()}
    assert all(v > 0 for v in got.values()), got


def test_killed_rank_is_named_and_no_report(tmp_path, capsys):
    rep = tmp_path / "never.html"
    rc = main(["validate", *QUICK, "--ep", "2", "--steps", "2", "--fault", "kill:1:0", "--out", str(tmp_path / "k"),
               "--report", str(rep)])
    err = capsys.readouterr().err
    assert rc == 3
    assert "rank 1" in err and "SIGKILL" in err
    assert not rep.exists() and not list(tmp_path.glob("*.html"))


@pytest.mark.slow
def test_hung_rank_is_named_within_the_timeout(tmp_path, capsys):
    rc = main(["validate", *QUICK[:-2], "--collective-timeout", "4", "--ep", "2", "--steps", "2",
               "--fault", "hang:1:0", "--out", str(tmp_path / "h"), "--report", str(tmp_path / "h.html")])
    err = capsys.readouterr().err
    assert rc == 3
    assert "rank 1" in err and "hung" in err
    assert not (tmp_path / "h.html").exists()
