"""Hypothesis strategies for fuzz cases: junk values, mutated topologies, CLI argument lists, crafted files.

Each strategy yields ``(argv, expect, files, label)``: the CLI arguments, ``"error"`` when the input is known to be
invalid (exit 2 or an infeasible result is the only right answer) or ``"any"``, and files to write first
({relative path: bytes}) and a short description of the mutation; ``{TMP}`` in argv is replaced by the case's folder.
"""

from __future__ import annotations

import datetime
import io
import math
import pickle
from pathlib import Path

import yaml
from hypothesis import strategies as st

REPO_TOPO = "topologies/h800-deepseek.yaml"

# values that are never a valid number/size (type or finiteness), and some that are valid only sometimes
INVALID = [None, [], [1, 2], {"a": 1}, "abc", "", True, float("nan"), float("inf"), float("-inf"),
           datetime.date(2024, 1, 1)]
EDGE = [0, -1, 2.5, 1e-300, 1e300, 10**12, 100_000_000, 1_000_000, 3, 0.5, 1]


def junk() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(INVALID), st.sampled_from(EDGE),
                     st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12))


def is_invalid(v) -> bool:
    """A value no numeric field accepts."""
    if isinstance(v, float):
        return not math.isfinite(v)
    return not isinstance(v, int) or isinstance(v, bool)


def _small_topology() -> dict:
    with open(REPO_TOPO) as f:
        raw = yaml.safe_load(f)
    raw.update(n_nodes=2)
    raw.pop("n_gpus", None)
    return raw


TOPO_FIELDS = [("n_nodes",), ("gpus_per_node",), ("comm_sms",), ("kernel_latency_us",), ("n_gpus",),
               ("scale_up", "bandwidth_GBps"), ("scale_up", "latency_us"), ("scale_up", "achievable_fraction"),
               ("scale_up", "message_latency_us"), ("nic", "bandwidth_GBps"), ("nic", "latency_us"),
               ("nic", "per_node"), ("nic", "achievable_fraction"), ("pcie", "bandwidth_GBps"),
               ("fabric", "n_planes"), ("fabric", "nodes_per_leaf"), ("fabric", "oversubscription"),
               ("fabric", "spine_hop_latency_us"), ("fabric", "kind"), ("gpu",), ("scale_up",), ("nic",),
               ("fabric",), ("sources",), ("name",)]


@st.composite
def topology_case(draw):
    raw = _small_topology()
    path = draw(st.sampled_from(TOPO_FIELDS))
    v = draw(junk())
    d = raw
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = v
    text = yaml.safe_dump(raw, default_flow_style=False) if not isinstance(v, datetime.date) else \
        yaml.dump(raw, Dumper=yaml.SafeDumper)
    numeric = path[-1] not in ("kind", "gpu", "sources", "name", "scale_up", "nic", "fabric")
    expect = "error" if numeric and is_invalid(v) else "any"
    argv = ["comm", "--topology", "{TMP}/t.yaml", "--kind", "dispatch", "--ep", "16", "--tokens-per-rank", "64",
            "--experts", "32", "--topk", "4", "--json"]
    return argv, expect, {"t.yaml": text.encode()}, f"topology {'.'.join(path)}={v!r}"


FLAG_VALUES = ["0", "-1", "nan", "inf", "-inf", "1e9", "2.5", "abc", "", "1e400", "100000000", "3", "1000000"]

# command templates: flag -> default value; one flag at a time gets a junk value
TEMPLATES = [
    (["stats", "tiny", "--json"], {"--seq-len": "64", "--context": "64", "--gpu-memory-GiB": "80"}),
    (["schedule", "1f1b", "--json"], {"--pp": "4", "--microbatches": "8", "--f": "1", "--b": "2", "--w": "1",
                                      "--p2p-latency": "0"}),
    (["schedule", "dualpipe", "--json"], {"--pp": "4", "--microbatches": "8", "--fb": "2.5"}),
    (["comm", "--topology", "h800-deepseek", "--kind", "dispatch", "--json"],
     {"--ep": "16", "--tokens-per-rank": "64", "--hidden": "256", "--topk": "4", "--experts": "32",
      "--max-nodes": "2", "--chunks": "4", "--groups": "1", "--seed": "0"}),
    (["comm", "--topology", "h800-deepseek", "--kind", "all-reduce", "--json"],
     {"--ep": "16", "--tokens-per-rank": "64", "--hidden": "256", "--chunks": "2"}),
    (["kernel-time", "--gpu", "H200", "--op", "gemm", "--json"], {"--m": "128", "--n": "256", "--k": "512",
                                                                  "--sms": "100"}),
    (["trace", "synth", "--out", "{TMP}/s.npz", "--json"],
     {"--layers": "2", "--experts": "16", "--topk": "2", "--tokens": "64", "--seq-len": "32", "--zipf-s": "1",
      "--drift": "0.1", "--windows": "2", "--layer-corr": "0.1", "--seq-corr": "0.1", "--seed": "0"}),
]


