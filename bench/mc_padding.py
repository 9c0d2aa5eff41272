"""Multiple choice: how much of a padded batch is text, batched as the run_swag.py recipe does and as well as
length grouping can, on the same seeded sample `python -m bench mc` trains on. No training: it bounds the speed
that batching alone can buy on a CPU that computes every padded position.

    python -m bench mc-padding --limit 1000

Every choice is tokenized as the recipe does (context, question + " " + choice, truncated at the tokenizer's
limit) by the bundled MiniLM's tokenizer; a batch of 8 rows x C choices is padded to its longest choice. Layouts:
the recipe's random batches (mean of five shuffles), rows sorted by their longest choice (the best any grouping
of whole rows can do) and no padding at all (every choice its own length, which one `batch x choices x length`
tensor cannot be). The ceilings are the ratios of positions computed, ignoring attention's quadratic term.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import commit_label  # noqa: E402
from mc import DATA, read  # noqa: E402


def padded(lengths: list[list[int]], order: list[int], batch: int) -> int:
    """Positions computed when rows are taken in `order`, `batch` at a time, each padded to its longest."""
    total = 0
    for start in range(0, len(order), batch):
        rows = [lengths[i] for i in order[start:start + batch]]
        total += sum(len(r) for r in rows) * max(max(r) for r in rows)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit", type=int, default=1000, help="the seeded sample of `python -m bench mc --limit`")
    parser.add_argument("--batch-size", type=int, default=8, help="rows a batch (the recipe's and tunelab's 8)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from tunelab.modeling import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    print(f"commit {commit_label()}, {args.limit} rows a dataset, batches of {args.batch_size} rows")
    print("| dataset | mean choice pieces | text share: random batches | sorted by longest | "
          "ceiling of grouping vs random | ceiling of no padding vs random |")
    print("|---|---|---|---|---|---|")
    for dataset in sorted(DATA):
        rows = read(str(Path(args.data) / dataset / "train.jsonl"), dataset)
        rows = random.Random(0).sample(rows, min(args.limit, len(rows)))  # bench/mc.py's sample
        lengths = []
        for row in rows:
            seconds = [f"{row['question']} {choice}" if row["question"] else choice for choice in row["choices"]]
            encoded = tokenizer([row["context"]] * len(seconds), seconds, truncation=True)
            lengths.append([len(ids) for ids in encoded["input_ids"]])
        text = sum(map(sum, lengths))
        shuffled = sum(padded(lengths, random.Random(s).sample(range(len(rows)), len(rows)), args.batch_size)
                       for s in range(5)) / 5
        grouped = padded(lengths, sorted(range(len(rows)), key=lambda i: max(lengths[i])), args.batch_size)
        choices = sum(map(len, lengths))
        print(f"| {dataset} | {text / choices:.1f} | {text / shuffled:.0%} | {text / grouped:.0%} | "
              f"{shuffled / grouped:.2f}x | {shuffled / text:.2f}x |")


if __name__ == "__main__":
    main()
