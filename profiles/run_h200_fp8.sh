#!/bin/bash
# The FP8 batch on one H200, in one `run` call of at most ~9 minutes of wall time (BUDGET_S, default 520 s for the
# steps, then packing). Steps, in this order (STEPS picks and orders them; each has its own time limit and
# is skipped when less than its minimum is left of the budget, so the call ends inside its limit):
#   tests        the GPU tests of the FP8 kernels, the cache and the tables (-m gpu) + the CPU tests of the cache
#   val1k        dsv3sim validate --device cuda --fp8, then BF16, one-layer model, 4 x 1024 tokens per micro-batch
#   bench        benchmarks/bench_fp8_layer.py: FP8 vs BF16 expert GEMMs (one_layer, ep32) and the whole layer
#   probe        benchmarks/probe_fp8_step.py: step time split (device, graph, host issue, requant, cold/warm)
#   val4k        the same validate pair at 4 x 4096 tokens (FP8 with expandable_segments: near the card's memory)
#   val64        validate BF16 at 2 x 64 tokens (the host-bound end of the one-layer sizes)
#   wgrad        benchmarks/probe_wgrad_tiles.py: the Wgrad kernel's tile configurations at EP32 and one-layer shapes
# VAL_BF16=0 skips the BF16 half of each validate pair (its numbers unchanged by an FP8-only change).
# Every command goes to $OUT/commands.log with its exit code and seconds; stdout/stderr of each step in
# $OUT/logs.tgz, the validate run folders (JSON, no traces) in $OUT/validate_runs.tgz, the benchmarks' JSON as
# $OUT/fp8_layer_bench.json and $OUT/fp8_step_probe.json, clocks and power in $OUT/nvidia_smi.csv: 6 files,
# inside the device tool's limit of 8. Packed after every step, so a call cut short still returns what ran.
# SMOKE=1 runs the same steps on this machine's CPU as far as they have a CPU mode (GPU tests collected and
# skipped, validate on the tiny model, the benchmarks' argument parsing) to check the script, not to measure.
# Run from the repository root of a copy that has the simpy/plotly wheels in .whl/ or ../.whl/ (README "Running
# on the GPU machine"); profiles/h200/fp8_log.md names the exact call.
set -u
cd "$(dirname "$0")/.." || exit 1
SMOKE=${SMOKE:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=${WORK:-/tmp/fp8run}; rm -rf "$W"; mkdir -p "$W/logs" "$W/v"
BUDGET_S=${BUDGET_S:-520}
STEPS=${STEPS:-tests val1k bench probe val4k}
VAL_BF16=${VAL_BF16:-1}
T0=$(date +%s)
export PYTHONUNBUFFERED=1
CMDS="$OUT/commands.log"
: > "$CMDS"

. profiles/wheels.sh  # a bare GPU box: install the carried wheels; the repository root on PYTHONPATH

{
  echo "# run_h200_fp8.sh $(date -u +%FT%TZ) SMOKE=$SMOKE STEPS='$STEPS' BUDGET_S=$BUDGET_S"
  echo "# commit $(cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)"
  python3 -c "import torch; print('# torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
  python3 -c "import triton; print('# triton', triton.__version__)" 2>/dev/null || echo "# triton not installed"
  echo "# $(nproc) cores; $(uptime)"
} >> "$CMDS" 2>&1

SMI=
if [ "$SMOKE" != 1 ] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,memory.used \
    --format=csv -lms 100 > "$OUT/nvidia_smi.csv" 2>&1 &
  SMI=$!
fi

pack() {
  tar czf "$OUT/logs.tgz" -C "$W" logs 2>/dev/null
  tar czf "$OUT/validate_runs.tgz" -C "$W" --exclude='*/trace_rank*' --exclude='*.trace.json' v 2>/dev/null
}

step() {  # name, limit s, minimum s left to start it, command...
  local name=$1 lim=$2 need=$3; shift 3
  local left=$(( BUDGET_S - ($(date +%s) - T0) ))
  if [ "$left" -lt "$need" ]; then
    echo "SKIP $name: ${left}s left of the budget, it needs ${need}s" | tee -a "$CMDS"
    return
  fi
  [ "$lim" -gt "$left" ] && lim=$left
  echo "\$ $*" >> "$CMDS"
  local t=$(date +%s)
  timeout -k 10 "$lim" "$@" > "$W/logs/$name.out" 2> "$W/logs/$name.err"
  local rc=$?
  echo "  -> $name rc=$rc$([ $rc = 124 ] && echo ' (timed out)') $(( $(date +%s) - t ))s, t=$(( $(date +%s) - T0 ))s" | tee -a "$CMDS"
  tail -n 4 "$W/logs/$name.out" "$W/logs/$name.err" 2>/dev/null | sed 's/^/     /' >> "$CMDS"
  pack
}

if [ "$SMOKE" = 1 ]; then
  DEV=cpu; MODEL=tiny; SEQ1=64; SEQ4=128; VSTEPS=2
else
  DEV=cuda; MODEL=one-layer; SEQ1=1024; SEQ4=4096; VSTEPS=4
fi
validate() {  # name, limit, minimum, flags...; ALLOC_CONF=...: the ranks' PYTORCH_CUDA_ALLOC_CONF
  local name=$1 lim=$2 need=$3; shift 3
  step "$name" "$lim" "$need" env ${ALLOC_CONF:+PYTORCH_CUDA_ALLOC_CONF=$ALLOC_CONF} python3 -m dsv3sim validate \
    --device $DEV --model $MODEL --nproc 1 --steps $VSTEPS --out "$W/v/$name" --json "$@"
  python3 - "$W/v/$name/validation.json" <<'EOF' >> "$CMDS" 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  = {sys.argv[1]}: measured step {d['measured_step_s'] * 1e3:.1f} ms, predicted {d['predicted_step_s'] * 1e3:.1f} ms, "
      f"error {d['error']:+.1%}")
EOF
}
GPU_TESTS="tests/nn/test_fp8_experts_gpu.py tests/nn/test_fp8_gpu.py tests/nn/test_gpu.py tests/profile/test_gpu.py"

