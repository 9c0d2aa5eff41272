#!/bin/bash
set -u
W=$1; cd $W
export PYTHONPATH=$W/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
mkdir -p /tmp/p31c
run() { name=$1; shift; echo "== $(date -u +%H:%M:%S) $name: $*"; "$PY" -m bench "$@" --out /tmp/p31c/$name.json > /tmp/p31c/$name.log 2>&1; echo "   exit $? at $(date -u +%H:%M:%S)"; }
run profile profile
run precision-sft sft --precisions --rows 800 --test-rows 200 --seeds 42
echo "== done $(date -u +%H:%M:%S)"