FLOAT_FLAGS = {"--gpu-memory-GiB", "--f", "--b", "--w", "--fb", "--p2p-latency", "--zipf-s", "--drift",
               "--layer-corr", "--seq-corr"}


@st.composite
def flag_case(draw):
    base, flags = draw(st.sampled_from(TEMPLATES))
    flag = draw(st.sampled_from(sorted(flags)))
    v = draw(st.sampled_from(FLAG_VALUES))
    argv = list(base)
    for f, d in flags.items():
        argv += [f, v if f == flag else d]
    bad = ("nan", "inf", "-inf", "abc", "", "1e400", "-1") + (() if flag in FLOAT_FLAGS else ("2.5",))
    expect = "error" if v in bad else "any"
    return argv, expect, {}, f"{' '.join(base[:2])} {flag} {v!r}"


def _npz_bytes(**arrays) -> bytes:
    import numpy as np

    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def _torch_bytes(obj) -> bytes:
    import torch

    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


class _Evil:
    def __reduce__(self):
        return (print, ("EXECUTED-FROM-FILE",))


def crafted_files() -> dict[str, callable]:
    import numpy as np
    import torch

    return {
        "pickle.pt": lambda: pickle.dumps({"logical_count": [[1, 2]]}),
        "evil.pt": lambda: pickle.dumps(_Evil()),
        "evil_zip.pt": lambda: _torch_bytes({"logical_count": _Evil()}),
        "truncated.pt": lambda: _torch_bytes({"logical_count": torch.ones(3, 8)})[:300],
        "list.pt": lambda: _torch_bytes({"logical_count": [[1, 2], [3, 4]]}),
        "zeros.pt": lambda: _torch_bytes({"logical_count": torch.zeros(2, 2, 8)}),
        "nan.pt": lambda: _torch_bytes({"logical_count": torch.full((2, 8), float("nan"))}),
        "str.pt": lambda: _torch_bytes("hello"),
        "ok.pt": lambda: _torch_bytes({"logical_count": torch.randint(0, 5, (3, 2, 8)) + 1, "rank": 0}),
        "garbage.npz": lambda: b"PK\x03\x04garbage",
        "empty.npz": lambda: _npz_bytes(),
        "plain.npz": lambda: _npz_bytes(a=np.arange(10)),
        "float_ids.npz": lambda: _npz_bytes(topk_idx=np.full((4, 2), 0.5)),
        "meta_junk.npz": lambda: _npz_bytes(meta=np.array("{not json"), layers=np.arange(2)),
        "zero.json": lambda: b'{"weight": [[0, 0, 0, 0], [0, 0, 0, 0]]}',
        "ragged.json": lambda: b'{"weight": [[1, 2], [3]]}',
        "strs.json": lambda: b'{"weight": [["a", "b"]]}',
        "nanw.json": lambda: b'{"weight": [[NaN, 1]]}',
        "deep.json": lambda: b"[" * 100000,
        "ok.json": lambda: b'{"weight": [[5, 1, 2, 7, 3, 3, 1, 2], [1, 1, 1, 9, 2, 2, 2, 2]]}',
        "binary.json": lambda: bytes(range(256)),
        "empty.safetensors": lambda: b"",
        "huge_header.safetensors": lambda: (10**15).to_bytes(8, "little") + b"{}",
        "junk.safetensors": lambda: b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage-garbage",
        "model_config.json": lambda: Path("model/tiny.json").read_bytes(),
        "train_zero.json": lambda: b'{"history": [{"step": 0, "expert_load": [[0, 0, 0, 0]]}]}',
        "train_junk.json": lambda: b'{"history": [{"step": null, "expert_load": {"x": [1]}}, 3]}',
        "ok_train.json": lambda: b'{"balance": "none", "history": [{"step": 0, "expert_load": [[3, 1, 2, 2]]},'
                                 b' {"step": 1, "expert_load": [[2, 2, 2, 2]]}]}',
    }


FILE_COMMANDS = [
    ["trace", "stats", "{F}", "--json"],
    ["place", "--load", "{F}", "--replicas", "8", "--groups", "1", "--nodes", "1", "--gpus", "2", "--json"],
    ["comm", "--topology", "h800-deepseek", "--kind", "dispatch", "--ep", "8", "--experts", "8", "--topk", "2",
     "--tokens-per-rank", "4", "--trace", "{F}", "--json"],
    ["report", "{F}", "--out", "{TMP}/r.html"],
    ["trace", "export-eplb", "{F}", "--out", "{TMP}/e.json"],
    ["trace", "imbalance", "{F}", "--out", "{TMP}/i.json"],
]


