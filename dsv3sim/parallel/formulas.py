"""Published closed forms for pipeline bubbles and per-device memory (deepseek-ai/DualPipe README table).

"Based on the same number of PP stages" (README): PP = model stages; F = forward of a chunk, B = FULL
backward of a chunk, W = its weight-gradient part, F&B = two mutually overlapped forward and backward chunks.
  method     bubble                  params/device  activations/device  devices
  1F1B       (PP-1)(F+B)             1x             PP                  PP
  ZB1P       (PP-1)(F+B-2W)          1x             PP                  PP
  DualPipe   (PP/2-1)(F&B+B-3W)      2x             PP+1                PP
  DualPipeV  (PP/2-1)(F&B+B-3W)      2x             PP+1                PP/2
Our ``pp`` argument counts ranks (devices), so PP = pp for all but DualPipeV, where PP = 2*pp.
"""

from __future__ import annotations

from dsv3sim.config.errors import ConfigError


def stages(name: str, pp: int) -> int:
    return 2 * pp if name == "dualpipev" else pp


def bubble_closed_form(name: str, pp: int, f: float, b: float, w: float, fb: float) -> float:
    n = stages(name, pp)
    if name == "1f1b":
        return (n - 1) * (f + b)
    if name == "zb1p":
        return (n - 1) * (f + b - 2 * w)
    if name in ("dualpipe", "dualpipev"):
        return (n / 2 - 1) * (fb + b - 3 * w)
    raise ConfigError(f"no closed-form bubble for schedule {name!r}")


def activation_closed_form(name: str, pp: int) -> int:
    n = stages(name, pp)
    return n + 1 if name in ("dualpipe", "dualpipev") else n


def param_copies_closed_form(name: str) -> int:
    return 2 if name in ("dualpipe", "dualpipev") else 1


def closed_form_exact(name: str, f: float, b: float, w: float, fb: float) -> bool:
    """Where our executor (no p2p latency) reproduces the closed form exactly, found by sweeping it and
    kept true by tests/parallel/test_executor.py: 1F1B always; ZB1P when W <= F and W <= B-W; DualPipe(V)
    when F = B-W (forward = input backward), W <= F and B <= F&B <= F+B. Outside, the formula is an
    approximation (the simulated bubble may be larger or smaller)."""
    eps = 1e-12 * max(1.0, f, b, w, fb)
    if name == "1f1b":
        return True
    if name == "zb1p":
        return w <= f + eps and w <= b - w + eps
    if name in ("dualpipe", "dualpipev"):
        return abs(f - (b - w)) <= eps and w <= f + eps and b - eps <= fb <= f + b + eps
    return False
