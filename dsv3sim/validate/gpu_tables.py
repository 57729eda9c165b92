"""GPU runs: the measured compute components against the H200 profile tables (``dsv3sim.workload.layer_ops``
over ``dsv3sim.profile`` kernel times), for ``dsv3sim validate --device cuda``.

For every layer the run executed, ``training_layer`` gives attn(F/B/W) and mlp(F/B/W) at the run's tokens per
micro-batch, sequence length and routed rows (the run's routing); ``head_slices`` the output head. Measured
spans group the same kernels: table attn(F) (which includes the router GEMM) <-> measured attn(F) + gate(F);
table mlp(F) (which includes the shared expert) <-> measured mlp(F) + shared(F); backward = B + W. With FP8
compute (``--fp8``) the tables' GEMMs are their FP8 ones: the simulator's FP8 prediction against the FP8 run. Measured
backward of gate, head and embedding is inside "other", so those rows compare forward only for the head.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from dsv3sim.config.errors import ConfigError

GROUPS = {  # table slice(s) -> measured components
    "attn(F)": (("attn(F)",), ("attn(F)", "gate(F)")),
    "mlp(F)": (("mlp(F)",), ("mlp(F)", "shared(F)")),
    "attn(B)+attn(W)": (("attn(B)", "attn(W)"), ("attn(B)",)),
    "mlp(B)+mlp(W)": (("mlp(B)", "mlp(W)"), ("mlp(B)", "shared(B)")),
}


def gpu_name(device_name: str) -> str:
    for g in ("H200", "H100", "H800", "B200", "GB200", "A100"):
        if g in device_name.upper():
            return g
    raise ConfigError(f"no profile tables for GPU {device_name!r}")


def compare_to_tables(cfg, spec, train: list[dict], gpu: str) -> dict:
    from dsv3sim.workload.layer_ops import head_slices, training_layer

    rows = []
    gemm_dtype = "fp8" if getattr(spec, "fp8_compute", False) else "bf16"  # the run's GEMMs, the tables' too
    table: dict[str, float] = defaultdict(float)
    meas: dict[str, float] = defaultdict(float)
    for r in train:
        T = r["tokens_per_mb"]
        n_mb = r["microbatches"]
        for s, layers in r["stages"].items():
            for L in layers:
                rt = r["routing"].get(str(L), [])
                rows_per_mb = statistics.fmean(sum(e["expert_rows"]) for e in rt) if rt else 0
                local = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
                sl = training_layer(cfg, L, gpu=gpu, tokens=T, seq_len=spec.seq_len,
                                    expert_rows=max(int(round(rows_per_mb)), 1), local_experts=local,
                                    gemm_dtype=gemm_dtype, sm_fraction=1.0, recompute=False)
                for k, v in sl.times.items():
                    table[k] += v * n_mb / len(train)
            if int(s) == r.get("n_stages", spec.pp) - 1:
                hs = head_slices(cfg, gpu=gpu, tokens=T, sm_fraction=1.0)
                table["head(F)"] += hs.times.get("attn(F)", 0.0) * n_mb / len(train)
        for k, v in r["component_s_per_step"].items():
            meas[k] += v / len(train)
    for name, (tk, mk) in GROUPS.items():
        t, m = sum(table.get(k, 0.0) for k in tk), sum(meas.get(k, 0.0) for k in mk)
        rows.append(dict(name=name, measured_s=m, table_s=t, error=(t - m) / m if m else None))
    rows.append(dict(name="head(F)", measured_s=meas.get("head(F)", 0.0), table_s=table["head(F)"],
                     error=(table["head(F)"] - meas["head(F)"]) / meas["head(F)"] if meas.get("head(F)") else None))
    tm, tt = sum(r["measured_s"] for r in rows), sum(r["table_s"] for r in rows)
    return {"gpu": gpu, "gemm_dtype": gemm_dtype,
            "source": "dsv3sim.workload.layer_ops on dsv3sim.profile tables (profiles/h200)",
            "rows": rows, "compute_measured_s": tm, "compute_table_s": tt,
            "compute_error": (tt - tm) / tm if tm else None}
