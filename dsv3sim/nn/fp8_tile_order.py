"""The grouped GEMMs' program -> output tile order, shared by the Triton (nn/fp8_triton.py) and the Gluon
(nn/fp8_gluon.py) kernels: GROUP_M row tiles run next to each other so they share the B tiles in L2 (Triton's
matmul tutorial ordering). Scalar arithmetic only, so one ``@triton.jit`` function serves both dialects: a Gluon
kernel compiles a ``triton.jit`` callee with its own (Gluon) semantic. A module of its own because
nn/fp8_triton.py imports nn/fp8_gluon.py (lazily), so the Gluon module cannot import it back."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def grouped_tile(pid, M, N, BM: tl.constexpr, BN: tl.constexpr, GROUP_M: tl.constexpr):
    """(row tile, column tile) of program ``pid`` over an [M, N] output of BM x BN tiles, in the grouped order."""
    n_m = tl.cdiv(M, BM)
    n_n = tl.cdiv(N, BN)
    width = GROUP_M * n_n
    first_m = (pid // width) * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    return first_m + (pid % width) % size_m, (pid % width) // size_m
