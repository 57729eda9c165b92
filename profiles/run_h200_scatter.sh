#!/bin/bash
# Device command for the predictor's training scatter and a fresh held-out set (session 3).
# Usage on the H200 machine: OUT=/some/dir bash profiles/run_h200_scatter.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv
timeout 420 python3 -m dsv3sim.profile.run deepseek-v3 --device cuda --grid scatter --deadline-s 360 --out $OUT/scatter.csv
timeout 100 python3 -m dsv3sim.profile.run deepseek-v3 --device cuda --grid heldout2 --deadline-s 80 --out $OUT/heldout2.csv
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
