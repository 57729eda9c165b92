"""Read Chrome Trace Event JSON — dsv3sim's own export or a torch.profiler trace from a real run — into slices.

Format: the Trace Event Format (Google, "Trace Event Format" doc): ``{"traceEvents": [...]}`` or a bare list;
complete events ``ph == "X"`` carry ``ts`` and ``dur`` in microseconds, ``pid``/``tid`` name the lane, and
metadata events ``ph == "M"`` (``process_name``, ``thread_name``) give the lanes their names. ``B``/``E`` pairs
are matched per (pid, tid) as a stack.

torch.profiler (``prof.export_chrome_trace``) writes CPU ops (``cat: cpu_op``, ``user_annotation`` from
``record_function``) on host pids and GPU work (``kernel``, ``gpu_memcpy``, ``gpu_memset``,
``gpu_user_annotation``) on one pid per device, one tid per CUDA stream. When a trace has GPU events we keep
those (what the device did), otherwise the CPU ones. DeepSeek's profile-data traces annotate chunks with
``attn(F)``, ``mlp(F)``, ``dispatch(F)``, ``combine(F)`` and the (B)/(W) variants; ``record_function`` ranges
(``user_annotation``/``gpu_user_annotation``) get a lane of their own above the kernels of their stream.
``category`` maps any name (NCCL / DeepEP kernels included) onto those families so a simulated and a real
timeline colour alike.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError

DEEPSEEK_SLICES = ("attn(F)", "mlp(F)", "dispatch(F)", "combine(F)",
                   "attn(B)", "attn(W)", "mlp(B)", "mlp(W)", "dispatch(B)", "combine(B)")
GPU_CATS = {"kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation"}
CPU_CATS = {"cpu_op", "user_annotation", "python_function"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Slice:
    """One interval on one lane. Times in seconds from the start of the trace."""

    lane: str
    lane_key: tuple
    name: str
    start_s: float
    dur_s: float
    detail: str = ""

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s


_COMM = re.compile(r"nccl|all_?to_?all|all_?reduce|reduce_?scatter|all_?gather|sendrecv|\bsend\b|\brecv\b|"
                   r"\bp2p\b|broadcast|deep_?ep|\ba2a\b|comm", re.IGNORECASE)


def category(name: str) -> str:
    """Family of a slice name: one of the DeepSeek names' stems, a pipeline kind, comm, or other."""
    n = name.strip()
    low = n.lower()
    if "dispatch" in low:
        return "dispatch"
    if "combine" in low:
        return "combine"
    if _COMM.search(low):
        return "comm"
    if re.search(r"attn|attention|flash|mla|softmax|rope", low):
        return "attn"
    if re.search(r"mlp|moe|expert|gemm|matmul|cutlass|sm90|linear|ffn", low):
        return "mlp"
    if low in ("f", "b", "w", "f&b", "fb", "f+b") or re.fullmatch(r"[fbw](&b)?\d*", low):
        return "pipeline"
    if "optim" in low or "adam" in low:
        return "optimizer"
    if "bubble" in low or "idle" in low:
        return "idle"
    return "other"


