"""Cases that time the model's OWN operators (``dsv3sim.nn``) at given shapes, beside ``ops.py``'s references.

Each ``nn_*`` op calls the module-level function the model's layers call (``nn/layers.py``, ``nn/mla.py``,
``nn/moe.py``, ``nn/routing.py``), with weights of the config's widths (DeepSeek-V3 by default):

* ``nn_rmsnorm`` (m, n): ``layers.rms_norm`` (FP32 inside, V3 §3.3);
* ``nn_rope`` (m, h, d): ``layers.apply_rope`` on [1, M, H, d_r];
* ``nn_gate`` (m): ``routing.gate_topk`` (sigmoid scores, group-limited top-8);
* ``nn_routed_experts`` (e, m, n=I, k=H): ``moe.routed_experts`` over E experts x m tokens (bf16: three
  ``torch._grouped_mm``; fp8: per-expert ``fp8_linear``, which also quantises weights each call, as training does);
* ``nn_shared_expert`` (m, n=I, k=H): ``moe.shared_expert``;
* ``nn_attn_decode`` (b, t, h): ``mla.attention_absorbed`` with one query token and a t-token latent cache,
  the W^UK / W^UV absorption included;
* ``nn_attn_prefill`` (b, s, h): ``mla.attention_naive`` (up-projects K, V from the latent, then causal SDPA).

FLOPs are the GEMM/attention FLOPs of each function (2 per multiply-add), bytes the fewest HBM bytes.
"""

from __future__ import annotations

import math

import torch

from dsv3sim.config.model import load_model_config
from dsv3sim.profile.ops import BF16, Case, _gen, _randn, _sets


def _cfg(name: str = "deepseek-v3"):
    return load_model_config(name)


