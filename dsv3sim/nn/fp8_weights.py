"""The FP8 copies of the weights: one cache for every FP8 GEMM that reads a weight (DeepSeek-V3 §3.3).

A weight operand is the 128x128-block quantisation (nn/fp8_quant.py) of one or more weights that multiply the same
input, stacked along N (gate and up projections: one GEMM per direction). It holds two copies:
  forward     q [.., N, K] fp8,  s [.., N/128, K/128] fp32        the Fprop B operand
  transposed  qt [.., K, N'] fp8, st [.., K/128, N'/128] fp32     Dgrad's B operand: the same blocks transposed
Two layouts (``kind``), one per GEMM family:
  "torch"    2-D, N' = N padded to a multiple of 128 (zero columns); nn/fp8.py ``_FP8Linear`` (GPU ``_scaled_mm``,
             CPU emulation). The transposed copy is made from q at the first Dgrad (inference never makes it).
  "grouped"  [G, N, K] stacks (G experts; 2-D weights are one group), N' = N; nn/fp8_triton.py ``weight_quant``
             writes both copies (the routed experts of nn/fp8_experts.py, the dense linears of
             nn/fp8_triton_linear.py).
Rules:
* Quantised once per weight value. Key: kind and each weight's storage, offset, shape, strides, dtype and device;
  the entry is valid while every weight's ``_version`` (bumped by every in-place update: the optimizer step,
  ``copy_`` under no_grad) equals the one it was quantised from. A stale entry is never returned: the lookup
  re-quantises it first, in place.
* ``requantize_weights()`` right after the optimizer step re-quantises every stale entry in place (V3 §3.3: the
  step's FP8 copies are made once per optimizer step, not per micro-batch): the same buffers, nothing allocated,
  so the step's forward passes find their operands and a CUDA graph captured on them stays valid.
* ``drop_forward_operands()`` frees the forward copies of every entry that has a transposed one (after a rank's
  last forward of the step the backward passes read only the transposed copies; one V3 layer's 256 experts hold
  10.5 GiB of forward copies); ``requantize_weights()`` or the next lookup allocates them again. Dropping costs
  device allocations every step (the backward splits the freed blocks, so the re-quantisation asks the driver
  for new ones, and near a full card the allocator frees its whole cache and synchronises): a caller drops
  only when keeping does not fit, ``keep_forward_operands``.
* An entry references its weights weakly, through the tensor that owns their storage (an expert's view: the
  stacked parameter), and dies with it, so a freed module frees its FP8 copies; a lookup with another tensor
  at the same address (a reused allocation) misses.
"""

from __future__ import annotations

import weakref

import torch

from dsv3sim.nn.fp8_quant import FP8, TILE, _ceil, quantize_128x128

TORCH, GROUPED = "torch", "grouped"
_CACHE: dict[tuple, WeightOperand] = {}  # the cache (not model state): key -> entry, see the module doc


def _owner(w: torch.Tensor) -> torch.Tensor:
    """The tensor whose storage ``w`` views (``_base`` is the root of a chain of views)."""
    return w._base if w._base is not None else w


def _key(ws: tuple[torch.Tensor, ...], kind: str) -> tuple:
    return (kind, *((w.untyped_storage().data_ptr(), w.storage_offset(), tuple(w.shape), tuple(w.stride()), w.dtype,
                     str(w.device)) for w in ws))


def _versions(ws: tuple[torch.Tensor, ...]) -> tuple[int, ...]:
    return tuple(w._version for w in ws)  # a view shares its base's version counter


class WeightOperand:
    """One cached operand (module doc): ``q, s`` forward copy (None once dropped), ``qt, st`` transposed copy
    (None until the first Dgrad on the torch path); iterates as (q, s, qt, st), the order of
    nn/fp8_triton.py ``weight_quant``."""

    __slots__ = ("key", "owners", "version", "q", "s", "qt", "st", "__weakref__")

    def __init__(self, key: tuple, ws: tuple[torch.Tensor, ...]) -> None:
        self.key = key  # (kind, one tuple per weight: storage pointer, offset, shape, strides, dtype, device)
        self.owners = tuple(weakref.ref(_owner(w)) for w in ws)
        self.version: tuple[int, ...] | None = None
        self.q = self.s = self.qt = self.st = None

    @property
    def kind(self) -> str:
        return self.key[0]

    def __iter__(self):
        return iter((self.q, self.s, self.qt, self.st))

    def __getitem__(self, i):
        return (self.q, self.s, self.qt, self.st)[i]

    @property
    def complete(self) -> bool:
        """Whether the forward copy is there (False after ``drop_forward_operands`` until re-quantised)."""
        return self.q is not None

    def owned_by(self, ws: tuple[torch.Tensor, ...]) -> bool:
        return all(r() is _owner(w) for r, w in zip(self.owners, ws))

    def weights(self) -> tuple[torch.Tensor, ...] | None:
        """The weights, detached, rebuilt from their owners and the storage offset, shape and strides of the key;
        None once an owner is gone or holds other storage."""
        ws = []
        for ref, (ptr, off, shape, stride, _, _) in zip(self.owners, self.key[1:]):
            o = ref()
            if o is None or o.untyped_storage().data_ptr() != ptr:
                return None
            ws.append(o.detach().as_strided(shape, stride, off))
        return tuple(ws)

    def transposed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(qt, st), made from the forward copy the first time on the torch path."""
        if self.qt is None:
            self.qt, self.st = _transpose(self.q, self.s)
        return self.qt, self.st


def _transpose(q: torch.Tensor, s: torch.Tensor, out: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, K], s [N/128, K/128] -> (qt [K, N'] with N zero-padded to N' = a multiple of 128, st = s^T), written
    into ``out`` where given."""
    n, k = q.shape
    if out is None or out[0] is None:
        qt = torch.zeros(k, _ceil(n, TILE) * TILE, dtype=FP8, device=q.device)
        st = torch.empty(s.shape[::-1], dtype=s.dtype, device=s.device)
    else:
        qt, st = out
    qt[:, :n].copy_(q.t())
    st.copy_(s.t())
    return qt, st


