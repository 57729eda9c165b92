"""Pure pieces of the real-run validation: fits, routing limits, FP8 wire, schedules, diagnosis."""

from __future__ import annotations

import signal

import pytest
import torch

from dsv3sim.config import load_model_config
from dsv3sim.validate.alpha_beta import AlphaBeta, fit, interpolate, line_through
from dsv3sim.validate.component_table import p2p_times
from dsv3sim.validate.ep import decode, encode, route, row_bytes
from dsv3sim.validate.launch import diagnose, parse_torchrun_failures
from dsv3sim.validate.layout import Coord, coord, rank_of, stage_layers
from dsv3sim.validate.schedule import parse, plan
from dsv3sim.validate.spec import Fault, RunSpec
from dsv3sim.validate.status import RankReport

torch.set_num_threads(1)


def test_fit_recovers_exact_alpha_beta():
    truth = AlphaBeta(alpha_s=25e-6, beta_Bps=3e9)
    sizes = [1e3, 1e4, 1e5, 1e6, 1e7]
    f = fit(sizes, [truth.time(n) for n in sizes])
    assert f.alpha_s == pytest.approx(25e-6, rel=1e-6)
    assert f.beta_Bps == pytest.approx(3e9, rel=1e-6)
    assert AlphaBeta.from_dict(f.to_dict()).time(5e5) == pytest.approx(truth.time(5e5), rel=1e-9)
    with pytest.raises(ValueError, match="need >= 2"):
        fit([1.0], [2.0])


def test_line_through_two_sizes_clamps_at_zero():
    assert line_through(400.0, 2e-3 + 400 * 1e-6, 100.0, 2e-3 + 100 * 1e-6) == pytest.approx((2e-3, 1e-6))
    assert line_through(400.0, 1.0, 100.0, 3.0) == (1.0, 0.0)  # shrank with n: all per-call cost
    assert line_through(400.0, 5.0, 100.0, 1.0) == (0.0, pytest.approx(4.0 / 300))  # negative intercept: 0
    assert line_through(8.0, 2.0, 8.0, 2.0) == (0.0, 0.25)  # one size: all per-element cost


def test_interpolate_reads_the_points_not_the_fit():
    """Log-log between the two sizes around n, the smallest size's time below them, the largest one's plus the
    extra bytes over the tail's bandwidth above them; on an exact alpha-beta line the points agree with it at
    the points. A transport that is not one line (a loopback socket's 64-128 KB messages) keeps its bump."""
    tail = AlphaBeta(alpha_s=1e-4, beta_Bps=1e9)
    pts = {1024.0: 3e-4, 131072.0: 8e-4, 4194304.0: 2e-3}
    assert interpolate(pts, 65536, tail) == pytest.approx(3e-4 * (8e-4 / 3e-4) ** (6 / 7))
    assert interpolate(pts, 100, tail) == 3e-4
    assert interpolate(pts, 4194304 + 1e9, tail) == pytest.approx(2e-3 + 1.0)
    assert interpolate({}, 1e6, tail) == tail.time(1e6)
    line = {n: tail.time(n) for n in (1e3, 1e5, 1e7)}
    assert interpolate(line, 1e5, tail) == pytest.approx(tail.time(1e5))


def test_p2p_times_from_rank_zeros_pooled_sweeps():
    """The hop at the activation's size from the per-size expected ping-pong times of rank 0 (rank 1's points
    are ignored), and the notification at the smallest size; a size with fewer than three samples does not
    price a hop; nothing without two sizes that have them."""
    probe = {"points": {"p2p": [[1024, 2e-4], [1024, 4e-4], [65536, 1e-3], [65536, 1e-3]]}}
    full = {"points": {"p2p": [[1024, 3e-4], [16384, 5e-3], [65536, 1e-3]]}}  # 16 KB: one sample, not used
    other = {"points": {"p2p": [[1024, 9.0], [65536, 9.0]]}}
    calib = [{"rank": 1, "probes": [other]}, {"rank": 0, "probes": [full, probe, probe]}]
    out = p2p_times(calib, 65536)
    assert out == {"p2p_hop_s": pytest.approx(1e-3), "p2p_notify_s": pytest.approx(3e-4)}
    assert p2p_times(calib, 32768)["p2p_hop_s"] == pytest.approx(3e-4 * (1e-3 / 3e-4) ** (5 / 6))
    assert p2p_times([{"rank": 0, "probes": [{"points": {"p2p": [[1024, 1e-4]]}}]}], 65536) == {}


