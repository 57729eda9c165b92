"""Extract per-slice numbers from DeepSeek's training profile (deepseek-ai/profile-data ``train.json``).

The profile (PyTorch profiler, H800, EP64, TP1, 4K sequence, balanced routing, one overlapped forward+backward
chunk pair of 4 MoE layers, PP communication left out) has CPU-side annotations ``attn(F)``, ``dispatch(F)``,
... and GPU kernels linked to their launches by correlation id. Per annotation this script takes the kernels
launched inside it (kernels without a launch record, e.g. Triton's rotary and copy kernels, go to the compute
annotation whose kernel span holds them) and reports:

- ``span_ms``: first kernel start to last kernel end, all streams (the per-layer component);
- ``busy_ms``: kernel time per class (gemm, attention, cast/copy, other; DeepEP notify, layout, dispatch, combine).

Usage: ``python benchmarks/extract_profile_data.py train.json > dsv3sim/workload/data/profile_data_train.json``
(train.json from github.com/deepseek-ai/profile-data; the extract is committed, the 3 MB trace is not).
"""
from __future__ import annotations

import bisect
import json
import sys
from collections import defaultdict
from pathlib import Path

TOKENS = 4096  # one 4K sequence per chunk
NORM_WIDTHS = (7168, 7168, 1536, 512)
SLICES = ("attn(F)", "dispatch(F)", "mlp(F)", "combine(F)", "combine(B)", "mlp(B)", "dispatch(B)", "attn(B)",
          "mlp(W)", "attn(W)")


def kernel_class(name: str) -> str:
    if "dpsk::ep" in name:
        for t in ("notify", "layout", "dispatch", "combine"):
            if t in name:
                return "deepep_" + t
    if "gemm" in name.lower() or "xmma" in name:
        return "gemm"
    if "flash" in name:
        return "attention"
    if any(t in name for t in ("cast", "transpose", "copy", "expand_to_fused")):
        return "cast_copy"
    return "other"


def _launched_kernels(ann: list[dict], launch: dict, ks: list[dict]) -> dict[int, list]:
    """Kernels per annotation index: those launched inside it, then the orphans (no launch record) by time."""
    starts = [a["ts"] for a in ann]
    of: dict[int, list] = defaultdict(list)
    orphans = []
    for k in ks:
        t = launch.get(k.get("args", {}).get("correlation"))
        if t is None:
            orphans.append(k)
            continue
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and t <= ann[i]["ts"] + ann[i]["dur"]:
            of[i].append(k)
    for k in orphans:  # by time, into the compute-stream annotation whose kernels span it
        for kl in of.values():
            c = [x for x in kl if x["tid"] == k["tid"]]
            if c and min(x["ts"] for x in c) <= k["ts"] <= max(x["ts"] + x["dur"] for x in c):
                kl.append(k)
                break
    return of


def _per_layer(ann: list[dict], of: dict[int, list]) -> dict:
    """Per slice: kernel span per occurrence and its mean, and the mean busy time per kernel class."""
    per: dict[str, dict] = {s: {"span_ms": [], "busy_ms": defaultdict(list)} for s in SLICES}
    for i, kl in sorted(of.items()):
        name = ann[i]["name"]
        per[name]["span_ms"].append((max(k["ts"] + k["dur"] for k in kl) - min(k["ts"] for k in kl)) / 1e3)
        by = defaultdict(float)
        for k in kl:
            by[kernel_class(k["name"])] += k["dur"] / 1e3
        for c, v in by.items():
            per[name]["busy_ms"][c].append(v)
    out = {}
    for s, v in per.items():
        n = len(v["span_ms"])
        out[s] = {"span_ms_mean": sum(v["span_ms"]) / n, "span_ms": [round(x, 3) for x in v["span_ms"]],
                  "busy_ms_mean": {c: round(sum(x) / n, 4) for c, x in sorted(v["busy_ms"].items())}}
    return out


