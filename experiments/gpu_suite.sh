#!/usr/bin/env bash
# The GPU side by side in one call: ours against the PyTorch reference (on CUDA) at 64, 128 and 200 (the
# paper's COCO size), batch 1 beside the reference and the batch that fills the card for ours, float32
# and bfloat16, inside a wall-time budget.
#
#   bash experiments/gpu_suite.sh [--out DIR] [--budget SECONDS] [--cache DIR] [--rehearse]
#
# Each item (size x dtype) is one run of experiments/bench_vs_reference.py, which rewrites
# DIR/<size>_<dtype>.json and prints its table to DIR/<size>_<dtype>.md after every row, so what a run
# measured is kept when the budget or the machine runs out. Items run most-wanted first (float32 with the
# reference at each size, then bfloat16) and one is skipped when under --min-item seconds are left;
# DIR/suite.log says what ran, what was skipped and why. JAX's persistent compilation cache (--cache,
# default runs/jax_cache) lets a rerun on the same machine skip the compiles.
#
# --rehearse: the same suite on whatever backend is here (a CPU) with the architecture narrowed
# (--tiny), at 32x32, 2 iterations, a 150 MiB fill budget and no memory processes; tests/test_gpu_suite.py
# runs it twice, the second time from the first one's cache.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-runs/gpu_suite}
budget=480
cache=runs/jax_cache
min_item=75
rehearse=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --min-item) min_item=$2; shift 2 ;;
    --rehearse) rehearse=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python}
[[ -x .venv/bin/python && -z ${PYTHON:-} ]] && python=.venv/bin/python
mkdir -p "$out" "$cache"
export JAX_COMPILATION_CACHE_DIR=$(cd "$cache" && pwd)
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

if [[ $rehearse == 1 ]]; then
  sizes=(32); common=(--tiny --iters 2 --batches 1 fill --fill-mib 150 --no-rss)
else
  sizes=(64 128 200); common=(--iters 10 --batches 1 fill --no-rss)
fi

log="$out/suite.log"
deadline=$(( $(date +%s) + budget ))
echo "gpu suite: budget ${budget} s, cache $JAX_COMPILATION_CACHE_DIR ($(ls "$cache" | wc -l) entries), $(date -u +%FT%TZ)" | tee -a "$log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"

run_item() {  # run_item NAME ARGS...: one bench_vs_reference.py run inside what is left of the budget
  local name=$1; shift
  local left=$(( deadline - $(date +%s) ))
  if (( left < min_item )); then
    echo "$name: skipped, ${left} s left (under --min-item ${min_item})" | tee -a "$log"
    return 0
  fi
  local start=$(date +%s) status=0
  timeout --signal=TERM --kill-after=10 "$left" "$python" experiments/bench_vs_reference.py "$@" \
    --json "$out/$name.json" > "$out/$name.md" 2> "$out/$name.err" || status=$?
  local took=$(( $(date +%s) - start ))
  if (( status == 124 || status == 137 )); then
    echo "$name: stopped by the budget after ${took} s (rows finished before that are in $name.json)" | tee -a "$log"
  elif (( status != 0 )); then
    echo "$name: failed (exit $status) after ${took} s: $(tail -n 1 "$out/$name.err")" | tee -a "$log"
  else
    echo "$name: done in ${took} s" | tee -a "$log"
  fi
}

for size in "${sizes[@]}"; do
  run_item "${size}_float32" --sizes "$size" "${common[@]}"
done
for size in "${sizes[@]}"; do
  run_item "${size}_bfloat16" --sizes "$size" "${common[@]}" --set model.compute_dtype=bfloat16
done
echo "gpu suite: ended $(date -u +%FT%TZ), cache $(ls "$cache" | wc -l) entries" | tee -a "$log"
