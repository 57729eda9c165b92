"""Analytic memory per GPU of a training layout, to prune the search before anything is simulated.

The same itemisation the step model reports (workload/training.py memory rows; tests/plan/test_memory.py checks
the two agree): per pipeline rank, BF16 weights + FP32 gradients of the stages it holds (DualPipe: two copies),
FP32 master weights and BF16 AdamW moments sharded by ZeRO-1 (non-expert parameters over DP, routed experts over
DP/EP) — DeepSeek-V3 §3.3.3, ``cost.memory.training_state_bytes`` — and activations per token per layer
(``cost.memory.activation_bytes_per_token_per_layer``, V3 §3.2.3 recomputation and FP8 caching) times the
schedule's peak in-flight micro-batch-stages (``parallel.activation_peaks``).

Schedules are generated with ``min(microbatches, 2 pp + 2)`` micro-batches: a rank's peak of in-flight
micro-batches is reached during warm-up and stays the same once there are at least 2 pp (tested), so the
pre-screen costs milliseconds even for thousands of micro-batches.
"""

from __future__ import annotations

from functools import lru_cache

from dsv3sim.config.model import ModelConfig, load_model_config
from dsv3sim.cost.memory import activation_bytes_per_token_per_layer, training_state_bytes
from dsv3sim.parallel import activation_peaks, generate

GiB = 2**30


@lru_cache(maxsize=256)
def _peaks(schedule: str, pp: int, microbatches: int) -> tuple[int, ...]:
    m = min(microbatches, 2 * pp + 2)
    if schedule in ("dualpipe", "dualpipev") and m % 2:
        m += 1
    s = generate(schedule, pp, max(m, 2 if schedule.startswith("dualpipe") else 1))
    pk = activation_peaks(s)
    return tuple(pk[r] for r in range(pp)), tuple(tuple(sorted({s.stage_of(r, c) for c in range(s.n_chunks)}))
                                                  for r in range(pp)), s.n_chunks


def stage_layers(cfg: ModelConfig, pp: int) -> list[list[int]]:
    """The step model's layer split (workload.training.stage_layers), imported lazily to keep this cheap."""
    from dsv3sim.workload.training import stage_layers as sl

    return sl(cfg, pp)


@lru_cache(maxsize=4096)
def _stage_params(model: str, pp: int, stage: int) -> tuple[float, float]:
    """(non-expert, routed-expert) parameters of one stage, as the step model counts them."""
    from dsv3sim.workload.training import stage_params

    cfg = load_model_config(model)
    return stage_params(cfg, stage_layers(cfg, pp)[stage], stage == 0, stage == pp - 1)


@lru_cache(maxsize=4096)
def _act_per_token(model: str, pp: int, stage: int, recompute: bool) -> float:
    cfg = load_model_config(model)
    tot = 0.0
    for i in stage_layers(cfg, pp)[stage]:
        moe = cfg.is_moe and cfg.is_moe_layer(min(i, cfg.num_hidden_layers - 1))
        tot += activation_bytes_per_token_per_layer(cfg, moe, recompute_norm_and_up_proj=recompute)
    return tot


def training_memory(*, model: str, pp: int, dp: int, ep: int, schedule: str, microbatches: int, mb_tokens: int,
                    recompute: bool = True, redundant_experts: int = 0, zero1: bool = True) -> list[dict]:
    """Per pipeline rank: bytes by component and ``total_bytes`` (the step model's memory rows)."""
    cfg = load_model_config(model)
    peaks, stages_of, n_chunks = _peaks(schedule, pp, microbatches)
    dp_ep = max(1, dp // ep)
    red = (cfg.n_routed_experts + redundant_experts) / cfg.n_routed_experts if cfg.is_moe else 1.0
    rows = []
    for r in range(pp):
        stages = stages_of[r]
        ne = sum(_stage_params(model, pp, s)[0] for s in stages)
        ex = sum(_stage_params(model, pp, s)[1] for s in stages)
        if n_chunks == 2 and len(stages) == 1:  # DualPipe keeps two copies even of the same stage
            ne, ex = 2 * ne, 2 * ex
        ex_local = ex / ep * red
        st_ne = training_state_bytes(ne, dp, zero1)
        st_ex = training_state_bytes(ex_local, dp_ep, zero1)
        n_layers = sum(len(stage_layers(cfg, pp)[s]) for s in stages)
        act_tok = sum(_act_per_token(model, pp, s, recompute) for s in stages)
        act = mb_tokens * act_tok / max(n_layers, 1) * (n_layers / len(stages)) * peaks[r]
        tot = st_ne.total + st_ex.total + act
        rows.append({"rank": r, "weights_bytes": st_ne.weights + st_ex.weights,
                     "gradients_bytes": st_ne.gradients + st_ex.gradients,
                     "master_weights_bytes": st_ne.master_weights + st_ex.master_weights,
                     "optimizer_moments_bytes": st_ne.optimizer_moments + st_ex.optimizer_moments,
                     "activations_bytes": act, "total_bytes": tot, "activation_microbatch_stages": peaks[r]})
    return rows


def peak_bytes(**kw) -> float:
    return max(r["total_bytes"] for r in training_memory(**kw))