def nn_rmsnorm(*, m: int, n: int, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    from dsv3sim.nn.layers import rms_norm
    g = _gen(device, seed)
    w = _randn((n,), device, g)
    nb = 4.0 * m * n + 2 * n
    return Case(fn=lambda x: rms_norm(x, w, 1e-6), sets=_sets(lambda: (_randn((m, n), device, g),), nb, device),
                flops=4.0 * m * n, bytes=nb, impl="nn.layers.rms_norm")


def nn_rope(*, m: int, h: int, d: int = 64, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    from dsv3sim.nn.layers import apply_rope
    g = _gen(device, seed)
    ang = torch.rand((m, d // 2), device=device, generator=g) * 6.28
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]
    nb = 4.0 * m * h * d
    sets = _sets(lambda: (_randn((1, m, h, d), device, g),), nb, device)
    return Case(fn=lambda x: apply_rope(x, cos, sin), sets=sets,
                flops=3.0 * m * h * d, bytes=nb, impl="nn.layers.apply_rope")


def nn_gate(*, m: int, n: int = 256, k: int = 7168, device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    from dsv3sim.nn.routing import gate_topk
    cfg = _cfg()
    g = _gen(device, seed)
    w = _randn((n, k), device, g, scale=0.02)
    bias = torch.zeros(n, device=device)
    nb = 2.0 * m * k + 2.0 * n * k + 64 * m
    return Case(fn=lambda x: gate_topk(x, w, bias, cfg), sets=_sets(lambda: (_randn((m, k), device, g),), nb, device),
                flops=2.0 * m * n * k, bytes=nb, impl="nn.routing.gate_topk")


def nn_routed_experts(*, e: int, m: int, n: int = 2048, k: int = 7168, dtype: str = "bf16", device: str,
                      seed: int = 0) -> Case:
    from dsv3sim.nn.moe import routed_experts
    g = _gen(device, seed)
    tot = e * m
    tpe = torch.full((e,), m, dtype=torch.int64, device=device)
    eb = 1 if dtype == "fp8" else 2
    nb = (tot * k + 3 * e * n * k) * eb + 2 * tot * k + 4 * tot * n

    def make():
        return (_randn((tot, k), device, g), _randn((e, n, k), device, g, scale=0.02),
                _randn((e, n, k), device, g, scale=0.02), _randn((e, k, n), device, g, scale=0.02))
    fp8 = dtype == "fp8"
    return Case(fn=lambda x, wg, wu, wd: routed_experts(x, tpe, wg, wu, wd, fp8=fp8),
                sets=_sets(make, nb, device, max_sets=4), flops=6.0 * tot * n * k, bytes=nb,
                impl=f"nn.moe.routed_experts(fp8={fp8})", graph=not fp8)


def nn_shared_expert(*, m: int, n: int = 2048, k: int = 7168, dtype: str = "bf16", device: str, seed: int = 0) -> Case:
    from dsv3sim.nn.moe import shared_expert
    g = _gen(device, seed)
    nb = 2.0 * (m * k + 3 * n * k) + 2 * m * k + 4 * m * n

    def make():
        return (_randn((m, k), device, g), _randn((n, k), device, g, scale=0.02), _randn((n, k), device, g, scale=0.02),
                _randn((k, n), device, g, scale=0.02))
    return Case(fn=shared_expert, sets=_sets(make, nb, device), flops=6.0 * m * n * k, bytes=nb,
                impl="nn.moe.shared_expert")


def nn_attn_decode(*, b: int, t: int, h: int, dc: int = 512, dr: int = 64, dn: int = 128, dv: int = 128,
                   device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    from dsv3sim.nn.mla import attention_absorbed
    g = _gen(device, seed)
    wkv_b = _randn((h * (dn + dv), dc), device, g, scale=0.02)
    scale = 1.0 / math.sqrt(dn + dr)
    flops = 2.0 * b * h * t * (2 * dc + dr) + 2.0 * b * h * dc * (dn + dv)
    nb = 2.0 * b * t * (dc + dr) + 2.0 * h * (dn + dv) * dc

    def make():
        return (_randn((b, 1, h, dn), device, g), _randn((b, 1, h, dr), device, g), _randn((b, t, dc), device, g),
                _randn((b, t, dr), device, g))
    return Case(fn=lambda qn, qp, kv, kp: attention_absorbed(qn, qp, kv, kp, wkv_b, n_heads=h, d_nope=dn, d_v=dv,
                                                             scale=scale, start=t - 1),
                sets=_sets(make, nb, device), flops=flops, bytes=nb, impl="nn.mla.attention_absorbed")


def nn_attn_prefill(*, b: int, s: int, h: int, dc: int = 512, dr: int = 64, dn: int = 128, dv: int = 128,
                    device: str, seed: int = 0, dtype: str = "bf16") -> Case:
    from dsv3sim.nn.mla import attention_naive
    g = _gen(device, seed)
    wkv_b = _randn((h * (dn + dv), dc), device, g, scale=0.02)
    scale = 1.0 / math.sqrt(dn + dr)
    flops = 2.0 * b * h * s * s / 2 * (dn + dr + dv) + 2.0 * b * s * dc * h * (dn + dv)
    nb = 2.0 * b * s * (h * (dn + dr) + dc + dr + h * dv)

    def make():
        return (_randn((b, s, h, dn), device, g), _randn((b, s, h, dr), device, g), _randn((b, s, dc), device, g),
                _randn((b, s, dr), device, g))
    return Case(fn=lambda qn, qp, kv, kp: attention_naive(qn, qp, kv, kp, wkv_b, n_heads=h, d_nope=dn, d_v=dv,
                                                          scale=scale),
                sets=_sets(make, nb, device, max_sets=4), flops=flops, bytes=nb, impl="nn.mla.attention_naive")


NN_BUILDERS = {
    "nn_rmsnorm": nn_rmsnorm, "nn_rope": nn_rope, "nn_gate": nn_gate, "nn_routed_experts": nn_routed_experts,
    "nn_shared_expert": nn_shared_expert, "nn_attn_decode": nn_attn_decode, "nn_attn_prefill": nn_attn_prefill,
}
_ = BF16
