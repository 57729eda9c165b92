#!/usr/bin/env bash
# Simulator speed against the committed baseline (CPU seconds of each benchmark, caches emptied each round).
#   bash benchmarks/speed.sh           compare: exit 1 when a benchmark's best round is >= 50 % slower
#   bash benchmarks/speed.sh save      record a new baseline (commit benchmarks/baseline/ with the change)
# Extra pytest arguments pass through, e.g. `-m "slow or not slow"` for the long ones too.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(benchmarks/ --benchmark-only -q --benchmark-timer=time.process_time --benchmark-storage=benchmarks/baseline
        --benchmark-columns=min,median,max,rounds --benchmark-sort=name)
if [[ "${1:-}" == "save" ]]; then
  shift
  exec python -m pytest "${common[@]}" --benchmark-save=baseline "$@"
fi
exec python -m pytest "${common[@]}" --benchmark-compare --benchmark-compare-fail=min:50% "$@"
