"""Long documents (IMDb): `--long-text windows` against `--long-text truncate` at the same --max-length.

    python bench/long_text.py --data ../shared/data/imdb/train.tsv --limit 3000 --epochs 1

Both runs are `tunelab train` commands on the same rows (a seeded sample of --limit reviews, a third of them
split off, stratified, for validation) with the bundled MiniLM and tunelab's defaults; only --long-text differs.
Wall time is the whole command (reading, tokenizing, training and the evaluation). First the share of long
reviews in the whole file is counted at --max-length and at 512 pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import commit_label, run_tunelab, write_result  # noqa: E402
from tables import print_table  # noqa: E402


def long_shares(path: str, lengths: tuple[int, ...]) -> dict[int, dict]:
    """How many of the file's texts are longer than each of `lengths` pieces (the bundled tokenizer)."""
    from tunelab.tasks.texts import encode
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.modeling import load_tokenizer, resolve_model

    data = load_task_data(DataSpec(path, validation_fraction=0.1))
    texts = data.train["text"].tolist() + data.validation["text"].tolist()
    tokenizer = load_tokenizer(resolve_model("minilm"))
    return {n: encode(tokenizer, texts, None, n).long.as_dict() for n in lengths}


def train(args, mode: str, output: Path) -> dict:
    command = ["tunelab", "train", "--data", args.data, "--limit", str(args.limit), "--validation-fraction",
               str(args.validation_fraction), "--epochs", str(args.epochs), "--max-length", str(args.max_length),
               "--seed", str(args.seed), "--long-text", mode, "--output", str(output), "--overwrite",
               "--no-progress"]
    wall = run_tunelab(*command[1:])
    summary = json.loads((output / "summary.json").read_text())
    best = summary["best_metrics"]
    return {"long_text": mode, "command": " ".join(command[:2] + [c if not c.startswith("/") else Path(c).name
                                                                   for c in command[2:]]),
            "accuracy": best["accuracy"], "macro_f1": best["macro_f1"], "rows_trained": summary["rows_trained"],
            "train_s": summary["train_seconds"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/imdb/train.tsv")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--validation-fraction", type=float, default=1 / 3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", default="runs/long-text")
    parser.add_argument("--out", help="the result file (default bench/results/NAME.json)")
    args = parser.parse_args()

    commit = commit_label()
    shares = long_shares(args.data, (args.max_length, 512))
    for n, share in shares.items():
        print(f"longer than {n} pieces: {share['long_rows']:,} of {share['rows']:,} reviews "
              f"({share['long_rows'] / share['rows']:.1%}); longest {share['longest']:,}")
    rows = [train(args, mode, Path(args.runs) / mode) for mode in ("truncate", "windows")]
    print(f"\ncommit {commit}; {args.limit} reviews ({args.validation_fraction:.3g} for validation), "
          f"--max-length {args.max_length}, {args.epochs} epoch(s)\n")
    print_table("long-text", rows)
    for row in rows:
        print(f"  {row['long_text']}: {row['command']}")
    print("results:", write_result("long-text", rows, args.out, shares=shares))


if __name__ == "__main__":
    main()
