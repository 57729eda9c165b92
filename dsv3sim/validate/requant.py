"""Calibration of the FP8 weight re-quantisation (``validate --fp8``): after each optimizer step the run
re-quantises every FP8 weight copy once (``train.py``, ``requant`` span; V3 §3.3: 128x128 blocks, the GEMM's
copy and the transposed copy Dgrad reads), with the model's own quantiser. Here the same quantiser runs on
stand-in weights of the rank's shapes, grouped as the run's modules quantise them (gate and up of the routed
experts as one operand, every other FP8-capable linear alone). The work is memory-bound and linear in the
elements: an expert stack above ``max_elems`` is timed at n and n / 4 experts and extrapolated (t = c + b e),
the per-call cost c counted once."""

from __future__ import annotations

import statistics

import torch

from dsv3sim.nn.layers import Linear
from dsv3sim.validate.alpha_beta import line_through


def fp8_operands(dense_modules: list[torch.nn.Module], expert_shapes: list[tuple[int, int, int]]
                 ) -> list[tuple[tuple[int, ...], ...]]:
    """Weight shapes of each FP8 operand: the FP8-capable linears of ``dense_modules`` ([N, K] each) and per MoE
    layer of the rank ``(E_r, I, H)`` -> gate+up ([E_r, I, H] twice) and down ([E_r, H, I])."""
    out: list[tuple[tuple[int, ...], ...]] = []
    seen: set[int] = set()
    for m in dense_modules:
        for lin in m.modules():
            if isinstance(lin, Linear) and lin.fp8_capable and id(lin) not in seen:
                seen.add(id(lin))
                out.append((tuple(lin.weight.shape),))
    for e, i, h in expert_shapes:
        out += [((e, i, h), (e, i, h)), ((e, h, i),)]
    return out


def _quantiser(device: torch.device):
    """(ws, old) -> operands: the run's re-quantisation (nn/fp8_weights.py ``quantise``, in place into ``old``) in
    the layout the run caches on this device: "grouped" stacks on a GPU with Triton, else the "torch" layout, one
    [sum N, K] operand per expert with its transposed copy (every entry has one after the step's backward)."""
    from dsv3sim.nn import fp8_weights as W

    if device.type == "cuda":
        from dsv3sim.nn import fp8_experts as X

        if X.triton_ok(torch.empty(0, device=device), 128, 128):
            return lambda ws, old: W.quantise(ws, W.GROUPED, old)

    def per_expert(ws, old):
        experts = list(zip(*(w.unbind(0) for w in ws))) if ws[0].dim() == 3 else [ws]
        return [W.quantise(e, W.TORCH, o, transposed=True)
                for e, o in zip(experts, old or [None] * len(experts))]
    return per_expert


def profile_requant(operands: list[tuple[tuple[int, ...], ...]], device: torch.device, dtype: torch.dtype,
                    samples, reps: int, max_elems: int = 1 << 30) -> dict:
    """Seconds of re-quantising all ``operands`` once, per sample; ``samples(fn)`` gives ``reps`` samples of fn
    after a warm-up."""
    quant = _quantiser(device)

    def sample_times(shapes: tuple[tuple[int, ...], ...]) -> list[float]:
        ws = [torch.randn(s, dtype=dtype, device=device) * 0.02 for s in shapes]
        old = quant(ws, None)
        return samples(lambda: quant(ws, old))

    total = [0.0] * reps
    for shapes in operands:
        n = sum(torch.Size(s).numel() for s in shapes)
        if n <= max_elems or len(shapes[0]) < 3:
            ts = sample_times(shapes)
        else:  # an expert stack: n1 and n1 / 4 experts, linear in experts
            e = shapes[0][0]
            e1 = max(1, int(e * max_elems / n))
            e2 = max(1, e1 // 4)
            t1 = statistics.median(sample_times(tuple((e1, *s[1:]) for s in shapes)))
            t2 = statistics.median(sample_times(tuple((e2, *s[1:]) for s in shapes)))
            c, b = line_through(e1, t1, e2, t2)
            ts = [c + b * e] * reps
        total = [a + t for a, t in zip(total, ts)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"F": statistics.median(total), "B": 0.0, "F_s": total, "B_s": [0.0] * reps,
            "operands": len(operands), "elements": sum(torch.Size(s).numel() for o in operands for s in o)}