def _transfer_beside_compute(ks: list[dict]) -> float:
    """Share of DeepEP transfer-kernel time with a compute kernel running beside it (the co-run slowdown applies
    only then, workload/overlap.py): the DeepEP stream's dispatch/combine against the union of the others."""
    comm_tids = {k["tid"] for k in ks if "dpsk::ep" in k["name"]}
    busy = []
    for a, b in sorted((k["ts"], k["ts"] + k["dur"]) for k in ks if k["tid"] not in comm_tids):
        if busy and a <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], b)
        else:
            busy.append([a, b])
    transfers = [k for k in ks if kernel_class(k["name"]) in ("deepep_dispatch", "deepep_combine")]
    beside = sum(max(0.0, min(k["ts"] + k["dur"], y) - max(k["ts"], x)) for k in transfers for x, y in busy)
    return round(beside / sum(k["dur"] for k in transfers), 4)


def _cast_transpose(ks: list[dict]) -> tuple[float, int]:
    """DeepSeek's FP8 cast-and-transpose kernels (per-channel 1x128 scales, the weight-gradient operands): the grid
    is (columns / 128, rows / 128), so their bytes are known: rows x cols x (2 B read + 1 B written) + FP32 scales.
    Returns (GB/s, number of kernels)."""
    ct = [k for k in ks if "per_channel_cast_and_transpose" in k["name"] and "swiglu" not in k["name"]]
    ct_bytes = sum(k["args"]["grid"][0] * 128 * k["args"]["grid"][1] * 128 * (3 + 4 / 128) for k in ct)
    return round(ct_bytes / sum(k["dur"] for k in ct) / 1e3, 1), len(ct)


def _layernorm_gbps(ann: list[dict], of: dict[int, list]) -> float:
    """DeepSeek's norm kernel (layer_norm::ln_fwd_kernel): attn(F) holds four per layer, largest first the attention
    input norm and the MoE input norm (the router's) on [T, 7168] and MLA's latent norms on [T, 1536] and [T, 512]
    (DeepSeek-V2 §2.1.2); each reads and writes its BF16 rows."""
    ln_b = ln_t = 0.0
    for i, kl in of.items():
        if ann[i]["name"] != "attn(F)":
            continue
        ln = sorted((k for k in kl if "ln_fwd_kernel" in k["name"]), key=lambda k: -k["dur"])
        for k, w in zip(ln, NORM_WIDTHS):
            ln_b += TOKENS * w * 2 * 2
            ln_t += k["dur"]
    return round(ln_b / ln_t / 1e3, 1)


def _stream_busy(ks: list[dict]) -> dict:
    """Kernel time per stream and kernel class (ms)."""
    streams = defaultdict(lambda: defaultdict(float))
    for k in ks:
        streams[str(k["tid"])][kernel_class(k["name"])] += k["dur"] / 1e3
    return {s: {c: round(v, 3) for c, v in sorted(d.items())} for s, d in streams.items()}


def extract(path: str) -> dict:
    ev = json.loads(Path(path).read_text())["traceEvents"]
    ann = sorted((e for e in ev if e.get("cat") == "user_annotation" and e["name"] in SLICES), key=lambda e: e["ts"])
    launch = {e["args"]["correlation"]: e["ts"] for e in ev
              if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
    ks = [e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    of = _launched_kernels(ann, launch, ks)
    t0 = min(k["ts"] for k in ks)
    t1 = max(k["ts"] + k["dur"] for k in ks)
    ct_gbps, ct_n = _cast_transpose(ks)
    return {"source": "github.com/deepseek-ai/profile-data train.json (H800, EP64, TP1, 4K, balanced routing, "
                      "one F&B chunk pair of 4 MoE layers, PP communication not included)",
            "extracted_by": "benchmarks/extract_profile_data.py", "n_layers": 4,
            "pair_span_ms": (t1 - t0) / 1e3,
            "transfer_beside_compute_fraction": _transfer_beside_compute(ks),
            "fp8_cast_transpose_GBps": ct_gbps,
            "fp8_cast_transpose_kernels": ct_n,
            "layernorm_GBps": _layernorm_gbps(ann, of),
            "stream_busy_ms": _stream_busy(ks),
            "per_layer": _per_layer(ann, of)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: extract_profile_data.py TRAIN_JSON")
    json.dump(extract(sys.argv[1]), sys.stdout, indent=1)
    print()
