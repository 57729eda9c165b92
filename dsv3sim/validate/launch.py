"""Launch a validation job with torch.distributed's own launcher (torchrun) and diagnose failures.

``python -m torch.distributed.run --rdzv-backend c10d --rdzv-endpoint HOST:PORT ... -m dsv3sim.validate.worker``
is started as a subprocess in its own session, so every wait is bounded: the whole job has a wall-clock
limit, a watchdog kills it when no rank has reported progress for ``stall_s``, and the workers' own
collectives time out (``init_process_group(timeout=...)``). On one machine the rendezvous is 127.0.0.1 on
a free port; across nodes the same command runs on every node with ``--nnodes`` and a shared endpoint.

On failure the launcher names the root-cause rank from the per-rank status files (``status.py``) and
torchrun's failure summary (rank, exit code, signal), and raises ``WorkerFailure``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dsv3sim.validate.atomic import write_text
from dsv3sim.validate.spec import RunSpec
from dsv3sim.validate.status import RankReport, read_all


class WorkerFailure(RuntimeError):
    """A worker died, hung or raised; ``rank`` is the root cause (-1 when unknown)."""

    def __init__(self, rank: int, cause: str, log_dir: str) -> None:
        self.rank, self.cause, self.log_dir = rank, cause, log_dir
        who = f"rank {rank}" if rank >= 0 else "unknown rank"
        super().__init__(f"validation job failed: {who}: {cause} (logs: {log_dir})")


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendezvous:
    """Where workers meet. Defaults: this machine only, a free port on 127.0.0.1."""

    endpoint: str = ""  # host:port; "" -> 127.0.0.1:<free port>
    run_id: str = ""
    node_rank: int = -1  # -1: let the c10d rendezvous assign it
    join_timeout_s: float = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_argv(spec: RunSpec, spec_path: Path, rdzv: Rendezvous) -> list[str]:
    endpoint = rdzv.endpoint or f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={spec.nnodes}", f"--nproc-per-node={spec.nproc}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={rdzv.run_id or 'dsv3sim-validate'}",
            f"--rdzv-conf=join_timeout={int(rdzv.join_timeout_s)}",
            "--max-restarts=0", "--monitor-interval=0.2"]
    if rdzv.node_rank >= 0:
        argv.append(f"--node-rank={rdzv.node_rank}")
    return argv + ["-m", "dsv3sim.validate.worker", str(spec_path)]


def launch(spec: RunSpec, *, timeout_s: float = 600.0, stall_s: float | None = None,
           rdzv: Rendezvous = Rendezvous(), poll_s: float = 0.2) -> Path:
    """Run the job to completion; return its output directory. Raises WorkerFailure / TimeoutError-as-failure."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "status").glob("rank*.json"):
        old.unlink()
    spec_path = write_text(out / "spec.json", spec.to_json())
    stall_s = stall_s if stall_s is not None else 2 * spec.collective_timeout_s + 30
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads), PYTHONUNBUFFERED="1",
               TORCH_NCCL_ASYNC_ERROR_HANDLING="1")
    env.pop("TORCHELASTIC_ERROR_FILE", None)
    log_path = out / "torchrun.log"
    argv = torchrun_argv(spec, spec_path, rdzv)
    with open(log_path, "w") as log:
        log.write(" ".join(argv) + "\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        killed_for = _watch(proc, out, spec.world_size if spec.nnodes == 1 else spec.nproc, timeout_s, stall_s,
                            poll_s)
    rc = proc.returncode
    text = log_path.read_text(errors="replace")
    if killed_for is None and rc == 0:
        return out
    reports = read_all(out, spec.world_size)
    if spec.nnodes > 1:  # other nodes' ranks write their status files on their own nodes
        reports = [r for r in reports if r.state != "missing"]
    rank, cause = diagnose(reports, parse_torchrun_failures(text), killed_for=killed_for, rc=rc,
                           collective_timeout_s=spec.collective_timeout_s)
    raise WorkerFailure(rank, cause, str(log_path))


