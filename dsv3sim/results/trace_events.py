"""Chrome Trace Event JSON ("Trace Event Format"), both ways: a result's simulated timeline written as a trace
(``chrome_trace``, ``save_chrome_trace``); a trace (dsv3sim's or a torch.profiler trace of a real run) or a result's
timeline read into slices (``read_slices``, ``slices_from_result``); several timelines merged into one trace.

Written: one pid per simulated rank, tids "compute", "comm" (DeepEP SM partition) and "pipeline" (schedule
actions), slice names as in deepseek-ai/profile-data (one tid per stream there too): attn(F), mlp(F), dispatch(F),
combine(F), attn(B), attn(W), mlp(B), mlp(W), dispatch(B), combine(B)."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.units import num
from dsv3sim.results import Result, Timeline, _plain, group

GPU_CATS = {"kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation"}
CPU_CATS = {"cpu_op", "user_annotation", "python_function"}
STREAM_ORDER = {"pipeline": -1.0, "compute": 0.0, "comm": 1.0, "communication": 1.0}
CATEGORIES = (  # (family, pattern on the lower-case name), first match wins
    ("dispatch", r"dispatch"), ("combine", r"combine"),
    ("comm", r"nccl|all_?to_?all|all_?reduce|reduce_?scatter|all_?gather|sendrecv|\bsend\b|\brecv\b|\bp2p\b|"
             r"broadcast|deep_?ep|\ba2a\b|comm"),
    ("attn", r"attn|attention|flash|mla|softmax|rope"), ("mlp", r"mlp|moe|expert|gemm|matmul|cutlass|sm90|linear|ffn"),
    ("pipeline", r"^(f|b|w|f&b|fb|f\+b)$|^[fbw](&b)?\d*$"), ("optimizer", r"optim|adam"), ("idle", r"bubble|idle"))


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


def category(name: str) -> str:
    """Family of a slice name: one of the DeepSeek names' stems, a pipeline kind, comm, or other."""
    low = name.strip().lower()
    return next((fam for fam, pat in CATEGORIES if re.search(pat, low)), "other")


def lanes(ss: list[Slice]) -> list[str]:
    """The lanes of ``ss`` in order: by rank, then stream."""
    return [lane for _, lane in sorted({(x.lane_key, x.lane) for x in ss})]


def first_lanes(ss: list[Slice], n: int) -> tuple[list[Slice], list[str], int]:
    """The slices of the first ``n`` lanes, those lanes in order (``lanes``), and the number of lanes dropped."""
    order = lanes(ss)
    keep = set(order[:n])
    return ([x for x in ss if x.lane in keep] if len(order) > n else ss), order[:n], max(0, len(order) - n)


def busy_by_name(ss: list[Slice]) -> dict[str, list]:
    """{slice name: [busy seconds, count]}, busiest first."""
    tot: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for x in ss:
        tot[x.name][0] += x.dur_s
        tot[x.name][1] += 1
    return dict(sorted(tot.items(), key=lambda kv: -kv[1][0]))


