"""Re-price a committed ``validate --fp8`` run's compute on the H200 tables twice: the grouped FP8 expert GEMMs
from the default table (``impl=loop``: block-scaled cuBLAS per expert, DeepGEMM-class) and from the executable
model's own kernel (``impl=nn.gluon``, profiles/h200/kernels-fp8nn.csv); everything else as validate prices it.
Shows whether the FP8 validation error comes from the GEMM tables or from the rest of the measured spans.

Usage (CPU, no GPU needed):
    python benchmarks/fp8_validate_tables.py [profiles/h200/validate-one-layer-fp8]
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsv3sim.config.model import load_model_config  # noqa: E402
from dsv3sim.validate import gpu_tables as GT  # noqa: E402
from dsv3sim.workload import kernels as KW  # noqa: E402


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "profiles/h200/validate-one-layer-fp8")
    r = json.loads((run / "result.json").read_text())
    spec = types.SimpleNamespace(**(r["spec"] if isinstance(r["spec"], dict) else json.loads(r["spec"])))
    train = r["ranks"][0]["train"]
    train = train if isinstance(train, list) else [train]
    cfg = load_model_config(spec.model)
    out = {"loop": GT.compare_to_tables(cfg, spec, train, "H200")}
    plain = KW.kernel_time

    def model_kernel(gpu, op, dtype, sms=None, **shape):  # the grouped FP8 GEMMs from the nn.gluon rows
        if op == "grouped_gemm" and dtype == "fp8":
            shape["impl"] = "nn.gluon"
        return plain(gpu, op, dtype, sms=sms, **shape)

    KW.kernel_time = model_kernel
    KW._op_time_cached.cache_clear()
    try:
        out["nn.gluon"] = GT.compare_to_tables(cfg, spec, train, "H200")
    finally:
        KW.kernel_time = plain
        KW._op_time_cached.cache_clear()
    print(f"{run}: measured compute {out['loop']['compute_measured_s'] * 1e3:.2f} ms")
    for k, v in out.items():
        print(f"  tables with grouped FP8 GEMMs impl={k:9s} {v['compute_table_s'] * 1e3:7.2f} ms  "
              f"error {v['compute_error']:+.1%}")
    print(f"  {'component':16s} {'measured':>9s} {'loop':>7s} {'nn.gluon':>9s}  (ms)")
    for a, b in zip(out["loop"]["rows"], out["nn.gluon"]["rows"], strict=True):
        print(f"  {a['name']:16s} {a['measured_s'] * 1e3:9.2f} {a['table_s'] * 1e3:7.2f} {b['table_s'] * 1e3:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