def _watch(proc: subprocess.Popen, out: Path, n_local: int, timeout_s: float, stall_s: float,
           poll_s: float) -> str | None:
    """Wait for torchrun; kill its whole session on wall-clock timeout or when progress stalls."""
    t0 = time.monotonic()
    last_change, last_sig = t0, None
    while proc.poll() is None:
        time.sleep(poll_s)
        now = time.monotonic()
        sig = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in (out / "status").glob("rank*.json"))) \
            if (out / "status").is_dir() else ()
        if sig != last_sig:
            last_sig, last_change = sig, now
        reason = None
        if now - t0 > timeout_s:
            reason = f"wall-clock limit of {timeout_s:.0f} s exceeded"
        elif now - last_change > stall_s:
            reason = f"no rank reported progress for {stall_s:.0f} s"
        if reason:
            _kill_session(proc)
            return reason
    return None


def _kill_session(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


_FAIL_RE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", re.MULTILINE)
_SIG_RE = re.compile(r"Signal (\d+) \((\w+)\) received by PID (\d+)")


def parse_torchrun_failures(text: str) -> dict[int, int]:
    """torchrun's "Root Cause"/"Other Failures" summary -> {rank: exit code} (negative = signal)."""
    return {int(r): int(c) for r, c in _FAIL_RE.findall(text)}


def _signame(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _where(r: RankReport) -> str:
    return f"in phase '{r.phase}'" + (f" at step {r.step}" if r.step >= 0 else "")


def _unreported(reports: list[RankReport]) -> list[RankReport]:
    """Ranks that neither finished nor reported an error (still running, or no report at all)."""
    return [r for r in reports if r.state in ("running", "missing")]


def _hang(reports: list[RankReport], killed_for: str | None, collective_timeout_s: float) -> tuple[int, str] | None:
    """A rank stuck outside a collective while its peers timed out in one (or the launcher killed the run)."""
    peers_timed_out = [r for r in reports if r.comm_error]
    stuck = [r for r in _unreported(reports) if not r.in_collective]
    if not (stuck and (peers_timed_out or killed_for)):
        return None
    r = min(stuck, key=lambda x: x.t_wall or float("inf"))
    others = ", ".join(str(p.rank) for p in peers_timed_out) or "none"
    return r.rank, (f"hung {_where(r)} (no progress; peers that timed out after {collective_timeout_s:g} s "
                    f"waiting for it: {others})" + (f"; launcher: {killed_for}" if killed_for else ""))


def _launcher_or_comm(reports: list[RankReport], killed_for: str | None, rc: int | None) -> tuple[int, str]:
    """No rank failed on its own: a peer's communication error, the launcher's kill, or torchrun's exit code."""
    timed_out = [r for r in reports if r.comm_error]
    if timed_out:
        return timed_out[0].rank, f"communication failure {_where(timed_out[0])}: {timed_out[0].error}"
    if killed_for:
        r = next((r for r in reports if r.state != "done"), None)
        return (r.rank if r else -1), f"{killed_for}" + (f"; rank {r.rank} last {_where(r)}" if r else "")
    return -1, f"torchrun exited with code {rc} (no rank reported an error; see the log)"


def diagnose(reports: list[RankReport], exitcodes: dict[int, int], *, killed_for: str | None, rc: int | None,
             collective_timeout_s: float) -> tuple[int, str]:
    """Pick the root-cause rank and describe it. Pure function of what the launcher observed.

    Order: (1) a rank that raised a non-communication error; (2) a rank killed by a signal that its peers
    did not send (its status neither done nor error); (3) a rank stuck outside a collective while peers
    timed out in one (a hang); (4) the launcher's own kill (stall / wall clock); (5) anything else.
    """
    for r in reports:
        if r.state == "error" and not r.comm_error:
            return r.rank, f"raised {r.error} {_where(r)}"
    dead = [r for r in _unreported(reports) if exitcodes.get(r.rank, 0) < 0 and exitcodes[r.rank] != -signal.SIGTERM]
    if dead:
        return dead[0].rank, f"died from {_signame(exitcodes[dead[0].rank])} {_where(dead[0])}"
    hang = _hang(reports, killed_for, collective_timeout_s)
    if hang:
        return hang
    exited = [r for r in _unreported(reports) if exitcodes.get(r.rank, 0) > 0]
    if exited:
        r = exited[0]
        return r.rank, f"exited with code {exitcodes[r.rank]} without reporting an error {_where(r)}"
    return _launcher_or_comm(reports, killed_for, rc)
