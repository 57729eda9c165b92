#!/bin/bash
# Device command for the GQA attention kernels (Qwen3-MoE, Mixtral, gpt-oss shapes): profiles/h200/kernels-gqa.csv.
# Usage on the H200 machine: OUT=/some/dir bash profiles/run_h200_gqa.sh   (run 2026-12-04: 448 rows, 49.4 s)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv
timeout 200 python3 -m dsv3sim.profile.run deepseek-v3 --device cuda --grid gqa --dtypes bf16 --deadline-s 150 \
  --out $OUT/gqa.csv 2>&1 | tee $OUT/gqa_log.txt
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
