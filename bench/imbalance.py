"""Class imbalance (SST-2): `--class-weights balanced` against `none` when positives are a tenth of negatives.

    python bench/imbalance.py --data ../shared/data/sst2 --negatives 8000 --seeds 1 2

The training rows are a seeded sample of --negatives negative SST-2 training rows and a tenth as many
positive ones; the (balanced: 428 / 444) dev set scores every run. Each run is a `tunelab train` command with
the bundled MiniLM and tunelab's defaults, only --class-weights and --seed differing. Reported: accuracy, macro
F1 and each class's recall at the checkpoint tunelab keeps (best accuracy), from `tunelab evaluate --json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import commit_label, write_result  # noqa: E402
from tables import print_table  # noqa: E402


def imbalanced_rows(data: Path, negatives: int, share: float, out: Path) -> dict[str, int]:
    """A JSONL file of `negatives` negative rows and share x as many positive ones (seeded samples)."""
    import pandas as pd

    from tunelab.data import DataSpec

    from tunelab.tasks import load_task_data

    train = load_task_data(DataSpec(str(data / "train.tsv"), validation=str(data / "dev.tsv"))).train
    names = ["0", "1"]
    frame = pd.DataFrame({"text": train["text"], "label": [names[i] for i in train["label"]]})
    negative = frame[frame["label"] == "0"].sample(n=negatives, random_state=0)
    positive = frame[frame["label"] == "1"].sample(n=round(negatives * share), random_state=0)
    rows = pd.concat([negative, positive]).sample(frac=1.0, random_state=0)
    rows.to_json(out, orient="records", lines=True, force_ascii=False)
    return {"negative": len(negative), "positive": len(positive)}


def run(args, train_file: Path, weights: str, seed: int) -> dict:
    output = Path(args.runs) / f"{weights}-seed{seed}"
    command = ["tunelab", "train", "--data", str(train_file), "--validation", str(Path(args.data) / "dev.tsv"),
               "--class-weights", weights, "--seed", str(seed), "--output", str(output), "--overwrite",
               "--no-progress"]
    for step in (command, ["tunelab", "evaluate", str(output / "best"), str(Path(args.data) / "dev.tsv"), "--json",
                           "--no-progress"]):
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-4000:])
            raise SystemExit(f"{' '.join(step)} failed with exit code {result.returncode}")
    evaluation = json.loads(result.stdout)
    recall = {name: row["recall"] for name, row in evaluation["per_class"].items() if name in ("0", "1")}
    return {"class_weights": weights, "seed": seed, "accuracy": evaluation["metrics"]["accuracy"],
            "macro_f1": evaluation["metrics"]["macro_f1"], "recall_negative": recall["0"],
            "recall_positive": recall["1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--negatives", type=int, default=8000)
    parser.add_argument("--share", type=float, default=0.1, help="positives per negative")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", default="runs/imbalance")
    parser.add_argument("--out", help="the result file (default bench/results/NAME.json)")
    args = parser.parse_args()

    commit = commit_label()
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    train_file = Path(args.runs) / "train.jsonl"
    counts = imbalanced_rows(Path(args.data), args.negatives, args.share, train_file)
    rows = [run(args, train_file, weights, seed) for weights in ("none", "balanced") for seed in args.seeds]
    means = []
    for weights in ("none", "balanced"):
        mine = [r for r in rows if r["class_weights"] == weights]
        means.append({"class_weights": weights, "seed": "mean",
                      **{k: sum(r[k] for r in mine) / len(mine) for k in mine[0] if k not in ("class_weights", "seed")}})
    print(f"commit {commit}; training rows: {counts['negative']:,} negative, {counts['positive']:,} positive; "
          f"dev: SST-2 dev.tsv\n")
    print_table("imbalance", rows + means)
    print("results:", write_result("imbalance", rows + means, args.out, counts=counts))


if __name__ == "__main__":
    main()
