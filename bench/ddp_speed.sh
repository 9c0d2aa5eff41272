#!/usr/bin/env bash
# Training throughput of the bundled MiniLM: one process (2 threads) against two DDP processes
# (1 thread each) started by accelerate's multi-CPU launcher (mpirun), same data and batch per process.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--data "$DATA/sst2/train.tsv" --validation "$DATA/sst2/dev.tsv" --limit 4000 --epochs 1
        --learning-rate 1e-4 --batch-size 16 --no-progress --overwrite)
echo "== 1 process, 2 threads"
$BIN/tunelab train "${common[@]}" --threads 2 --output runs/bench-ddp-1 | tail -n 2
echo "== 2 processes (accelerate launch --cpu --num_processes 2), 1 thread each"
printf 'localhost slots=2\n' > runs/hostfile
OMP_NUM_THREADS=1 $BIN/accelerate launch --num_processes 2 --num_machines 1 --cpu --mpirun_hostfile runs/hostfile \
  --mixed_precision no --dynamo_backend no -m tunelab.cli train "${common[@]}" --threads 1 --output runs/bench-ddp-2 | tail -n 2
