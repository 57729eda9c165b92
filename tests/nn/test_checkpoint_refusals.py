"""Untrusted checkpoints are refused with one ValueError line: not safetensors, a pickle, a malformed header,
wrong shapes or dtypes, wrong FP8 scale shapes (all from the header, before tensors are read), NaN/inf weights."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsv3sim.nn import checkpoint
from dsv3sim.nn.transformer import Transformer


@pytest.fixture()
def model(tiny):
    torch.manual_seed(0)
    return Transformer(tiny)


@pytest.fixture()
def saved(model, tmp_path):
    p = tmp_path / "ok.safetensors"
    checkpoint.save(model, p)
    return load_file(str(p))


def _refused(model, path, match):
    with pytest.raises(ValueError, match=match) as ei:
        checkpoint.load(model, path)
    assert "\n" not in str(ei.value)


def test_not_safetensors(model, tmp_path):
    p = tmp_path / "x.pt"
    with open(p, "wb") as f:
        pickle.dump({"a": 1}, f)
    _refused(model, p, "not a safetensors file")
    (tmp_path / "y.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage!!!!!!!!")
    _refused(model, tmp_path / "y.safetensors", "not a safetensors file|malformed")
    (tmp_path / "z.safetensors").write_bytes(b"")
    _refused(model, tmp_path / "z.safetensors", "not a safetensors file")


def test_truncated_data_refused_from_header(model, saved, tmp_path):
    p = tmp_path / "t.safetensors"
    save_file(saved, str(p))
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])
    _refused(model, p, "malformed entry")


def _edit(saved, tmp_path, name, t, **extra):
    d = dict(saved)
    d[name] = t
    d.update(extra)
    p = tmp_path / "e.safetensors"
    save_file(d, str(p))
    return p


def test_wrong_shape_dtype_nan(model, saved, tmp_path):
    k = "model.layers.1.mlp.experts.0.up_proj.weight"
    _refused(model, _edit(saved, tmp_path, k, saved[k][:-1].clone()), "shape")
    _refused(model, _edit(saved, tmp_path, k, saved[k].to(torch.int32)), "dtype I32")
    bad = saved[k].clone()
    bad[0, 0] = float("nan")
    _refused(model, _edit(saved, tmp_path, k, bad), "NaN/inf")


def test_fp8_scale_shape_and_values(model, tmp_path):
    p = tmp_path / "f.safetensors"
    checkpoint.save(model, p, fp8=True)
    d = load_file(str(p))
    k = next(n for n in d if n.endswith("_scale_inv"))
    _refused(model, _edit(d, tmp_path, k, torch.ones(7, 3)), "expected F32")
    _refused(model, _edit(d, tmp_path, k, torch.zeros_like(d[k])), "non-positive")
    w = k[: -len("_scale_inv")]
    d2 = {n: t for n, t in d.items() if n != k}
    _refused(model, _edit(d2, tmp_path, w, d[w]), "_scale_inv is missing")
