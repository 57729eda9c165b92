"""GPU runs: the measured compute components against the H200 profile tables (``dsv3sim.workload.layer_ops``
over ``dsv3sim.profile`` kernel times), for ``dsv3sim validate --device cuda``.

For every layer the run executed, ``training_layer`` gives attn(F/B/W) and mlp(F/B/W) at the run's tokens per
micro-batch, sequence length and routed rows (the run's routing); ``head_slices`` the output head. Measured
spans group the same kernels: table attn(F) (which includes the router GEMM) <-> measured attn(F) + gate(F);
table mlp(F) (which includes the shared expert) <-> measured mlp(F) + shared(F); backward = B + W. With FP8
compute (``--fp8``) the tables' GEMMs are their FP8 ones: the simulator's FP8 prediction against the FP8 run. Measured
backward of gate, head and embedding is inside "other", so those rows compare forward only for the head.
With FP8 compute the ``requant`` row compares the run's once-per-step re-quantisation of its FP8 weight copies
with the simulator's memory-bound price (``workload.optimizer_step``) of the bytes per parameter the run's
quantiser moves (``requant_bytes_per_param``: 6 for the two-launch kernel, 4 for the one-pass kernel that
production's figure assumes).
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


def fp8_weight_elements(cfg, layers) -> int:
    """Elements of the FP8 weight copies of ``layers`` (attention linears, dense FFN or shared + local routed
    experts), the ones re-quantised after each optimizer step."""
    from dsv3sim.workload.layer_extras import attention_linears

    n = 0
    for i, local in layers:
        n += sum(k * o for _, k, o in attention_linears(cfg))
        if cfg.is_moe_layer(i):
            n += 3 * cfg.hidden_size * (cfg.shared_intermediate_size + local * cfg.moe_intermediate_size)
        else:
            n += 3 * cfg.hidden_size * cfg.intermediate_size
    return n


def requant_table_s(cfg, layers, gpu: str, bytes_per_param: float | None = None) -> float:
    """The simulator's per-step re-quantisation of the FP8 weights of ``layers`` [(layer, local experts)], at
    ``bytes_per_param`` (default: ``workload.optimizer_step``'s production figure)."""
    from dsv3sim.workload.kernels import MEM_EFF, gpu_perf
    from dsv3sim.workload.optimizer_step import REQUANT_BYTES_PER_PARAM

    b = REQUANT_BYTES_PER_PARAM if bytes_per_param is None else bytes_per_param
    return b * fp8_weight_elements(cfg, layers) / (gpu_perf(gpu).hbm_bw * MEM_EFF)


def _requant_of_rank(cfg, spec, r: dict, gpu: str) -> float:
    local = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
    held = [(L, local) for ls in r["stages"].values() for L in ls]
    return requant_table_s(cfg, held, gpu, r.get("requant_bytes_per_param"))


def _rows(table: dict, meas: dict, alone: tuple[str, ...]) -> list[dict]:
    """The GROUPS rows, then the components ``alone`` compared one to one."""
    rows = []
    for name, (tk, mk) in GROUPS.items():
        t, m = sum(table.get(k, 0.0) for k in tk), sum(meas.get(k, 0.0) for k in mk)
        rows.append(dict(name=name, measured_s=m, table_s=t, error=(t - m) / m if m else None))
    for name in alone:
        m, t = meas.get(name, 0.0), table.get(name, 0.0)
        rows.append(dict(name=name, measured_s=m, table_s=t, error=(t - m) / m if m else None))
    return rows


def compare_to_tables(cfg, spec, train: list[dict], gpu: str, *,
                      kernel_impl: dict[tuple[str, str], str] | None = None) -> dict:
    """The run's measured compute per step against the tables' (module doc). ``kernel_impl``: (op, dtype) -> the
    profile implementation pricing that kernel (``layer_ops.training_layer``), e.g. the executable model's own
    grouped FP8 kernel; default the tables' default implementations. ``table_by_op_s``: the tables' per-step
    seconds of each kernel op over the layers (all SMs; the head not included)."""
    from dsv3sim.workload.layer_ops import head_slices, training_layer

    gemm_dtype = "fp8" if getattr(spec, "fp8_compute", False) else "bf16"  # the run's GEMMs, the tables' too
    table: dict[str, float] = defaultdict(float)
    meas: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    # a run that timed its once-per-step weight re-quantisation (older runs quantised inside their first mlp(F))
    requant = gemm_dtype == "fp8" and any("requant" in r["component_s_per_step"] for r in train)
    for r in train:
        T = r["tokens_per_mb"]
        n_mb = r["microbatches"]
        if requant:
            table["requant"] += _requant_of_rank(cfg, spec, r, gpu) / len(train)
        for s, layers in r["stages"].items():
            for L in layers:
                rt = r["routing"].get(str(L), [])
                rows_per_mb = statistics.fmean(sum(e["expert_rows"]) for e in rt) if rt else 0
                local = cfg.n_routed_experts // spec.ep if cfg.is_moe else 0
                sl = training_layer(cfg, L, gpu=gpu, tokens=T, seq_len=spec.seq_len,
                                    expert_rows=max(int(round(rows_per_mb)), 1), local_experts=local,
                                    gemm_dtype=gemm_dtype, sm_fraction=1.0, recompute=False,
                                    kernel_impl=kernel_impl)
                for k, v in sl.times.items():
                    table[k] += v * n_mb / len(train)
                for k, v in sl.op_times.items():
                    by_op[k] += v * n_mb / len(train)
            if int(s) == r.get("n_stages", spec.pp) - 1:
                hs = head_slices(cfg, gpu=gpu, tokens=T, sm_fraction=1.0)
                table["head(F)"] += hs.times.get("attn(F)", 0.0) * n_mb / len(train)
        for k, v in r["component_s_per_step"].items():
            meas[k] += v / len(train)
    rows = _rows(table, meas, ("head(F)",) + (("requant",) if requant else ()))
    tm, tt = sum(r["measured_s"] for r in rows), sum(r["table_s"] for r in rows)
    return {"gpu": gpu, "gemm_dtype": gemm_dtype,
            "source": "dsv3sim.workload.layer_ops on dsv3sim.profile tables (profiles/h200)",
            "rows": rows, "compute_measured_s": tm, "compute_table_s": tt, "table_by_op_s": dict(by_op),
            "compute_error": (tt - tm) / tm if tm else None}