def sort_key(v: Any) -> tuple:
    """Sort key of a pid/tid: numbers in order, then named streams (pipeline, compute, comm), then by digits."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    if str(v) in STREAM_ORDER:
        return (1, STREAM_ORDER[str(v)], str(v))
    m = re.search(r"-?\d+", str(v))
    return (2, float(m.group()) if m else 0.0, str(v))


def load_trace(source: str | Path | dict | list) -> dict:
    data = source
    if not isinstance(source, (dict, list)):
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"Chrome trace not found: {p}")
        try:
            data = json.loads(gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not Chrome Trace JSON: {e}") from e
    data = {"traceEvents": data} if isinstance(data, list) else data
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ConfigError("a Chrome trace is {'traceEvents': [...]} or a JSON list of events")
    return data


def _raw_slices(events: list[dict]) -> list[tuple[Any, Any, str, float, float, str]]:
    """(pid, tid, name, ts_us, dur_us, cat) of complete ("X") events and matched begin/end ("B"/"E") pairs."""
    raw, stacks = [], {}
    for e in (e for e in events if "ts" in e):
        ph, lane = e.get("ph"), (e.get("pid"), e.get("tid"))
        if ph == "X":
            raw.append((*lane, str(e.get("name", "")), float(e["ts"]), float(e.get("dur", 0.0)), str(e.get("cat", ""))))
        elif ph == "B":
            stacks.setdefault(lane, []).append(e)
        elif ph == "E" and (st := stacks.get(lane)):
            b = st.pop()
            raw.append((b.get("pid"), b.get("tid"), str(b.get("name", e.get("name", ""))), float(b["ts"]),
                        float(e["ts"]) - float(b["ts"]), str(b.get("cat", ""))))
    return raw


def _lane_names(events: list[dict]) -> dict[tuple, str]:
    """{("process_name", pid, None) or ("thread_name", pid, tid): name} from the metadata ("M") events."""
    return {(e["name"], e.get("pid"), e.get("tid") if e["name"] == "thread_name" else None): str(e["args"]["name"])
            for e in events if e.get("ph") == "M" and e.get("name") in ("process_name", "thread_name")
            and (e.get("args") or {}).get("name") is not None}


def _device_slices(data: dict, raw: list) -> tuple[list, str]:
    """A torch.profiler trace keeps its GPU work when it has some, else its CPU ops; any other trace all of it."""
    if not ("schemaVersion" in data or "deviceProperties" in data or any(
            isinstance(e, dict) and e.get("cat") in GPU_CATS | CPU_CATS for e in data["traceEvents"][:2000])):
        return raw, "chrome"
    gpu, cpu = [r for r in raw if r[5] in GPU_CATS], [r for r in raw if r[5] in CPU_CATS]
    return (gpu, "torch.profiler (GPU)") if gpu else (cpu or raw, "torch.profiler (CPU)")


def read_slices(source: str | Path | dict | list, *, max_slices: int = 50_000) -> tuple[list[Slice], dict]:
    """Slices of a Chrome trace, times rebased to its first event; plus info (kind, kept, dropped, lanes)."""
    data = load_trace(source)
    events = [e for e in data["traceEvents"] if isinstance(e, dict)]
    names = _lane_names(events)
    raw, kind = _device_slices(data, _raw_slices(events))
    raw.sort(key=lambda r: r[3])
    t0, out = raw[0][3] if raw else 0.0, []
    for pid, tid, name, ts, dur, cat in raw[:max_slices]:
        pl = names.get(("process_name", pid, None), f"pid {pid}")
        tl = names.get(("thread_name", pid, tid), str(tid) if isinstance(tid, str) and not tid.isdigit()
                       else f"tid {tid}")
        ann = cat in ("gpu_user_annotation", "user_annotation")  # record_function ranges: a row of their own,
        out.append(Slice(lane=f"{pl} / {tl}" + (" (annotations)" if ann else ""),  # above the kernels they span
                         lane_key=(sort_key(pid), sort_key(tid), 0 if ann else 1), name=name,
                         start_s=(ts - t0) * 1e-6, dur_s=max(dur, 0.0) * 1e-6))
    return out, {"kind": kind, "kept": len(out), "dropped": max(0, len(raw) - max_slices),
                 "lanes": len({s.lane for s in out})}


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
            if (pname := f"{label}: {proc}") not in procs:
                pid += 1
                procs[pname] = pid
                events += [{"ph": "M", "name": "process_name", "pid": pid, "args": {"name": pname}},
                           {"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}}]
            lanes[s.lane] = (procs[pname], sum(1 for p, _ in lanes.values() if p == procs[pname]))
            events.append({"ph": "M", "name": "thread_name", "pid": procs[pname], "tid": lanes[s.lane][1],
                           "args": {"name": thread or "main"}})
        for s in ss:
            p, t = lanes[s.lane]
            events.append({"ph": "X", "name": s.name, "pid": p, "tid": t, "ts": s.start_s * 1e6, "dur": s.dur_s * 1e6,
                           "cat": category(s.name)} | ({"args": {"detail": s.detail}} if s.detail else {}))
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def slices_from_result(result: dict, base_dir: Path | None = None) -> tuple[list[Slice], str]:
    """Simulated slices of a result: its ``timeline`` (``{"events": [...]}`` from a simulation, ``{"per_rank":
    {rank: [...]}}`` from ``dsv3sim validate``), else the Chrome trace file it names (``chrome_trace_path``,
    ``chrome_trace``), or the result itself when it is a bare Chrome trace."""
    if isinstance(result.get("traceEvents"), list):
        return read_slices(result)[0], "Chrome trace"
    tl = result.get("timeline")
    ev = g.events if (g := group(Timeline, tl)) else None
    if isinstance(tl, dict) and isinstance(tl.get("per_rank"), dict):
        ev = [dict(e, rank=r) for r, es in tl["per_rank"].items() for e in es]
    if ev and (ss := _slices_from_events(ev)):
        return ss, "timeline"
    if not isinstance(path := result.get("chrome_trace_path") or result.get("chrome_trace"), str):
        return [], ""
    p = Path(path)
    p = base_dir / p if not p.is_absolute() and base_dir is not None and not p.exists() else p
    return (read_slices(p)[0], f"Chrome trace {p.name}") if p.exists() else ([], "")


def _slices_from_events(events: list[dict]) -> list[Slice]:
    """Events ``{rank, stream, name, start_s, end_s}`` (validate's: ``t0``, ``t1``) as slices from time 0; the
    micro-batch, chunk, stage and layer they carry go to the hover text."""
    out = []
    for e in events:
        start, end = num(e.get("start_s", e.get("t0"))), num(e.get("end_s", e.get("t1")))
        if start is None or end is None:
            continue
        detail = "" if e.get("microbatch") is None else f"microbatch {e['microbatch']}"
        detail += "".join(f" {k} {e[k]}" for k in ("chunk", "stage", "layer", "step") if e.get(k) not in (None, -1))
        rank, stream = e.get("rank", 0), e.get("stream", "compute")
        out.append(Slice(lane=f"rank {rank} / {stream}", lane_key=(sort_key(rank), sort_key(stream)),
                         name=str(e.get("name")), start_s=start, dur_s=max(0.0, end - start), detail=detail.strip()))
    t0 = min((s.start_s for s in out), default=0.0)
    return [Slice(lane=s.lane, lane_key=s.lane_key, name=s.name, start_s=s.start_s - t0, dur_s=s.dur_s,
                  detail=s.detail) for s in out] if t0 != 0 else out


TIDS = {"compute": 1, "comm": 2, "pipeline": 3}


def _events(result: Result | dict) -> list:
    """A result's timeline events: from its JSON as given, or off the typed result made JSON-safe as ``to_json``
    writes them (without serialising the rest of the result)."""
    if isinstance(result, dict):
        return ((result.get("timeline") or {}).get("events")) or []
    return _plain((getattr(result, "timeline", None) or {}).get("events")) or []


def _scenario(result: Result | dict) -> str:
    return result.get("scenario", "") if isinstance(result, dict) else result.scenario


def chrome_trace(result: Result | dict, *, pid_offset: int = 0, label: str = "") -> dict:
    """Trace Event Format dict: one pid per rank, one tid per stream, complete events (ph "X", microseconds)."""
    out: list[dict] = []
    seen_pid: set = set()
    for e in _events(result):
        pid = int(e.get("rank", 0)) + pid_offset
        stream = str(e.get("stream", "compute"))
        tid = TIDS.get(stream, 9)
        if pid not in seen_pid:
            seen_pid.add(pid)
            out.append({"ph": "M", "name": "process_name", "pid": pid,
                        "args": {"name": f"{label + ' ' if label else ''}rank {e.get('rank', 0)}"}})
            for s, t in TIDS.items():
                out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": t, "args": {"name": s}})
        args = {k: v for k, v in e.items() if k not in ("rank", "stream", "name", "start_s", "end_s")}
        out.append({"ph": "X", "name": e.get("name", "?"), "cat": stream, "pid": pid, "tid": tid,
                    "ts": float(e["start_s"]) * 1e6, "dur": max(0.0, float(e["end_s"]) - float(e["start_s"])) * 1e6,
                    "args": args})
    return {"traceEvents": out, "displayTimeUnit": "ms",
            "otherData": {"scenario": _scenario(result), "source": "dsv3sim simulation"}}


def save_chrome_trace(results: Result | dict | list, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    items = results if isinstance(results, list) else [results]
    merged: list[dict] = []
    for k, r in enumerate(items):
        merged += chrome_trace(r, pid_offset=1000 * k, label=_scenario(r) if len(items) > 1 else "")["traceEvents"]
    p.write_text(json.dumps({"traceEvents": merged, "displayTimeUnit": "ms"}))
    return p
