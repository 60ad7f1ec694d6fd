#!/usr/bin/env bash
# Throughput of ZFNet on one GPU, for the README's "Throughput" table (issue 13). Budget: < 8 minutes on an H100/H200.
#
#   scripts/gpu_benchmark.sh            # on a GPU machine; CSV -> ${OUT:-outputs/bench}/gpu_benchmark.csv, one
#                                       # results record per run -> ${OUT:-outputs/bench}/results/throughput/ (copy
#                                       # them into the repository's results/throughput/ to keep them)
#   scripts/gpu_benchmark.sh --smoke    # the same steps on the CPU with tiny sizes (checks the script runs)
#
# Runs (one CSV row each):
#   1-2. synthetic data, bf16 + channels_last, without / with torch.compile: the model's ceiling, counted FLOPs,
#        fraction of the bf16 peak;
#   3-4. a small generated dataset re-encoded as LitData shards (256 px, JPEG q90): loader-only, end-to-end
#        Lightning and the plain loop, without / with torch.compile;
#   5.   the diagnostics' extra time on an ImageNet-sized synthetic validation epoch (50,000 images at 224 px).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
OUT_DIR=${OUT:-outputs/bench}
mkdir -p "$OUT_DIR"
CSV="$OUT_DIR/gpu_benchmark.csv"
CACHE=${BENCH_CACHE:-$OUT_DIR/cache}

if [[ "${1:-}" == "--smoke" ]]; then
  COMMON=(--device cpu --precision bf16-mixed --channels-last --image-size 64 --batch 8 --steps 1 --windows 2
          --warmup 1 --workers 0 --cache-dir "$CACHE" --csv "$CSV" --record "$OUT_DIR/results")
  COMPILE=(--compile --compile-backend eager)   # inductor takes minutes on a CPU
  DIAG=(--diag-images 16 --diag-callbacks top9,filter_health)
  SHARDS=()
  T=600
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
  WORKERS=${WORKERS:-$(( $(nproc) - 2 ))}
  COMMON=(--device cuda --precision bf16-mixed --channels-last --image-size 224 --batch 256 --steps 10 --windows 5
          --warmup 5 --workers "$WORKERS" --cache-dir "$CACHE" --csv "$CSV" --record "$OUT_DIR/results")
  COMPILE=(--compile)
  DIAG=(--diag-images 50000)
  SHARDS=(--steps 5 --windows 3 --warmup 3)   # 5,120 generated images (generation + conversion ~1-2 min, once)
  T=200
fi

run() {  # each run is capped so one slow step cannot eat the whole budget
  echo "== $*" | tee -a "$OUT_DIR/gpu_benchmark.log"
  timeout "$T" "$PY" -m zfnet_exp.benchmarks.throughput "${COMMON[@]}" "$@" 2>>"$OUT_DIR/gpu_benchmark.err" \
    | tee -a "$OUT_DIR/gpu_benchmark.log" || echo "   (failed or timed out: see $OUT_DIR/gpu_benchmark.err)"
}

start=$(date +%s)
run --data synthetic --measure synthetic
run --data synthetic --measure synthetic "${COMPILE[@]}"
run --data shapes --backend shards --measure loader,lightning,plain "${SHARDS[@]}"
run --data shapes --backend shards --measure lightning,plain "${SHARDS[@]}" "${COMPILE[@]}"
run --data synthetic --measure "" "${DIAG[@]}"
echo "done in $(( $(date +%s) - start )) s; CSV: $CSV"
