"""Safetensors checkpoints with DeepSeek's Hugging Face parameter names (modeling_deepseek.py layout).

  model.embed_tokens.weight, model.norm.weight, lm_head.weight
  model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight
  model.layers.{i}.self_attn.{q_a_proj,q_a_layernorm,q_b_proj | q_proj,kv_a_proj_with_mqa,kv_a_layernorm,kv_b_proj,o_proj}.weight
  model.layers.{i}.mlp.{gate_proj,up_proj,down_proj}.weight                       (dense layers)
  model.layers.{i}.mlp.gate.weight, model.layers.{i}.mlp.gate.e_score_correction_bias
  model.layers.{i}.mlp.experts.{j}.{gate_proj,up_proj,down_proj}.weight, mlp.shared_experts.*.weight
  MTP module k = model.layers.{L+k}: the block's names plus enorm, hnorm, eh_proj, shared_head.norm, and (as
  in DeepSeek's release) its own copies embed_tokens / shared_head.head, written on save; on load they are
  dropped when equal to the main tensors, else returned as unused names.
FP8 (``fp8=True``, DeepSeek-V3's release format): each FP8-capable linear weight stored as float8_e4m3fn with
``<name>_scale_inv`` FP32 [ceil(N/128), ceil(K/128)], dequantised as q * s (inference/kernel.py weight_dequant).
Loading never unpickles: safetensors only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dsv3sim.nn.fp8 import FP8, TILE, dequantize, quantize_128x128
from dsv3sim.nn.layers import Linear

_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(gate_proj|up_proj|down_proj)$")


def _hf_prefix(name: str, n_layers: int) -> str:
    """Our module path -> HF path (without experts splitting)."""
    if name.startswith("layers."):
        return "model." + name
    if name.startswith(("embed_tokens.", "norm.")):
        return "model." + name
    m = re.match(r"^mtp\.(\d+)\.(.*)$", name)
    if m:
        k, rest = int(m.group(1)), m.group(2)
        base = f"model.layers.{n_layers + k}."
        if rest.startswith("block."):
            return base + rest[len("block."):]
        if rest.startswith("shared_head_norm."):
            return base + "shared_head.norm." + rest[len("shared_head_norm."):]
        return base + rest
    return name


def fp8_weight_names(model) -> set[str]:
    """Our parameter names whose weights DeepSeek stores in FP8 (attention, MLP, expert linears)."""
    out = {n + ".weight" for n, m in model.named_modules() if isinstance(m, Linear) and m.fp8_capable}
    out |= {n + "." + p for n, m in model.named_modules() if type(m).__name__ == "Experts"
            for p in ("gate_proj", "up_proj", "down_proj")}
    return out


def to_hf(model) -> dict[str, torch.Tensor]:
    """HF-named tensors (high precision) for the model's state, experts split per expert."""
    L = model.cfg.num_hidden_layers
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        mod, _, leaf = name.rpartition(".")
        m = _EXPERT.match(name)
        if m:
            base = _hf_prefix(m.group(1), L)
            for j in range(t.shape[0]):
                out[f"{base}.{j}.{m.group(2)}.weight"] = t[j]
            continue
        out[_hf_prefix(name, L)] = t
    return out


def save(model, path: str | Path, *, fp8: bool = False, mtp_copies: bool = True,
         metadata: dict[str, str] | None = None) -> None:
    """Write ``model`` to one .safetensors file under HF names (see module docstring)."""
    L = model.cfg.num_hidden_layers
    fp8_names = {_hf_prefix(n, L) for n in fp8_weight_names(model)} if fp8 else set()
    tensors: dict[str, torch.Tensor] = {}
    for hf, t in to_hf(model).items():
        t = t.detach().cpu()
        expert_base = re.sub(r"\.\d+\.(gate_proj|up_proj|down_proj)\.weight$", r".\1", hf)
        if fp8 and (hf in fp8_names or expert_base in fp8_names) and t.dim() == 2:
            q, s = quantize_128x128(t)
            tensors[hf] = q.contiguous()
            tensors[hf + "_scale_inv"] = s.contiguous()
        else:
            tensors[hf] = t.contiguous().clone()
    if mtp_copies:
        for k in range(len(model.mtp)):
            tensors[f"model.layers.{L + k}.embed_tokens.weight"] = model.embed_tokens.weight.detach().cpu().clone()
            tensors[f"model.layers.{L + k}.shared_head.head.weight"] = model.lm_head.weight.detach().cpu().clone()
    meta = {"format": "pt", "dsv3sim_config": model.cfg.name, "fp8": json.dumps(fp8)}
    meta.update(metadata or {})
    save_file(tensors, str(path), metadata=meta)


def _read(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no .safetensors files in {path}")
    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                out[k] = fh.get_tensor(k)
    return out


def load(model, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load HF-named safetensors (one file or a directory of shards) into ``model``; dequantises FP8 weights.
    Returns the names in the file that the model does not have (MTP embedding/head copies excluded)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    raw = _read(path)
    L = model.cfg.num_hidden_layers
    tensors: dict[str, torch.Tensor] = {}
    for k, t in raw.items():
        if k.endswith("_scale_inv"):
            continue
        if t.dtype == FP8:
            s = raw.get(k + "_scale_inv")
            if s is None:
                raise ValueError(f"{k} is FP8 but {k}_scale_inv is missing")
            t = dequantize(t, s.float(), TILE)
        tensors[k] = t
    sd = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    missing = []
    for name, ref in sd.items():
        m = _EXPERT.match(name)
        if m:
            base = _hf_prefix(m.group(1), L)
            keys = [f"{base}.{j}.{m.group(2)}.weight" for j in range(ref.shape[0])]
            if all(k in tensors for k in keys):
                new[name] = torch.stack([tensors.pop(k) for k in keys])
            else:
                missing.append(f"{base}.*.{m.group(2)}.weight")
            continue
        hf = _hf_prefix(name, L)
        if hf in tensors:
            new[name] = tensors.pop(hf)
        else:
            missing.append(hf)
    for k in range(len(model.mtp)):
        for copy, shared in ((f"model.layers.{L + k}.embed_tokens.weight", "embed_tokens.weight"),
                             (f"model.layers.{L + k}.shared_head.head.weight", "lm_head.weight")):
            t = tensors.pop(copy, None)
            if t is not None and shared in new and not torch.equal(t.to(new[shared].dtype), new[shared]):
                tensors[copy] = t  # differs from the shared tensor: reported as unused (this model shares, V3 §2.2)
    if strict and missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} tensor(s), e.g. {missing[:5]}")
    for name, t in new.items():
        if tuple(t.shape) != tuple(sd[name].shape):
            raise ValueError(f"{name}: checkpoint shape {tuple(t.shape)} != model shape {tuple(sd[name].shape)}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        params.update(dict(model.named_buffers()))
        for name, t in new.items():
            params[name].copy_(t.to(params[name].dtype))
    return sorted(tensors)


save_checkpoint = save
load_checkpoint = load
