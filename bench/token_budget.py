"""Probe: train with token-budget batches instead of fixed-size ones (a negative result, kept to reproduce it).

Each batch holds as many rows as fit in BUDGET padded tokens (its longest row times its rows), so
2-word phrases come 100 to a batch and 40-token sentences 6 to a batch. It patches the training
sampler (tunelab.collate.LengthGroupedBatches) and then runs the normal CLI, one process only:

    python bench/token_budget.py 256 train --data ../shared/data/sst2/train.tsv ... (any `tunelab train` options)

On full SST-2 (one epoch) it ended below fixed batches of 16: see BENCHMARKS.md.
"""

from __future__ import annotations

import random
import sys

import tunelab.collate as collate
from tunelab.cli import main

_fixed_size = collate.LengthGroupedBatches.batches
_cache: dict[tuple[int, int], list[list[int]]] = {}


def token_budget_batches(self, epoch: int, budget: int) -> list[list[int]]:
    """Like LengthGroupedBatches.batches (shuffle, sort inside mega-batches, shuffle batches), cut by tokens."""
    if not self.shuffle:
        return _fixed_size(self, epoch)
    key = (id(self), epoch)
    if key not in _cache:  # len() is asked at every step
        indices = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(indices)
        mega = self.batch_size * self.group
        out: list[list[int]] = []
        for start in range(0, len(indices), mega):
            batch: list[int] = []
            longest = 0
            for i in sorted(indices[start : start + mega], key=lambda i: self.lengths[i]):
                if batch and max(longest, self.lengths[i]) * (len(batch) + 1) > budget:
                    out.append(batch)
                    batch, longest = [], 0
                batch.append(i)
                longest = max(longest, self.lengths[i])
            if batch:
                out.append(batch)
        rng.shuffle(out)
        _cache[key] = out
    return _cache[key]


if __name__ == "__main__":
    budget = int(sys.argv.pop(1))
    collate.LengthGroupedBatches.batches = lambda self, epoch: token_budget_batches(self, epoch, budget)
    collate.LengthGroupedBatches.__len__ = lambda self: len(self.batches(self.epoch))
    sys.exit(main())
