#!/usr/bin/env bash
# Six-trial sweeps on MRPC (600 training rows, full dev set), local backend and Ray, and a killed sweep resumed.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1
space=(--data "$DATA/mrpc/train.tsv" --validation "$DATA/mrpc/dev.tsv" --text-column text_a --text-pair-column text_b
       --limit 600 --metric f1 --epochs 1,2 --learning-rates 5e-5,1e-4,2e-4 --warmup-steps 0 --weight-decays 0.01
       --batch-sizes 16)
rm -rf runs/sweep-mrpc-local runs/sweep-mrpc-ray
echo "== local backend, killed after two trials"
$BIN/tunelab sweep --study runs/sweep-mrpc-local "${space[@]}" > /dev/null 2>&1 &
pid=$!
until [ "$(ls runs/sweep-mrpc-local/trials 2>/dev/null | wc -l)" -ge 3 ]; do sleep 1; done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed with $(ls runs/sweep-mrpc-local/trials | wc -l) trial folders started"
echo "== local backend, run again"
time $BIN/tunelab sweep --study runs/sweep-mrpc-local "${space[@]}"
echo "== ray backend (2 trials at a time, 1 thread each)"
time $BIN/tunelab sweep --study runs/sweep-mrpc-ray "${space[@]}" --backend ray --parallel 2
