"""What batching can gain on this machine, without HTTP: the model path of `tunelab serve`.

    python bench/batching.py --checkpoint runs/bench-sst2-8k/best --texts ../shared/data/sst2/dev.tsv

Random groups of 32 sentences (what a serving micro-batch holds with 32
clients) go through the predictor's model path three ways: one row per forward
pass (batch size 1), the 32 padded to their longest as one batch, and the 32
cut by `prediction_batches` (longest first, a new batch before a row shorter
than 2/3 of the batch's longest). Rows/s is tokenizing, padding and the
forward pass. The last column over the first bounds what micro-batching can
gain in a server, whatever its HTTP stack.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import read_tsv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--texts", required=True, help="TSV with a text column (GLUE style)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--group-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    from tunelab.collate import prediction_batches

    from tunelab.tasks.texts import encode
    from tunelab.predict import load

    (texts,) = read_tsv(args.texts, args.text_column)
    rng = random.Random(0)
    groups = [rng.sample(texts, args.group_size) for _ in range(args.groups)]
    rows = args.groups * args.group_size
    print(f"threads {torch.get_num_threads()}, {args.groups} random groups of {args.group_size} rows from {args.texts}")
    print("| backend | batch size 1 rows/s | one padded batch rows/s | padding per real token | prediction_batches "
          "rows/s | padding per real token | batches per group | best / batch size 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in ("torch", "onnx"):
        predictor = load(args.checkpoint, backend=backend)

        def run(group, cut) -> tuple[int, int, int]:
            """Tokenize, cut, pad, forward; return (batches, padded tokens, real tokens)."""
            encoded = encode(predictor.tokenizer, group, None, predictor.max_length)
            lengths = encoded.lengths
            count = padded = 0
            for indices in cut(lengths):
                predictor.forward(predictor.collator([encoded[i] for i in indices]))
                count += 1
                padded += len(indices) * max(lengths[i] for i in indices)
            return count, padded, sum(lengths)

        ways = {
            "single": lambda lengths: [[i] for i in range(len(lengths))],
            "one": lambda lengths: [list(range(len(lengths)))],
            "cut": lambda lengths: prediction_batches(lengths, args.group_size),
        }
        results = {}
        with torch.inference_mode():
            for name, cut in ways.items():
                for group in groups[:2]:  # warm-up
                    run(group, cut)
                started = time.perf_counter()
                totals = [run(group, cut) for group in groups]
                seconds = time.perf_counter() - started
                batches, padded, real = (sum(t[k] for t in totals) for k in range(3))
                results[name] = (rows / seconds, padded / real - 1, batches / args.groups)
        single, one, cut = results["single"], results["one"], results["cut"]
        print(f"| {backend} | {single[0]:.1f} | {one[0]:.1f} | {one[1]:.2f} | {cut[0]:.1f} | {cut[1]:.2f} | "
              f"{cut[2]:.1f} | {max(one[0], cut[0]) / single[0]:.2f} |")


if __name__ == "__main__":
    main()
