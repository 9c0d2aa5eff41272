#!/bin/bash
# issue 31 benchmark chain (second part), run from a worktree of the commit
set -u
W=$1; cd $W
export PYTHONPATH=$W/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
mkdir -p /tmp/p31b
run() { name=$1; shift; echo "== $(date -u +%H:%M:%S) $name: $*"; "$PY" -m bench "$@" --out /tmp/p31b/$name.json > /tmp/p31b/$name.log 2>&1; echo "   exit $? at $(date -u +%H:%M:%S)"; }
run profile profile
run profile-fp32 profile --precision fp32
run predict predict --checkpoint /tmp/p31/sst2-run/best --data ../shared/data/sst2/dev.tsv
run precision-multilabel multilabel --precisions --limit 6000 --seeds 1
echo "== done $(date -u +%H:%M:%S)"
