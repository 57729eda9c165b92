"""Safetensors checkpoints with DeepSeek's Hugging Face parameter names (modeling_deepseek.py layout).

  model.embed_tokens.weight, model.norm.weight, lm_head.weight
  model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight
  model.layers.{i}.self_attn.{q_a_proj,q_a_layernorm,q_b_proj | q_proj,
                             kv_a_proj_with_mqa,kv_a_layernorm,kv_b_proj,o_proj}.weight
  model.layers.{i}.mlp.{gate_proj,up_proj,down_proj}.weight                       (dense layers)
  model.layers.{i}.mlp.gate.weight, model.layers.{i}.mlp.gate.e_score_correction_bias
  model.layers.{i}.mlp.experts.{j}.{gate_proj,up_proj,down_proj}.weight, mlp.shared_experts.*.weight
  MTP module k = model.layers.{L+k}: the block's names plus enorm, hnorm, eh_proj, shared_head.norm, and (as
  in DeepSeek's release) its own copies embed_tokens / shared_head.head, written on save; on load they are
  dropped when equal to the main tensors, else returned as unused names.
FP8 (``fp8=True``, DeepSeek-V3's release format): each FP8-capable linear weight stored as float8_e4m3fn with
``<name>_scale_inv`` FP32 [ceil(N/128), ceil(K/128)], dequantised as q * s (inference/kernel.py weight_dequant).
Loading never unpickles: safetensors only, and every header is checked (shapes, dtypes, FP8 scale shapes)
before a tensor is read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dsv3sim.config.errors import ConfigError
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(tensors, str(path), metadata=meta)
    except Exception as e:  # noqa: BLE001 - the writer's own error type: an I/O problem with the user's path
        raise OSError(f"cannot write checkpoint {str(path)!r} ({' '.join(str(e).split())[:200]})") from None


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}
_WEIGHT_DTYPES = ("F32", "F16", "BF16")  # high-precision weights; FP8 (F8_E4M3) only with a _scale_inv beside it
_MAX_HEADER = 100 * 2**20


def _header(f: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} of one .safetensors file from its JSON header alone (nothing allocated), refused with
    one line unless the header is sound: length within the file, every tensor's byte range inside the data and
    matching dtype x shape (safetensors format: u64 little-endian header length, JSON header, raw data)."""
    try:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(size - 8, _MAX_HEADER):
                raise ConfigError(f"checkpoint {f}: not a safetensors file (header length {n} for a {size}-byte file)")
            hdr = json.loads(fh.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ConfigError(f"checkpoint {f}: not a safetensors file (header is not JSON)") from None
    if not isinstance(hdr, dict):
        raise ConfigError(f"checkpoint {f}: not a safetensors file (header is not a JSON object)")  # noqa: TRY004
    data = size - 8 - n
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        ok = (isinstance(v, dict) and v.get("dtype") in _DTYPE_BYTES and isinstance(v.get("shape"), list)
              and all(isinstance(d, int) and d >= 0 for d in v["shape"]) and isinstance(v.get("data_offsets"), list)
              and len(v["data_offsets"]) == 2 and all(isinstance(o, int) for o in v["data_offsets"]))
        if ok:
            lo, hi = v["data_offsets"]
            ok = 0 <= lo <= hi <= data and hi - lo == math.prod(v["shape"]) * _DTYPE_BYTES[v["dtype"]]
        if not ok:
            raise ConfigError(f"checkpoint {f}: tensor {k!r} has a malformed entry in the header: {str(v)[:120]}")
        out[k] = (v["dtype"], tuple(v["shape"]))
    return out


def _files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no .safetensors files in {path}")
    return files


def _read(files: list[Path]) -> dict[str, torch.Tensor]:
    out = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                    out[k] = fh.get_tensor(k)
        except Exception as e:  # noqa: BLE001 - the reader's own error type; the header was checked already
            raise ConfigError(f"checkpoint {f}: cannot be read ({' '.join(str(e).split())[:200]})") from None
    return out


def _expected(model) -> dict[str, tuple[int, ...]]:
    """{HF name: shape} of every tensor the model loads (experts split per expert)."""
    L = model.cfg.num_hidden_layers
    out = {}
    for name, ref in model.state_dict().items():
        m = _EXPERT.match(name)
        if m:
            base = _hf_prefix(m.group(1), L)
            for j in range(ref.shape[0]):
                out[f"{base}.{j}.{m.group(2)}.weight"] = tuple(ref.shape[1:])
        else:
            out[_hf_prefix(name, L)] = tuple(ref.shape)
    return out


def _check_header(path: Path, hdr: dict[str, tuple[str, tuple[int, ...]]], expected: dict) -> None:
    """Shapes and dtypes of every tensor the model will take, and of FP8 scales, before anything is read."""
    for k, (dt, shape) in hdr.items():
        if k.endswith("_scale_inv"):
            w = hdr.get(k[: -len("_scale_inv")])
            if w is None or w[0] != "F8_E4M3":
                continue  # reported as unused by the caller
            if dt != "F32" or len(w[1]) != 2 or shape != tuple(-(-d // TILE) for d in w[1]):
                want = tuple(-(-d // TILE) for d in w[1]) if len(w[1]) == 2 else "?"
                raise ConfigError(f"checkpoint {path}: {k} is {dt} {list(shape)}, expected F32 {list(want)} (one scale "
                                 f"per {TILE}x{TILE} block of {list(w[1])})")
            continue
        if k not in expected:
            continue
        if dt == "F8_E4M3":
            if k + "_scale_inv" not in hdr:
                raise ConfigError(f"{k} is FP8 but {k}_scale_inv is missing")
            if len(shape) != 2:
                raise ConfigError(f"checkpoint {path}: {k} is FP8 with shape {list(shape)}; FP8 weights are 2-D")
        elif dt not in _WEIGHT_DTYPES:
            raise ConfigError(f"checkpoint {path}: {k} has dtype {dt}; weights must be one of "
                             f"{', '.join(_WEIGHT_DTYPES)}"
                             " (or F8_E4M3 with a _scale_inv)")
        if shape != expected[k]:
            raise ConfigError(f"{k}: checkpoint shape {shape} != model shape {expected[k]}")


def load(model, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load HF-named safetensors (one file or a directory of shards) into ``model``; dequantises FP8 weights.
    Returns the names in the file that the model does not have (MTP embedding/head copies excluded).
    Refused with one ValueError line: not safetensors, a malformed header, missing tensors (``strict``), wrong
    shapes or dtypes, FP8 scales of the wrong shape (all from the headers, before any tensor is read), and
    NaN/inf weights or non-positive FP8 scales (after reading)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    files = _files(path)
    hdr: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in files:
        hdr.update(_header(f))
    expected = _expected(model)
    _check_header(path, hdr, expected)
    if strict:
        sd_missing = sorted({re.sub(r"\.\d+\.(gate_proj|up_proj|down_proj)\.weight$", r".*.\1.weight", k)
                             for k in expected if k not in hdr})
        if sd_missing:
            raise ConfigError(f"checkpoint {path} lacks {len(sd_missing)} tensor(s), e.g. {sd_missing[:5]}")
    tensors = _decoded(path, _read(files), expected)
    L = model.cfg.num_hidden_layers
    sd = model.state_dict()
    new, missing = _to_model_names(sd, tensors, L)
    _keep_differing_mtp_copies(model, tensors, new, L)
    if strict and missing:
        raise ConfigError(f"checkpoint {path} lacks {len(missing)} tensor(s), e.g. {missing[:5]}")
    for name, t in new.items():
        if tuple(t.shape) != tuple(sd[name].shape):
            raise ConfigError(f"{name}: checkpoint shape {tuple(t.shape)} != model shape {tuple(sd[name].shape)}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        params.update(dict(model.named_buffers()))
        for name, t in new.items():
            params[name].copy_(t.to(params[name].dtype))
    return sorted(tensors)


def _decoded(path: Path, raw: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The file's tensors with FP8 weights dequantised by their (finite, positive) ``_scale_inv`` (the scales
    themselves dropped); the model's weights refused when they hold NaN/inf."""
    tensors: dict[str, torch.Tensor] = {}
    for k, t in raw.items():
        if k.endswith("_scale_inv") and k[: -len("_scale_inv")] in raw:
            continue
        if t.dtype == FP8:
            s = raw[k + "_scale_inv"].float()
            if not (torch.isfinite(s).all() and (s > 0).all()):
                raise ConfigError(f"checkpoint {path}: {k}_scale_inv holds non-finite or non-positive scales")
            t = dequantize(t, s, TILE)
        if k in expected and t.is_floating_point() and not torch.isfinite(t).all():
            n_bad = int((~torch.isfinite(t)).sum())
            raise ConfigError(f"checkpoint {path}: {k} holds {n_bad} NaN/inf value(s)")
        tensors[k] = t
    return tensors


def _to_model_names(sd: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                    L: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The model's state-dict entries taken (popped) from the HF-named ``tensors``: per-expert weights stacked
    into the model's grouped expert tensors. Returns them and the HF names the file lacks."""
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
    return new, missing


def _keep_differing_mtp_copies(model, tensors: dict[str, torch.Tensor], new: dict[str, torch.Tensor],
                               L: int) -> None:
    """MTP modules' embedding/head copies are dropped from ``tensors`` when they equal the shared tensors."""
    for k in range(len(model.mtp)):
        for copy, shared in ((f"model.layers.{L + k}.embed_tokens.weight", "embed_tokens.weight"),
                             (f"model.layers.{L + k}.shared_head.head.weight", "lm_head.weight")):
            t = tensors.pop(copy, None)
            if t is not None and shared in new and not torch.equal(t.to(new[shared].dtype), new[shared]):
                tensors[copy] = t  # differs from the shared tensor: reported as unused (this model shares, V3 §2.2)


save_checkpoint = save
load_checkpoint = load
