#!/usr/bin/env bash
# The GPU runs behind README "Default recipe" (lever table, seeds) and "Fig. 6 on the embedded data" (3 seeds per
# variant), all at once on one GPU (one process per run, fp32 as on the CPU; ~5 minutes on an H200 with 16 cores).
#
#   OUT=/path/to/results scripts/gpu_recipe_fig6_runs.sh
#
# Writes into $OUT: fig6.md/.csv/.png (the summary), levers.md (the lever runs), allcb.log (a 2-epoch default run
# with every callback on: the GPU path of every diagnostic), bench.log (synthetic-data throughput at 224 px) and
# runs.tgz (each run's metrics.csv, config and last conv1 filter grid).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_recipe_fig6_runs}
WORK=${WORK:-/tmp/gpu_recipe_fig6_runs}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled OMP_NUM_THREADS=1
GPU=(trainer.accelerator=gpu logger=csv data.num_workers=1)

# the data of every run, generated once before the runs start in parallel
"$PY" -c "from zfnet_exp.experiments.levers import prepare_data; prepare_data([])" > "$WORK/prepare.log" 2>&1

pids=()
for variant in zf alexnet_conv1; do
  for seed in 1 2 3; do
    timeout 300 "$PY" train.py experiment=fig6_shapes fig6=$variant seed=$seed "${GPU[@]}" \
      hydra.run.dir="$WORK/fig6/${variant}_seed$seed" > "$WORK/fig6_${variant}_$seed.out" 2>&1 &
    pids+=($!)
  done
done
timeout 300 "$PY" -m zfnet_exp.experiments.levers --out "$WORK/lv" --jobs 4 --threads 1 \
  --only default,previous_default --seeds 43,44 "${GPU[@]}" > "$WORK/levers_seeds.log" 2>&1 &
pids+=($!)
timeout 300 "$PY" -m zfnet_exp.experiments.levers --out "$WORK/lv" --jobs 6 --threads 1 \
  --only default+wd10,default+wd20,default_init0.003,default_init0.001,default+gc_on_conv1,default_kaiming_conv1 \
  --seeds 42 "${GPU[@]}" > "$WORK/levers_new.log" 2>&1 &
pids+=($!)
timeout 300 "$PY" train.py trainer.max_epochs=2 "${GPU[@]}" hydra.run.dir="$WORK/allcb" > "$OUT/allcb.log" 2>&1 &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
echo "runs done at $(date -u +%T)"

"$PY" -m zfnet_exp.experiments.fig6 "$WORK/fig6" --out "$OUT" > "$OUT/fig6.log" 2>&1 \
  || "$PY" -m zfnet_exp.experiments.fig6 "$WORK/fig6" --out "$OUT" --device cpu >> "$OUT/fig6.log" 2>&1
"$PY" -m zfnet_exp.experiments.levers --out "$WORK/lv" --summarize \
  --only default,previous_default,default+wd10,default+wd20,default_init0.003,default_init0.001,default+gc_on_conv1,default_kaiming_conv1 \
  --seeds 42,43,44 > "$OUT/levers.md" 2>&1
timeout 45 "$PY" -m zfnet_exp.benchmarks.throughput --device cuda --precision bf16-mixed --channels-last \
  --image-size 224 --batch 256 --steps 10 --windows 5 --warmup 5 --workers 0 --data synthetic --measure synthetic \
  > "$OUT/bench.log" 2>&1
"$PY" - "$WORK" "$OUT/runs.tgz" <<'PYEOF'
import sys, tarfile
from pathlib import Path
work, out = Path(sys.argv[1]), sys.argv[2]
with tarfile.open(out, "w:gz") as tar:
    for run in {p.parent for p in work.rglob("metrics.csv")}:
        for f in [run / "metrics.csv", run / ".hydra" / "config.yaml", run / "train.out"]:
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(work)))
        grids = sorted(p for p in run.rglob("*.png") if "filters" in p.parts and "conv1" in str(p))
        if grids:
            tar.add(grids[-1], arcname=str(grids[-1].relative_to(work)))
    for f in work.glob("*.out"):
        tar.add(f, arcname=f.name)
PYEOF
cat "$OUT/fig6.log" "$OUT/levers.md"; tail -3 "$OUT/allcb.log"; tail -5 "$OUT/bench.log"
