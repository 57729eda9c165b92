"""The Gluon FP8 GEMM (nn/fp8_gluon.py) compiled for sm_90a without a GPU: the overlap it exists for survives the
compiler. ptxas serialises every wgmma (C7514) when a non-wgmma instruction touches an in-flight accumulator;
then only ``WARPGROUP.DEPBAR.LE gsb0, 0x0`` remains. The loop must keep one group in flight (``0x1``) and spill
nothing. Needs Triton with Gluon (the GPU machine's image; skipped where Triton is absent), no device, so it
carries no gpu mark."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest


def _compile(fn, sig: dict, consts: dict, num_warps: int):
    triton = pytest.importorskip("triton")
    pytest.importorskip("triton.experimental.gluon")
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    return triton.compile(GluonASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": num_warps})


def _desc(gl, dt: str, block: list[int], gdt) -> str:
    return f"tensordesc<{dt}[{block[0]}, {block[1]}],{gl.NVMMASharedLayout.get_default_for(block, gdt)!r}>"


def _sass_and_log(c) -> tuple[str, str]:
    from triton import knobs

    with tempfile.TemporaryDirectory() as d:
        cub, ptx = Path(d, "k.cubin"), Path(d, "k.ptx")
        cub.write_bytes(c.asm["cubin"])
        ptx.write_text(c.asm["ptx"])
        sass = subprocess.run([knobs.nvidia.cuobjdump.path, "-sass", str(cub)], capture_output=True, text=True).stdout
        log = subprocess.run([knobs.nvidia.ptxas.path, "-arch=sm_90a", "-v", str(ptx), "-o", str(Path(d, "o"))],
                             capture_output=True, text=True)
    return sass, log.stdout + log.stderr


@pytest.mark.parametrize("kernel", ["gemm", "wgrad"])
def test_gluon_kernels_keep_one_wgmma_group_in_flight(kernel):
    pytest.importorskip("triton.experimental.gluon")
    from triton.experimental.gluon import language as gl

    from dsv3sim.nn import fp8_gluon as G

    a = _desc(gl, "fp8e4nv", [128, 128], gl.float8e4nv)
    common = {"a_desc": a, "sa_ptr": "*fp32", "b_desc": a, "sb_ptr": "*fp32"}
    if kernel == "gemm":
        sig = {**common, "c_desc": _desc(gl, "bf16", [128, 128], gl.bfloat16), "tile_expert_ptr": "*i32", "M": "i32",
               "N": "i32", "K": "i32", "E": "i32", "GROUP_M": "constexpr", "STAGES": "constexpr",
               "OVERLAP": "constexpr", "num_warps": "constexpr"}
        consts = {"GROUP_M": 8, "STAGES": 4, "OVERLAP": True, "num_warps": 8}
        fn = G._gemm_kernel
    else:
        sig = {**common, "c_ptr": "*bf16", "tile_start_ptr": "*i32", "n_tiles_ptr": "*i32", "N": "i32", "K": "i32",
               "a_row0": "i32", "NA": "i32", "STAGES": "constexpr", "OVERLAP": "constexpr", "EVEN_N": "constexpr",
               "EVEN_K": "constexpr", "num_warps": "constexpr"}
        consts = {"STAGES": 4, "OVERLAP": True, "EVEN_N": True, "EVEN_K": True, "num_warps": 8}
        fn = G._wgrad_kernel
    sass, log = _sass_and_log(_compile(fn, sig, consts, 8))
    assert "QGMMA.64x128x32.F32.E4M3.E4M3" in sass  # FP8 wgmma, m64 n128
    assert "WARPGROUP.DEPBAR.LE gsb0, 0x1" in sass, "the next block's MMA is no longer in flight during promotion"
    assert "C7514" not in log and "serialized" not in log, log
    assert "0 bytes spill stores" in log, log