def load_trace(source: str | Path | dict | list) -> dict:
    if isinstance(source, (dict, list)):
        data = source
    else:
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"Chrome trace not found: {p}")
        text = p.read_bytes()
        if p.suffix == ".gz":
            import gzip

            text = gzip.decompress(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not Chrome Trace JSON: {e}") from e
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ConfigError("a Chrome trace is {'traceEvents': [...]} or a JSON list of events")
    return data


def is_torch_profiler(data: dict) -> bool:
    ev = data.get("traceEvents", [])
    return "schemaVersion" in data or "deviceProperties" in data or any(
        isinstance(e, dict) and e.get("cat") in GPU_CATS | CPU_CATS for e in ev[:2000])


def _lane_names(events: list[dict]) -> tuple[dict[Any, str], dict[tuple, str]]:
    """Process and thread names from the metadata ("M") events."""
    pnames: dict[Any, str] = {}
    tnames: dict[tuple, str] = {}
    for e in events:
        nm = (e.get("args") or {}).get("name") if e.get("ph") == "M" else None
        if nm is None:
            continue
        if e.get("name") == "process_name":
            pnames[e.get("pid")] = str(nm)
        elif e.get("name") == "thread_name":
            tnames[(e.get("pid"), e.get("tid"))] = str(nm)
    return pnames, tnames


def _raw_slices(events: list[dict]) -> list[tuple[Any, Any, str, float, float, str]]:
    """(pid, tid, name, ts_us, dur_us, cat) of complete ("X") events and matched begin/end ("B"/"E") pairs."""
    raw: list[tuple[Any, Any, str, float, float, str]] = []
    stacks: dict[tuple, list[dict]] = {}
    for e in (e for e in events if "ts" in e):
        ph = e.get("ph")
        if ph == "X":
            raw.append((e.get("pid"), e.get("tid"), str(e.get("name", "")), float(e["ts"]),
                        float(e.get("dur", 0.0)), str(e.get("cat", ""))))
        elif ph == "B":
            stacks.setdefault((e.get("pid"), e.get("tid")), []).append(e)
        elif ph == "E" and (st := stacks.get((e.get("pid"), e.get("tid")))):
            b = st.pop()
            raw.append((b.get("pid"), b.get("tid"), str(b.get("name", e.get("name", ""))), float(b["ts"]),
                        float(e["ts"]) - float(b["ts"]), str(b.get("cat", ""))))
    return raw


def _torch_device_slices(raw: list) -> tuple[list, str]:
    """A torch.profiler trace: its GPU kernels when it has them, else its CPU ops."""
    gpu = [r for r in raw if r[5] in GPU_CATS]
    cpu = [r for r in raw if r[5] in CPU_CATS]
    return (gpu, "torch.profiler (GPU)") if gpu else (cpu or raw, "torch.profiler (CPU)")


def read_slices(source: str | Path | dict | list, *, max_slices: int = 50_000) -> tuple[list[Slice], dict]:
    """Slices of a Chrome trace, times rebased to its first event; plus info (kind, kept, dropped, lanes)."""
    data = load_trace(source)
    events = [e for e in data["traceEvents"] if isinstance(e, dict)]
    pnames, tnames = _lane_names(events)
    raw, kind = _raw_slices(events), "chrome"
    if is_torch_profiler(data):
        raw, kind = _torch_device_slices(raw)
    if not raw:
        return [], {"kind": kind, "kept": 0, "dropped": 0, "lanes": 0}
    t0 = min(r[3] for r in raw)
    raw.sort(key=lambda r: r[3])
    dropped = max(0, len(raw) - max_slices)
    out = []
    for pid, tid, name, ts, dur, cat in raw[:max_slices]:
        pl = pnames.get(pid, f"pid {pid}")
        tl = tnames.get((pid, tid), str(tid) if isinstance(tid, str) and not tid.isdigit() else f"tid {tid}")
        ann = cat in ("gpu_user_annotation", "user_annotation")  # record_function ranges: a row of their own,
        out.append(Slice(lane=f"{pl} / {tl}" + (" (annotations)" if ann else ""),  # above the kernels they span
                         lane_key=(sort_key(pid), sort_key(tid), 0 if ann else 1), name=name,
                         start_s=(ts - t0) * 1e-6, dur_s=max(dur, 0.0) * 1e-6))
    return out, {"kind": kind, "kept": len(out), "dropped": dropped, "lanes": len({s.lane for s in out})}


STREAM_ORDER = {"pipeline": -1.0, "compute": 0.0, "comm": 1.0, "communication": 1.0}


def sort_key(v: Any) -> tuple:
    """Sort key of a pid/tid: numbers in order, then named streams (pipeline, compute, comm), then by digits."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    if str(v) in STREAM_ORDER:
        return (1, STREAM_ORDER[str(v)], str(v))
    m = re.search(r"-?\d+", str(v))
    return (2, float(m.group()) if m else 0.0, str(v))


def merged_trace(panels: list[tuple[str, list[Slice]]]) -> dict:
    """One Chrome trace holding several timelines (e.g. simulated and real), each lane its own pid/tid, so a
    single Perfetto tab shows them one above the other. Times in microseconds from each panel's start."""
    events: list[dict] = []
    pid = 0
    for label, ss in panels:
        lanes: dict[str, tuple[int, int]] = {}
        procs: dict[str, int] = {}
        for s in sorted(ss, key=lambda x: x.lane_key):
            if s.lane in lanes:
                continue
            proc, _, thread = s.lane.partition(" / ")
            pname = f"{label}: {proc}"
            if pname not in procs:
                pid += 1
                procs[pname] = pid
                events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": pname}})
                events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}})
            tid = sum(1 for p, _ in lanes.values() if p == procs[pname])
            lanes[s.lane] = (procs[pname], tid)
            events.append({"ph": "M", "name": "thread_name", "pid": procs[pname], "tid": tid,
                           "args": {"name": thread or "main"}})
        for s in ss:
            p, t = lanes[s.lane]
            ev = {"ph": "X", "name": s.name, "pid": p, "tid": t, "ts": s.start_s * 1e6, "dur": s.dur_s * 1e6,
                  "cat": category(s.name)}
            if s.detail:
                ev["args"] = {"detail": s.detail}
            events.append(ev)
    return {"traceEvents": events, "displayTimeUnit": "ms"}