@st.composite
def file_case(draw):
    files = crafted_files()
    name = draw(st.sampled_from(sorted(files)))
    cmd = draw(st.sampled_from(FILE_COMMANDS))
    argv = [a.replace("{F}", "{TMP}/" + name) for a in cmd]
    expect = "any" if name.startswith("ok") else "error"
    if cmd[0] == "comm" and name == "ok.pt":
        expect = "error"  # a load-only trace has no per-token ids
    return argv, expect, {name: files[name]()}, f"{' '.join(cmd[:2])} {name}"



SCENARIO_BASES = {
    "training": ("TrainingWorkload", {"global_batch_sequences": 8, "seq_len": 64, "schedule": "1f1b",
                                      "node_limit": None}),
    "prefill": ("PrefillWorkload", {"prompt_len": 64, "tokens_per_gpu": 256, "node_limit": None}),
    "decode": ("DecodeWorkload", {"context_len": 64, "batch_per_gpu": 4, "node_limit": None}),
}
SCENARIO_FIELDS = {
    "W": {"training": ["global_batch_sequences", "seq_len", "micro_batch_sequences", "schedule", "node_limit",
                       "redundant_experts", "routing_layers", "zero1", "placement", "routing_trace"],
          "prefill": ["prompt_len", "tokens_per_gpu", "micro_batches", "redundant_experts", "routing_layers",
                      "gemm_dtype"],
          "decode": ["context_len", "output_len", "batch_per_gpu", "micro_batches", "kv_dtype_bytes", "mtp",
                     "mtp_acceptance", "memory_reserve_fraction"]},
    "P": ["pp", "dp", "ep", "tp", "attn_tp"],
    "X": ["nic_bandwidth_scale", "nvlink_bandwidth_scale", "straggler_gpu", "straggler_slowdown",
          "degraded_fraction", "degraded_link"],
    "S": ["seed", "n_gpus", "gpu", "comm_model", "model", "topology", "fast"],
}


def py_src(v) -> str:
    """Python source for a junk value (NaN and infinities spelled as float(...), dates via datetime)."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"float({str(v)!r})"
    if isinstance(v, datetime.date):
        return f"datetime.date({v.year}, {v.month}, {v.day})"
    return repr(v)


@st.composite
def scenario_case(draw):
    """A scenario file (model tiny on topologies/local-cpu.yaml) with one field of the scenario, its workload,
    layout or perturbation replaced by a junk value, through ``dsv3sim run FILE --json``."""
    kind = draw(st.sampled_from(sorted(SCENARIO_BASES)))
    part = draw(st.sampled_from(["W", "P", "X", "S"]))
    names = SCENARIO_FIELDS[part][kind] if part == "W" else SCENARIO_FIELDS[part]
    name = draw(st.sampled_from(names))
    v = draw(st.one_of(junk(), st.sampled_from(["bound", "H200", "nope", "eplb", "dualpipe", "zb1p"])))
    cls, wkw = SCENARIO_BASES[kind]
    parts = {"W": dict(wkw), "P": {"dp": 2, "ep": 2}, "X": {}, "S": {"name": "fz", "model": "tiny",
                                                                     "topology": "local-cpu"}}
    lines = [f"    {p} = {d!r}" for p, d in parts.items()]
    lines.append(f"    {part}[{name!r}] = {py_src(v)}")
    text = ("import datetime\nfrom dsv3sim.config.scenario import *\n\n\ndef f():\n" + "\n".join(lines) + "\n"
            f"    return Scenario(parallel=ParallelDims(**P), workload={cls}(**W), perturb=Perturbation(**X), **S)\n")
    optional = name in ("node_limit", "routing_layers", "routing_trace", "batch_per_gpu", "mtp_acceptance",
                        "straggler_gpu", "degraded_link", "n_gpus", "gpu", "dp")  # dp None: follows the GPUs
    if v is None and optional:
        expect = "any"
    elif name in ("zero1", "mtp", "fast"):
        expect = "any" if isinstance(v, bool) else "error"
    elif name in ("schedule", "placement", "routing_trace", "gemm_dtype", "degraded_link", "gpu", "comm_model",
                  "model", "topology"):
        expect = "any" if isinstance(v, str) else "error"
    else:
        expect = "error" if is_invalid(v) else "any"
    return (["run", "{TMP}/s.py:f", "--json", "{TMP}/r.json"], expect, {"s.py": text.encode()},
            f"scenario {kind} {part}.{name}={v!r}")