def test_isend_call_is_the_expected_time_over_the_probes():
    """``p2p_isend_s``: the expected ``isend`` call over every probe's calls; absent below three samples."""
    sweep = {"p2p": [[1024, 3e-4]] * 3 + [[65536, 1e-3]] * 3}
    calib = [{"rank": 0, "probes": [{"points": sweep, "p2p_isend": [1e-4, 2e-4]}, {"points": {}, "p2p_isend": [3e-4]}]}]
    assert p2p_times(calib, 65536)["p2p_isend_s"] == pytest.approx(2e-4)
    calib[0]["probes"][1]["p2p_isend"] = []
    assert "p2p_isend_s" not in p2p_times(calib, 65536)


def test_route_is_node_limited_with_the_models_gate():
    """Node-limited routing through dsv3sim.nn.routing (groups = nodes): at most M nodes per token, weights
    normalised and scaled as the model's gate does."""
    cfg = load_model_config("tiny")
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(64, cfg.hidden_size, generator=g), torch.randn(cfg.n_routed_experts, cfg.hidden_size, generator=g)
    bias = torch.randn(cfg.n_routed_experts, generator=g) * 0.1
    idx, wt = route(x, w, bias, cfg, n_nodes=4, m_nodes=2)
    per_node = cfg.n_routed_experts // 4
    assert max(len(set(r.tolist())) for r in idx // per_node) <= 2
    free = (torch.sigmoid(x @ w.T) + bias).topk(cfg.num_experts_per_tok).indices
    assert max(len(set(r.tolist())) for r in free // per_node) > 2  # the limit binds here
    assert torch.allclose(wt.sum(-1), torch.full((64,), cfg.routed_scaling_factor), atol=1e-5)


@pytest.mark.parametrize("wire", ["fp8", "bf16", "native"])
def test_wire_roundtrip_and_bytes(wire):
    x = torch.randn(37, 200) * 3
    b = encode(x, wire)
    assert b.dtype == torch.uint8 and b.shape == (37, row_bytes(200, wire, x.dtype))
    y = decode(b, wire, 200, x.dtype)
    tol = {"fp8": 0.07, "bf16": 0.008, "native": 0.0}[wire]  # e4m3: 3 mantissa bits -> <= 2^-4 relative
    assert ((y - x).abs() <= tol * x.abs().amax(-1, keepdim=True) + 1e-6).all()
    if wire == "fp8":
        assert row_bytes(200, "fp8", x.dtype) == 200 + 4 * 2  # 2 tiles of 128 -> two fp32 scales


def test_layout_roundtrip_and_stage_split():
    for r in range(24):
        c = coord(r, ep=2, pp=3)
        assert rank_of(c, 2, 3) == r
    assert coord(5, ep=2, pp=3) == Coord(dp=0, pp=2, ep=1)
    assert [list(x) for x in stage_layers(5, 2)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError, match="--pp"):
        stage_layers(2, 3)


def test_1f1b_plan_and_parse():
    p = plan("1f1b", 3, 6)
    # PipeDream-flush (Narayanan et al., SC'21 §2.2): the last stage alternates from the start
    assert p.actions[2][:4] == ["F0.0", "BW0.0", "F0.1", "BW0.1"] and len(p.actions[0]) == 12
    assert [a.kind for a in parse("F0.9&BW1.2")] == ["F", "BW"]
    with pytest.raises(ValueError, match="bad pipeline op"):
        parse("X0.1")


def test_dualpipe_geometry():
    pytest.importorskip("dsv3sim.parallel.dualpipe")
    p = plan("dualpipe", 4, 8)
    assert p.stages_of(0) == [0, 3] and p.neighbours(0, 1) == ((1, 1), None)
    assert p.data_index(1, 2) == 6
    v = plan("dualpipev", 2, 4)
    assert v.n_stages == 4 and v.neighbours(1, 0) == ((0, 0), (1, 1))


def test_spec_validation_messages():
    with pytest.raises(ValueError, match=r"--ep \(2\) x --pp \(1\) x --dp \(2\) = 4 must equal"):
        RunSpec(job="train", nproc=2, ep=2, pp=1, dp=2)
    with pytest.raises(ValueError, match="fault kind"):
        Fault(kind="explode", rank=0)
    s = RunSpec(job="train", nproc=2, ep=2, fault=Fault(kind="kill", rank=1, step=2))
    assert RunSpec.from_json(s.to_json()) == s


@pytest.mark.parametrize(("argv", "flag"), [
    (["--nproc", "64"], "--nproc 64 x --threads 1 = 64"),
    (["--nproc", "2", "--threads", "8"], "--threads 8"),
    (["--nproc", "2", "--ep", "4", "--dp", "1"], "must equal"),
    (["--nproc", "3", "--ep", "3", "--allow-oversubscribe"], "divisible by --ep"),
    (["--nproc", "2", "--pp", "2", "--schedule", "dualpipev", "--model", "tiny"], None),
    (["--nproc", "2", "--pp", "8", "--ep", "1", "--dp", "1", "--allow-oversubscribe"], "--pp 8"),
    # activations alone (lower bound) beyond the host's available memory: 2 x 10^8 tokens of tiny
    (["--nproc", "2", "--ep", "2", "--seq-len", "100000000"], "--seq-len 100000000"),
])
def test_layouts_the_machine_cannot_run_are_refused_before_launch(argv, flag, capsys, monkeypatch):
    """One line naming the flag, exit 2, nothing launched (a launch would fail this test: no torchrun here)."""
    from dsv3sim.cli import main

    monkeypatch.setattr("dsv3sim.validate.load.cores", lambda: 2)
    monkeypatch.setattr("dsv3sim.validate.launch.launch", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    if flag is None:  # dualpipev: 2 x pp = 4 stages of tiny's 4 layers is fine -> it would launch
        with pytest.raises(AssertionError):
            main(["validate", *argv])
        return
    assert main(["validate", "--model", "tiny", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err


def _r(rank, state, phase="compute", step=1, err=""):
    return RankReport(rank=rank, state=state, phase=phase, step=step, t_wall=float(rank), error=err)


def test_diagnose_names_the_root_cause():
    killed = [_r(0, "error", err="RuntimeError: Connection closed by peer"), _r(1, "running")]
    assert diagnose(killed, {1: -9, 0: 1}, killed_for=None, rc=1, collective_timeout_s=5)[0] == 1
    assert "SIGKILL" in diagnose(killed, {1: -signal.SIGKILL}, killed_for=None, rc=1, collective_timeout_s=5)[1]
    hung = [_r(0, "error", err="RuntimeError: Timed out waiting 5000ms"), _r(1, "running", step=2)]
    rank, cause = diagnose(hung, {1: -15, 0: 1}, killed_for=None, rc=1, collective_timeout_s=5)
    assert rank == 1 and "hung" in cause and "step 2" in cause
    raised = [_r(0, "error", err="RuntimeError: timed out"), _r(1, "error", err="ValueError: bad shape")]
    assert diagnose(raised, {}, killed_for=None, rc=1, collective_timeout_s=5)[0] == 1
    text = "  rank      : 3 (local_rank: 1)\n  exitcode  : -9 (pid: 42)\n"
    assert parse_torchrun_failures(text) == {3: -9}


def test_gate_weights_backward_exchange_is_its_own_row_where_the_run_timed_it():
    """``layout(B)``: compared as its own row where the run has the span; inside ``other`` for runs without it."""
    from dsv3sim.validate.compare import _predicted_components

    pred = {"components_mean_over_ranks": {"framework": 2.0, "layout(B)": 0.5, "allreduce": 1.0,
                                           "allreduce_wait": 0.25}}
    timed = _predicted_components(pred, {"layout(B)": 0.6, "other": 2.1})
    assert (timed["layout(B)"], timed["other"], timed["allreduce"]) == (0.5, 2.0, 1.25)
    older = _predicted_components(pred, {"other": 2.7})
    assert "layout(B)" not in older and older["other"] == 2.5

