#!/usr/bin/env bash
# Quality on GLUE dev sets with the bundled MiniLM (issue 2, must-show 3).
# Usage: bench/glue.sh [sst2|mrpc|all]   (data from ../shared/data, see its README)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1
what=${1:-all}

if [[ $what == sst2 || $what == all ]]; then
  # SST-2: 8,000 training rows (seeded sample), the full dev set, one epoch.
  $BIN/tunelab train --data "$DATA/sst2/train.tsv" --validation "$DATA/sst2/dev.tsv" \
    --limit 8000 --epochs 1 --learning-rate 1.5e-4 --head-learning-rate 1e-3 --batch-size 32 --seed "${SEED:-42}" \
    --output runs/bench-sst2-8k${SEED:+-s$SEED} --overwrite --no-progress
fi
if [[ $what == sst2-full ]]; then
  # SST-2: the full training set (67,349 rows), one epoch, layer-wise learning-rate decay, token embeddings frozen,
  # no gradient clipping (at 1.0 it rescaled nearly every step and cost 7-17% of each one; BENCHMARKS.md).
  $BIN/tunelab train --data "$DATA/sst2/train.tsv" --validation "$DATA/sst2/dev.tsv" \
    --epochs 1 --learning-rate 1e-4 --head-learning-rate 1e-3 --layer-decay 0.8 --batch-size 16 --eval-every 1000 \
    --freeze-embeddings --max-grad-norm 0 --seed "${SEED:-42}" --output runs/bench-sst2-full${SEED:+-s$SEED} --overwrite --no-progress
fi
if [[ $what == mrpc || $what == all ]]; then
  # MRPC: sentence pairs, the full training set, three epochs, best by F1.
  $BIN/tunelab train --data "$DATA/mrpc/train.tsv" --validation "$DATA/mrpc/dev.tsv" \
    --text-column text_a --text-pair-column text_b --metric f1 \
    --epochs 3 --learning-rate 1e-4 --batch-size 32 \
    --output runs/bench-mrpc --overwrite --no-progress
fi
