#!/bin/bash
# One device call: probe, held-out shapes, SM-partition GEMMs, then the full grid (deadline-bounded).
# Usage on the H200 machine: OUT=/some/dir bash profiles/run_h200.sh [full-deadline-s]
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
DL=${1:-380}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv
python3 - <<'PY'
import torch
from dsv3sim.profile import fp8
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
      torch.cuda.get_device_properties(0).multi_processor_count, "SMs")
print("fp8 blockwise scale layout (a_outer, b_outer):", fp8.probe_layout("cuda"))
try:
    from torch.cuda.green_contexts import GreenContext, SUPPORTED
    print("green contexts supported:", SUPPORTED)
except Exception as e:
    print("green contexts:", e)
PY
timeout 120 python3 -m dsv3sim.profile.run deepseek-v3 --device cuda --grid heldout --out $OUT/heldout.csv
timeout 100 python3 -m dsv3sim.profile.sm_partition --out $OUT/partial_sms.csv 2>$OUT/partial_sms.log
timeout $((DL + 60)) python3 -m dsv3sim.profile.run deepseek-v3 --device cuda --grid full --deadline-s $DL --out $OUT/kernels.csv
python3 - <<'PY'
import csv, os, collections
rows = list(csv.DictReader(open(os.environ["OUT"] + "/kernels.csv")))
err = collections.Counter((r["op"], r["dtype"], r["error"][:80]) for r in rows if r["error"])
for k, v in err.most_common(15): print("ERR", v, k)
for r in rows:
    if r["op"] == "gemm" and r["role"] and r["m"] in ("128", "4096") and not r["error"]:
        print(r["dtype"], r["role"], r["m"], r["n"], r["k"], r["mode"], f'{float(r["tflops"]):.0f} TFLOP/s')
PY
