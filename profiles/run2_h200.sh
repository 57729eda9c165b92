#!/bin/bash
# Second device call: held-out (FP8 now padded to M % 4), FP8 re-run, the model's own nn ops, GPU tests,
# the nn helper's layer benchmark (if present), then the 1.5x-midpoint N/K lattice (deadline-bounded).
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
R=$OUT/r2; mkdir -p $R
DL=${1:-240}
P="python3 -m dsv3sim.profile.run deepseek-v3 --device cuda"
timeout 100 $P --grid heldout --out $R/heldout.csv
timeout 100 $P --grid fp8fix --dtypes fp8 --out $R/fp8fix.csv
timeout 200 $P --grid nn --deadline-s 150 --out $R/nn.csv
timeout 150 python3 -m pytest -m gpu tests/ -q -p no:cacheprovider --continue-on-collection-errors 2>&1 | tail -25
if [ -f benchmarks/bench_layer_gpu.py ]; then
  timeout 240 python3 benchmarks/bench_layer_gpu.py --out $R/layer_bench.json 2>&1 | tail -30
else
  echo "benchmarks/bench_layer_gpu.py: not present"
fi
timeout $((DL + 40)) $P --grid lattice2 --deadline-s $DL --out $R/lattice2.csv
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
cd $OUT && tar czf r2.tgz r2 && rm -rf r2 && ls -la
