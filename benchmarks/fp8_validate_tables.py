"""Re-price a committed ``validate --fp8`` run's compute on the H200 tables twice: the grouped FP8 expert GEMMs
from the default table (``impl=loop``: block-scaled cuBLAS per expert, DeepGEMM-class) and from the executable
model's own kernel (``impl=nn.gluon``, profiles/h200/kernels-fp8nn.csv); everything else as validate prices it.
Shows whether the FP8 validation error comes from the GEMM tables or from the rest of the measured spans.

A run made before the weight re-quantisation had its own span (``requant``) quantised the weights lazily inside
its first forward's ``mlp(F)``; the third view moves the quantiser's device time, read from the run's own
profiler (``_weight_quant_kernel``), out of ``mlp(F)`` into ``requant``, as the run now times it. The last
lines give the FP8-specific part: FP8 run minus the BF16 run of the same session, per component, measured
and tabled (the BF16 rows parsed from that run's log), and the tables' activation quantisation (the fused casts
``layer_ops`` prices before every FP8 GEMM) beside the run's quantisation kernels.

Usage (CPU, no GPU needed):
    python benchmarks/fp8_validate_tables.py [profiles/h200/validate-one-layer-fp8]
"""

from __future__ import annotations

import copy
import json
import re
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config  # noqa: E402
from dsv3sim.validate import gpu_tables as GT  # noqa: E402

MODEL_KERNEL = {("grouped_gemm", "fp8"): "nn.gluon"}  # the grouped FP8 GEMMs priced from the executable model's kernel


def bf16_rows(log: Path) -> dict[str, tuple[float, float]]:
    """name -> (measured, table) ms of the compute-vs-tables block of a BF16 validate log."""
    rows, on = {}, False
    for line in log.read_text().splitlines() if log.exists() else []:
        on = on or line.startswith("compute vs H200 profile tables")
        m = re.match(r"\s+(\S+)\s+([0-9.]+)\s+([0-9.]+)\s+[-+]", line) if on else None
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


def span_device_vs_wall(path: Path) -> list[tuple[str, float, float]]:
    """(span, device ms inside it in the run's profiled step, measured wall ms per step) of a validate result."""
    v = json.loads(path.read_text())
    wall = {c["name"]: c["measured_s"] * 1e3 for c in v["components"]}
    return [(o["op"], o["self_device_us"] / 1e3, wall[o["op"]]) for o in v.get("profiler_top_ops_rank0", [])
            if o["op"] in wall and o["count"] == 1]


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "profiles/h200/validate-one-layer-fp8")
    r = json.loads((run / "result.json").read_text())
    spec = types.SimpleNamespace(**(r["spec"] if isinstance(r["spec"], dict) else json.loads(r["spec"])))
    train = r["ranks"][0]["train"]
    train = train if isinstance(train, list) else [train]
    cfg = load_model_config(spec.model)
    out = {"loop": GT.compare_to_tables(cfg, spec, train, "H200"),
           "nn.gluon": GT.compare_to_tables(cfg, spec, train, "H200", kernel_impl=MODEL_KERNEL)}
    tr2 = copy.deepcopy(train)
    for r_ in tr2:
        wq = sum(o["self_device_us"] for o in r_.get("profiler_top_ops", []) if o["op"] == "_weight_quant_kernel")
        c = r_["component_s_per_step"]
        if wq and "requant" not in c:
            c["mlp(F)"] -= wq / 1e6
            c["requant"] = wq / 1e6
            r_.setdefault("requant_bytes_per_param", 6.0)  # that run's quantiser: two launches per weight
    out["loop, requant"] = GT.compare_to_tables(cfg, spec, tr2, "H200")
    print(f"{run}: measured compute {out['loop']['compute_measured_s'] * 1e3:.2f} ms")
    for k, v in out.items():
        print(f"  tables with grouped FP8 GEMMs impl={k:9s} {v['compute_table_s'] * 1e3:7.2f} ms  "
              f"error {v['compute_error']:+.1%}")
    print(f"  {'component':16s} {'measured':>9s} {'loop':>7s} {'nn.gluon':>9s}  (ms)")
    for a, b in zip(out["loop"]["rows"], out["nn.gluon"]["rows"], strict=True):
        print(f"  {a['name']:16s} {a['measured_s'] * 1e3:9.2f} {a['table_s'] * 1e3:7.2f} {b['table_s'] * 1e3:9.2f}")
    print("  weight quantisation as its own component (the run's _weight_quant_kernel time moved out of mlp(F)):")
    for a in out["loop, requant"]["rows"]:
        print(f"  {a['name']:16s} {a['measured_s'] * 1e3:9.2f} {a['table_s'] * 1e3:7.2f}  error {a['error']:+.1%}")
    bf = bf16_rows(run / "bf16_same_session_log.txt")
    if bf:
        print("  FP8 minus BF16 (same session), measured vs tables, ms:")
        for a in out["loop"]["rows"]:
            if a["name"] in bf:
                mb, tb = bf[a["name"]]
                print(f"  {a['name']:16s} {a['measured_s'] * 1e3 - mb:+8.2f} {a['table_s'] * 1e3 - tb:+8.2f}")
    quant = sum(o["self_device_us"] for o in train[0].get("profiler_top_ops", []) if o["op"] == "_quant_kernel")
    for name, f in (("BF16", run.parent / "validate-one-layer" / "validate.json"), ("FP8", run / "validation.json")):
        if f.exists():
            print(f"  {name} run ({f.parent.name}): span, device ms in the profiled step, measured wall ms: " + ", ".join(
                f"{s} {d:.1f} / {w:.1f}" for s, d, w in span_device_vs_wall(f)))
    cast_ms = out["loop"]["table_by_op_s"].get("fp8_cast_fused", 0.0) * 1e3  # the tables' fused activation casts
    print(f"  activation quantisation per step: tables (fused casts) {cast_ms:.2f} ms; run's "
          f"_quant_kernel {quant / 1e3:.2f} ms (profiled step; SwiGLU+quant kernels not in its top ops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