for s in $STEPS; do
  case $s in
    tests)
      step gpu_tests 130 60 python3 -m pytest -o addopts="" -p no:cacheprovider --import-mode=importlib -q -rs \
        -m gpu $GPU_TESTS
      step cache_tests 40 20 python3 -m pytest -o addopts="" -p no:cacheprovider --import-mode=importlib -q \
        tests/nn/test_fp8_weights.py tests/nn/test_fp8_cache.py ;;
    val1k)
      validate b4s1024-fp8 110 60 --micro-batch 4 --seq-len $SEQ1 --fp8
      [ "$VAL_BF16" = 1 ] && validate b4s1024-bf16 100 50 --micro-batch 4 --seq-len $SEQ1 ;;
    bench)
      if [ "$SMOKE" = 1 ]; then
        step bench 20 5 python3 benchmarks/bench_fp8_layer.py --help
      else
        step bench 130 60 python3 benchmarks/bench_fp8_layer.py --parts experts,layer --cases one_layer,ep32 \
          --out "$OUT/fp8_layer_bench.json"
      fi ;;
    probe)
      if [ "$SMOKE" = 1 ]; then
        step probe 20 5 python3 benchmarks/probe_fp8_step.py --help
      else
        step probe 110 60 env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 benchmarks/probe_fp8_step.py --tokens 4096,16384 --graph-max-tokens 4096 \
          --out "$OUT/fp8_step_probe.json"
      fi ;;
    val4k)
      ALLOC_CONF=expandable_segments:True validate b4s4096-fp8 140 100 --micro-batch 4 --seq-len $SEQ4 --fp8
      [ "$VAL_BF16" = 1 ] && validate b4s4096-bf16 110 80 --micro-batch 4 --seq-len $SEQ4 ;;
    val64)  # the smallest H200 size of the validation matrix, BF16 (2 x 64 tokens: host-bound)
      validate b2s64-bf16 80 40 --micro-batch 2 --seq-len 64 ;;
    wgrad)
      if [ "$SMOKE" = 1 ]; then
        step wgrad 20 5 python3 benchmarks/probe_wgrad_tiles.py --help
      else
        step wgrad 150 60 python3 benchmarks/probe_wgrad_tiles.py --out "$OUT/fp8_wgrad_tiles.json"
      fi ;;
    *) echo "unknown step $s (known: tests val1k val64 bench probe val4k wgrad)" | tee -a "$CMDS" ;;
  esac
done

[ -n "$SMI" ] && kill "$SMI"
pack
echo "# done t=$(( $(date +%s) - T0 ))s" | tee -a "$CMDS"
ls -la "$OUT"
