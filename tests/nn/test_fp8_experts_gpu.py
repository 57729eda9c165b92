"""Grouped block-scaled FP8 kernels (nn/fp8_triton.py; nn/fp8_gluon.py on Hopper) against the CPU emulation
(nn/fp8.py) on the same quantisation tiles: ragged expert batches (empty experts, partial tiles, odd and even
block counts), K not a multiple of 512 (nor of 128), N not a multiple of 128. -m gpu."""

from __future__ import annotations

import pytest
import torch

from dsv3sim.nn import fp8 as F8

pytestmark = pytest.mark.gpu
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _rel(a, b):
    return float((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm())


def _same_bytes(xs, ys) -> bool:
    """Pairwise bit-identical: FP8 tensors compared as bytes, FP32 scales as values."""
    return all(torch.equal(a.view(torch.uint8) if a.dtype != torch.float32 else a,
                           b.view(torch.uint8) if b.dtype != torch.float32 else b) for a, b in zip(xs, ys))


def _kernels():
    pytest.importorskip("triton")
    from dsv3sim.nn import fp8_triton as K

    return K


def _small_moe(tiny, seed: int):
    """A 256-wide BF16 MoE layer of ``tiny`` on the GPU, weights N(0, 0.05) from ``seed``."""
    from dsv3sim.nn.moe import MoE

    torch.manual_seed(seed)
    moe = MoE(tiny.with_(hidden_size=256, moe_intermediate_size=128), 1).cuda().bfloat16()
    for p in moe.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    return moe


def _backend(name: str, monkeypatch):
    """Force nn/fp8_triton.py's GEMMs onto one backend; gluon only on compute capability 9.x."""
    K = _kernels()
    if name == "gluon" and torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon kernels are Hopper-only")
    monkeypatch.setattr(K, "BACKEND", name)
    return K


def _gemm_fn(K, backend: str, cfg: dict):
    if backend == "triton" or not cfg:
        return lambda *a: K.grouped_gemm(*a, cfg=cfg or None)
    from dsv3sim.nn import fp8_gluon as G

    return lambda *a: G.grouped_gemm(*a, cfg=cfg)


TRITON_GEMM = [(384, 256, {}), (1280, 384, {"BM": 128, "num_warps": 8}), (2112, 640, {}),
               (7168, 512, {"BN": 64, "maxnreg": 128}), (7168, 512, {})]
GLUON_GEMM = [(384, 256, {}), (1280, 576, {}), (2112, 640, {"STAGES": 3}), (7168, 512, {}),
              (1280, 384, {"overlap": False}), (2112, 256, {"BM": 64, "num_warps": 4}), (208, 128, {})]


@cuda
@pytest.mark.parametrize(("backend", "k", "n", "cfg"), [("triton", *c) for c in TRITON_GEMM]
                         + [("gluon", *c) for c in GLUON_GEMM])
def test_grouped_gemm_matches_emulation(backend, k, n, cfg, monkeypatch):
    from dsv3sim.nn.fp8_experts import layout_from_counts

    K = _backend(backend, monkeypatch)
    gemm = _gemm_fn(K, backend, cfg)
    g = torch.Generator().manual_seed(k)
    counts = torch.tensor([0, 200, 1, 128, 0, 77])
    rows = int(counts.sum())
    x = torch.randn(rows, k, generator=g)
    w = torch.randn(len(counts), n, k, generator=g) * 0.05
    lay = layout_from_counts(counts.cuda(), rows)
    xq, xs, _, _ = K.quant(x.cuda().bfloat16(), src=lay.src, rows_out=lay.rows)
    q, s, qt, st = K.weight_quant([w.cuda()])
    assert torch.equal(qt.view(torch.uint8), q.transpose(1, 2).contiguous().view(torch.uint8))  # Dgrad copy
    assert torch.equal(st, s.transpose(1, 2))
    out = gemm(xq, xs, q, s, lay.tile_expert)[lay.pos].float().cpu()
    xb = x.bfloat16().float()
    ref, r0 = [], 0
    for e, c in enumerate(counts.tolist()):
        if c:
            aq, sa = F8.quantize_1x128(xb[r0:r0 + c])
            bq, sb = F8.quantize_128x128(w[e])
            ref.append(F8.gemm_emulated(aq, sa, bq, sb, b_block=True))
            r0 += c
    assert _rel(out, torch.cat(ref)) < 1e-2  # BF16 output (2^-9); identical FP8 operands
    # Dgrad operand: the transposed 128x128 blocks give x @ W (not W^T)
    dy = torch.randn(rows, n, generator=g)
    dq, ds, _, _ = K.quant(dy.cuda().bfloat16(), src=lay.src, rows_out=lay.rows)
    dx = gemm(dq, ds, qt, st, lay.tile_expert)[lay.pos].float().cpu()
    ref, r0 = [], 0
    for e, c in enumerate(counts.tolist()):
        if c:
            aq, sa = F8.quantize_1x128(dy.bfloat16().float()[r0:r0 + c])
            bq, sb = F8.quantize_128x128(w[e])
            ref.append(F8.gemm_emulated(aq, sa, bq.float().t().to(F8.FP8), sb.t(), b_block=True))
            r0 += c
    assert _rel(dx, torch.cat(ref)) < 1e-2


@cuda
@pytest.mark.parametrize(("backend", "n", "k", "cfg"), [
    ("triton", 256, 384, {}), ("triton", 384, 1280, {"BM": 128, "num_warps": 8}), ("triton", 128, 2112, {}),
    ("gluon", 256, 384, {}), ("gluon", 576, 1280, {}), ("gluon", 128, 2112, {"overlap": False}),
    ("gluon", 384, 640, {"BM": 64, "num_warps": 4})])
def test_grouped_wgrad_matches_emulation(backend, n, k, cfg, monkeypatch):
    from dsv3sim.nn.fp8_experts import layout_from_counts

    K = _backend(backend, monkeypatch)
    if backend == "gluon" and cfg:
        from dsv3sim.nn import fp8_gluon as G

        wgrad = G.grouped_wgrad
    else:
        wgrad = K.grouped_wgrad
    g = torch.Generator().manual_seed(n + k)
    counts = torch.tensor([3, 0, 300, 129, 520])  # 1, 0, 3, 2, 5 token tiles
    rows = int(counts.sum())
    dy = torch.randn(rows, n, generator=g).bfloat16()
    x = torch.randn(rows, k, generator=g).bfloat16()
    lay = layout_from_counts(counts.cuda(), rows)
    _, _, dqt, dst = K.quant(dy.cuda(), src=lay.src, rows_out=lay.rows, rowwise=False, colwise=True)
    _, _, xqt, xst = K.quant(x.cuda(), src=lay.src, rows_out=lay.rows, rowwise=False, colwise=True)
    dw = wgrad(dqt, dst, xqt, xst, lay.tile_start, lay.n_tiles, n, out_dtype=torch.float32,
               cfg=cfg or None).cpu()
    r0 = 0
    for e, c in enumerate(counts.tolist()):
        if c == 0:
            assert float(dw[e].abs().max()) == 0.0
            continue
        gq, sg = F8.quantize_1x128(dy[r0:r0 + c].float().t())
        xq, sx = F8.quantize_1x128(x[r0:r0 + c].float().t())
        # the column-wise (128-token) quantiser: same scales, same FP8 bytes (x * IEEE reciprocal, as the CPU)
        t0 = int(lay.tile_start[e]) * 128
        diff = float((dqt[:, t0:t0 + c].cpu().view(torch.uint8) != gq.view(torch.uint8)).float().mean())
        assert diff == 0.0, f"{diff:.2e} of the FP8 bytes differ"
        assert torch.allclose(dst[int(lay.tile_start[e]):int(lay.tile_start[e]) + -(-c // 128)].t().cpu(), sg)
        ref = F8.gemm_emulated(gq, sg, xq, sx, b_block=False)
        # FP32 output; the tensor cores accumulate FP8 products with ~14 mantissa bits inside a 128 chunk
        # (V3 §3.3.2), which the emulation models as FP32
        assert _rel(dw[e], ref) < 1e-2
        r0 += c


@cuda
@pytest.mark.parametrize("backend", ["triton", "gluon"])
def test_fp8_experts_fwd_bwd_match_cpu_emulation(backend, monkeypatch):
    """The whole FP8 expert path (gather+quant, grouped GEMMs, fused SwiGLU+quant, Wgrad, combine of dx) vs the
    CPU per-expert fp8_linear path on the same inputs (FP8 operands identical up to BF16 rounding)."""
    from dsv3sim.nn.moe import routed_experts

    _backend(backend, monkeypatch)
    g = torch.Generator().manual_seed(3)
    E, H, I = 5, 384, 256
    counts = torch.tensor([130, 0, 7, 256, 40])
    rows = int(counts.sum())
    x = torch.randn(rows, H, generator=g)
    ws = [torch.randn(E, I, H, generator=g) * 0.05, torch.randn(E, I, H, generator=g) * 0.05,
          torch.randn(E, H, I, generator=g) * 0.05]
    dy = torch.randn(rows, H, generator=g)
    x, ws, dy = x.bfloat16().float(), [w.bfloat16().float() for w in ws], dy.bfloat16().float()
    outs = {}
    for name, dev, dt, fp8 in (("exact", "cpu", torch.float32, False), ("emul", "cpu", torch.float32, True),
                               ("gpu", "cuda", torch.bfloat16, True)):
        xd = x.to(dev, dt).detach().clone().requires_grad_()
        wd = [w.to(dev, dt).detach().clone().requires_grad_() for w in ws]
        y = routed_experts(xd, counts.to(dev), *wd, fp8=fp8)
        y.backward(dy.to(dev, dt))
        outs[name] = [t.detach().float().cpu() for t in (y, xd.grad, *(w.grad for w in wd))]
    for i, name in enumerate(("y", "dx", "dw_gate", "dw_up", "dw_down")):
        gpu, emul, exact = outs["gpu"][i], outs["emul"][i], outs["exact"][i]
        # the GPU keeps gu, dh and the GEMM outputs in BF16, so a few FP8 roundings differ from the emulation's;
        # its error against exact FP32 math is the emulation's, not more
        assert _rel(gpu, emul) < 5e-2, name
        assert _rel(gpu, exact) < 1.25 * _rel(emul, exact) + 2e-3, name


@cuda
def test_moe_layer_fp8_triton_equals_per_expert_path(tiny):
    """MoE.forward's fused dispatch path (gather + quant from x, padded layout, combine by gather) vs the
    per-expert FP8 path on the same GPU and weights."""
    from dsv3sim.nn import fp8_experts

    _kernels()
    moe = _small_moe(tiny, 0)
    moe.experts.fp8 = True
    x = torch.randn(2, 64, 256, device="cuda", dtype=torch.bfloat16)
    res = {}
    for name, on, fp8 in (("triton", True, True), ("per_expert", False, True), ("bf16", True, False)):
        fp8_experts.ENABLED = on
        moe.experts.fp8 = fp8
        try:
            xi = x.clone().requires_grad_()
            y = moe(xi)
            y.float().square().sum().backward()
            res[name] = (y.detach(), xi.grad, moe.experts.down_proj.grad.clone())
            moe.zero_grad(set_to_none=True)
        finally:
            fp8_experts.ENABLED = True
    # two FP8 paths (the per-expert one rounds h = silu(g) u to BF16 before quantising, the fused kernel does not):
    # each within FP8's error of the BF16 layer, the fused one no worse than the per-expert one
    for t, p, ref in zip(res["triton"], res["per_expert"], res["bf16"]):
        assert _rel(t, p) < 6e-2
        assert _rel(t, ref) < 1.25 * _rel(p, ref) + 5e-3


@cuda
@pytest.mark.parametrize("one_pass", [False, True])
@pytest.mark.parametrize(("n_up", "k"), [(256, 384), (192, 208)])
def test_weight_quant_writes_the_cpu_bytes_and_rewrites_in_place(n_up, k, one_pass, monkeypatch):
    """Two launches per weight, or both copies from one (``WEIGHT_QUANT_ONE_PASS``): q equals nn/fp8.py's 128x128
    quantiser byte for byte (stacked gate and up, a ragged last block, K not a multiple of 128), qT its
    transpose; ``out=`` rewrites the same buffers (the per-step re-quantisation) with the new values."""
    K = _kernels()
    monkeypatch.setattr(K, "WEIGHT_QUANT_ONE_PASS", one_pass)
    g = torch.Generator().manual_seed(n_up + k)
    wg, wu = torch.randn(3, 256, k, generator=g) * 0.05, torch.randn(3, n_up, k, generator=g)
    ops = K.weight_quant([wg.cuda().bfloat16(), wu.cuda().bfloat16()])
    for _ in range(2):
        q, s, qt, st = ops
        for e in range(3):
            rq, rs = F8.quantize_128x128(torch.cat([wg[e], wu[e]]).bfloat16().float())
            assert torch.equal(q[e].cpu().view(torch.uint8), rq.view(torch.uint8))
            assert torch.equal(s[e].cpu(), rs)
        assert torch.equal(qt.view(torch.uint8), q.transpose(1, 2).contiguous().view(torch.uint8))
        assert torch.equal(st, s.transpose(1, 2))
        wg, wu = wg * 3, wu - 1  # the optimizer step
        new = K.weight_quant([wg.cuda().bfloat16(), wu.cuda().bfloat16()], out=ops)
        assert all(a is b for a, b in zip(new, ops))


@cuda
def test_optimizer_step_requantises_in_place_once(tiny, monkeypatch):
    """After an optimizer step ``requantize_weights`` rewrites every FP8 copy of the layer in place (the same
    buffers, the new weights' bytes) and the next forward quantises nothing."""
    from dsv3sim.nn import fp8_experts

    K = _kernels()
    moe = _small_moe(tiny, 1)
    moe.experts.fp8 = True
    F8.clear_weight_cache()
    x = torch.randn(2, 64, 256, device="cuda", dtype=torch.bfloat16)
    moe(x).float().square().sum().backward()
    ex = moe.experts
    ops = fp8_experts.expert_operands(ex.gate_proj, ex.up_proj, ex.down_proj)
    ptrs = [t.data_ptr() for t in (*ops.w13, *ops.wd)]
    torch.optim.SGD(moe.parameters(), lr=0.5).step()
    assert F8.requantize_weights() >= 1
    fresh = K.weight_quant([ex.gate_proj.detach(), ex.up_proj.detach()])
    assert [t.data_ptr() for t in (*ops.w13, *ops.wd)] == ptrs
    assert _same_bytes(ops.w13, fresh)
    calls = []
    plain = K.weight_quant
    monkeypatch.setattr(K, "weight_quant", lambda *a, **k: calls.append(1) or plain(*a, **k))
    moe(x)
    assert not calls


@cuda
def test_backward_after_dropping_forward_copies_then_requantisation_restores_them(tiny):
    """validate's order on the device: the rank's last forward, ``drop_forward_operands`` (routed experts and the
    shared expert's grouped dense linears), the backward on the transposed copies alone (the gradients of a
    backward without the drop), the optimizer step, ``requantize_weights``: forward copies again, bytes of a fresh
    quantisation, transposed copies at the same addresses."""
    from dsv3sim.nn import fp8_weights as W

    K = _kernels()
    moe = _small_moe(tiny, 2)
    for m in moe.modules():
        if hasattr(m, "fp8"):
            m.fp8 = True
    W.clear_weight_cache()
    x = torch.randn(2, 64, 256, device="cuda", dtype=torch.bfloat16)
    moe(x).float().square().sum().backward()
    ref = [p.grad.clone() for p in moe.parameters() if p.grad is not None]
    moe.zero_grad(set_to_none=True)
    y = moe(x)
    ents = W.cached_operands()
    assert {e.kind for e in ents} == {W.GROUPED} and len(ents) >= 5  # experts (2) + shared gate/up, down
    t_ptrs = [(e.qt.data_ptr(), e.st.data_ptr()) for e in ents]
    assert W.drop_forward_operands() == len(ents) and not any(e.complete for e in ents)
    y.float().square().sum().backward()
    got = [p.grad for p in moe.parameters() if p.grad is not None]
    assert len(got) == len(ref) and all(_rel(a, b) < 1e-3 for a, b in zip(got, ref))  # atomics may reorder sums
    torch.optim.SGD(moe.parameters(), lr=0.5).step()
    assert W.requantize_weights() == len(ents) and all(e.complete for e in ents)
    assert [(e.qt.data_ptr(), e.st.data_ptr()) for e in ents] == t_ptrs
    for e in ents:
        ws = e.weights()
        fresh = K.weight_quant([w if w.dim() == 3 else w[None] for w in ws])
        assert _same_bytes(e, fresh)
