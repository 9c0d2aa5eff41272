#!/bin/bash
# issue 31 benchmark chain, run from a worktree of the commit
set -u
W=$1; cd $W
export PYTHONPATH=$W/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
mkdir -p /tmp/p31
run() { name=$1; shift; echo "== $(date -u +%H:%M:%S) $name: $*"; "$PY" -m bench "$@" --out /tmp/p31/$name.json > /tmp/p31/$name.log 2>&1; echo "   exit $? at $(date -u +%H:%M:%S)"; }
run precision-classification train --precisions --data ../shared/data/sst2 --limit 6000 --seeds 1 2 3
run precision-ner ner --precisions --limit 5000 --seeds 1 2 3
run precision-sft sft --precisions --rows 800 --test-rows 200 --seeds 42
run precision-multilabel multilabel --precisions --limit 6000 --seeds 1
run precision-mlm mlm --precisions --reviews 1200 --seeds 1
echo "== $(date -u +%H:%M:%S) checkpoint for predict"
"$PY" -m tunelab.cli train --data ../shared/data/sst2/train.tsv --validation ../shared/data/sst2/dev.tsv --limit 6000 --output /tmp/p31/sst2-run --no-progress > /tmp/p31/sst2-run.log 2>&1; echo "   exit $?"
run predict predict --checkpoint /tmp/p31/sst2-run/best --data ../shared/data/sst2/dev.tsv
echo "== done $(date -u +%H:%M:%S)"
