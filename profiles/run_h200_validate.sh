#!/bin/bash
# The H200 validation batch (one `run` call): [sustained-clock probe], the CPU gloo layout matrix on the host's
# idle cores (MATRIX=1, beside the GPU runs: they use the GPU and about one core; ~40 s a case there),
# `dsv3sim validate` of the one-layer (full-width DeepSeek-V3) model at three sizes and with --fp8 at 16k
# tokens, the FP8 expert GPU tests.
# Results and the run folders' JSON come back under $OUT. From the repository root of a copy that has the
# simpy/plotly wheels in .whl/ (README "Running on the GPU machine").
set -u
. profiles/wheels.sh || exit 1  # a bare GPU box: install the carried wheels; the repository root on PYTHONPATH
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T0=$(date +%s)
(nproc; lscpu | grep -E "Model name|Socket|Core|Thread|NUMA node\(s\)"; uptime) > "$OUT/host.txt" 2>&1
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv -lms 50 \
  > "$OUT/nvidia_smi.csv" 2>&1 &
SMI=$!
if [ "${MATRIX:-1}" = 1 ]; then
  # 16 steps per case (the matrix default, for each case's 95 % interval): ~50 s a case on the host's cores
  timeout ${MATRIX_S:-540} python3 benchmarks/validate_error.py --matrix --steps ${MATRIX_STEPS:-16} --runs /tmp/vm \
    --out "$OUT/validation_matrix.json" > "$OUT/matrix.log" 2>&1 &
  MAT=$!
fi
[ "${PROBE:-0}" = 1 ] && timeout 120 python3 benchmarks/probe_sustained_clock.py --heat 1.5 --out "$OUT/sustained_clock.json" 2>&1 | tail -20
run() {  # name, seconds, flags...
  local name=$1 lim=$2; shift 2
  timeout $lim python3 -m dsv3sim validate --device cuda --model one-layer --nproc 1 --steps ${STEPS:-5} --out /tmp/v/$name \
    --json "$@" > /tmp/v/$name.json 2> /tmp/v/$name.err
  echo "$name rc=$? $(python3 -c "import json,sys;d=json.load(open('/tmp/v/$name.json'));print(round(d['measured_step_s']*1e3,1),round(d['predicted_step_s']*1e3,1),round(d['error']*100,1))" 2>/dev/null) t=$(( $(date +%s) - T0 ))s"
  tail -2 /tmp/v/$name.err
}
mkdir -p /tmp/v
run b2s64 100
run b4s1024 100 --micro-batch 4 --seq-len 1024
run b4s4096 110 --micro-batch 4 --seq-len 4096
[ "${FP8:-1}" = 1 ] && PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True run b4s4096-fp8 140 --micro-batch 4 --seq-len 4096 --fp8
[ "${TESTS:-1}" = 1 ] && [ $(( $(date +%s) - T0 )) -lt ${TESTS_BEFORE_S:-170} ] && timeout 90 python3 -m pytest -o addopts="" -m gpu -q tests/nn/test_fp8_experts_gpu.py 2>&1 | tail -3
kill $SMI
[ -n "${MAT:-}" ] && { wait $MAT; echo "matrix rc=$? t=$(( $(date +%s) - T0 ))s"; tail -14 "$OUT/matrix.log"; }
cd /tmp/v && tar czf "$OUT/validate_runs.tgz" --exclude='*/trace_rank*' --exclude='*.trace.json' . \
  && tar czf "$OUT/validate_traces.tgz" */trace_rank0.json 2>/dev/null
[ -d /tmp/vm ] && cd /tmp/vm && tar czf "$OUT/matrix_runs.tgz" .
ls -la "$OUT"