def quantise(ws: tuple[torch.Tensor, ...], kind: str, out: tuple | None = None, transposed: bool = False) -> tuple:
    """(q, s, qt, st) of the weights ``ws`` stacked along N (module doc), written into ``out``'s buffers where
    given (None, or a None among them, is allocated). The torch path makes the transposed copy when
    ``transposed`` or when ``out`` has one (else qt = st = None); the grouped path always makes both."""
    out = tuple(out) if out is not None else (None,) * 4
    with torch.no_grad():
        if kind == GROUPED:
            from dsv3sim.nn import fp8_triton as K

            return K.weight_quant([w.detach() if w.dim() == 3 else w.detach()[None] for w in ws], out=out)
        if kind != TORCH:
            raise ValueError(f"FP8 weight operand kind {kind!r}: expected {TORCH!r} or {GROUPED!r}")
        w = ws[0].detach() if len(ws) == 1 else torch.cat([w.detach() for w in ws])  # [sum N, K]
        q, s = quantize_128x128(w, out=None if out[0] is None else out[:2])
        qt = st = None
        if transposed or out[2] is not None:
            qt, st = _transpose(q, s, out[2:])
        return q, s, qt, st


def _refresh(ent: WeightOperand, ws: tuple[torch.Tensor, ...]) -> bool:
    """Re-quantise ``ent`` in place (its own buffers) if a weight changed since it was quantised or its forward
    copy was dropped; whether it did."""
    version = _versions(ws)
    if ent.version == version and ent.complete:
        return False
    ent.q, ent.s, ent.qt, ent.st = quantise(ws, ent.kind, tuple(ent))
    ent.version = version
    return True


def _forget(key: tuple, ref: weakref.ref) -> None:
    """Finaliser of a weight's owner: drop the entry it registered (unless the key now holds another entry)."""
    ent = ref()
    if ent is not None and _CACHE.get(key) is ent:
        del _CACHE[key]


def weight_operands(ws: tuple[torch.Tensor, ...], kind: str = TORCH) -> WeightOperand:
    """The cached operand of the weights ``ws`` (stacked along N) in layout ``kind``, quantised if missing,
    re-quantised in place if a weight changed since or its forward copy was dropped."""
    key = _key(ws, kind)
    ent = _CACHE.get(key)
    if ent is None or not ent.owned_by(ws):  # new, or another tensor at a reused address
        ent = _CACHE[key] = WeightOperand(key, ws)
        for o in {id(o): o for o in map(_owner, ws)}.values():
            weakref.finalize(o, _forget, key, weakref.ref(ent))
    _refresh(ent, ws)
    return ent


def requantize_weights() -> int:
    """Re-quantise, in place, every cached operand whose weights changed since it was quantised or whose forward
    copy was dropped: call it right after the optimizer step. Returns how many were re-quantised."""
    n = 0
    for key, ent in list(_CACHE.items()):
        ws = ent.weights()
        if ws is None:
            _CACHE.pop(key, None)
            continue
        n += _refresh(ent, ws)
    return n


def drop_forward_operands() -> int:
    """Free the forward copies of every cached operand that has a transposed copy (module doc); returns how many."""
    n = 0
    for ent in _CACHE.values():
        if ent.q is not None and ent.qt is not None:
            ent.q = ent.s = None
            n += 1
    return n


def forward_operand_bytes() -> int:
    """Bytes of the forward copies (q and s) that ``drop_forward_operands`` would free now."""
    return sum(e.q.numel() * e.q.element_size() + e.s.numel() * e.s.element_size()
               for e in _CACHE.values() if e.q is not None and e.qt is not None)


KEEP_MARGIN = 0.9  # of the card's memory: room left for the caching allocator's rounding and fragmentation


def keep_forward_operands(peak_bytes: int, forward_bytes: int, capacity_bytes: int,
                          margin: float = KEEP_MARGIN) -> bool:
    """Whether a step keeps the forward copies through its backward: the peak of a step that dropped them
    (``peak_bytes``, the allocator's high-water mark) plus their size (at most what keeping adds to that
    peak) fits in ``margin`` of the card (``capacity_bytes``)."""
    for name, v in (("peak_bytes", peak_bytes), ("forward_bytes", forward_bytes), ("capacity_bytes", capacity_bytes)):
        if v < 0:
            raise ValueError(f"keep_forward_operands: {name} = {v} must be >= 0")
    return peak_bytes + forward_bytes <= margin * capacity_bytes


def clear_weight_cache() -> None:
    """Forget every cached operand (frees the FP8 copies no GEMM still holds)."""
    _CACHE.clear()


def cached_operands() -> list[WeightOperand]:
    """The live entries (for tests and memory accounting)."""
    return list(_CACHE.values())
