"""Language-model adaptation on IMDb review text (issue 16): continued pre-training of a causal LM, and masked-LM
adaptation of an encoder before classifying with it.

    python -m bench lm-adapt cpt --reviews 600                 # SmolLM2 on review text: perplexity before / after
    python -m bench lm-adapt mlm --reviews 3000 --seeds 1 2    # MiniLM: MLM, then classifiers from both encoders

Both read `../shared/data/imdb/train.tsv` (sorted by label, so rows are a seeded sample):
- cpt: `tunelab train --task causal-lm --eval-before` on --reviews reviews' text (10% split off for validation),
  blocks of --block-size tokens; the validation perplexity at step 0 (the pretrained model) and after training,
  and the training tokens/s.
- mlm: `tunelab train --task masked-lm` on --reviews other reviews' text, then for each seed two classifiers on the
  same --labeled rows (a third split off, stratified, for validation), one from the adapted encoder and one from
  the bundled MiniLM, with tunelab's defaults otherwise; their validation accuracy side by side.
Every run is a `tunelab train` command in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import commit_label, run_tunelab, write_result  # noqa: E402
from tables import print_table  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.tsv"


def samples(path: Path, count: int, seed: int, skip: int = 0) -> list[str]:
    """Raw lines of a seeded sample of the file's rows (after the first `skip` of that order)."""
    import random

    header, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(seed).shuffle(lines)
    return [header] + lines[skip:skip + count]


def tunelab_train(*options: str) -> tuple[dict, list[dict], float]:
    """Run `tunelab train OPTIONS`; its summary.json, metrics.jsonl records and wall time."""
    out = Path(tempfile.mkdtemp()) / "run"
    wall = run_tunelab("train", *options, "--output", str(out), "--no-progress")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return json.loads((out / "summary.json").read_text()), records, wall


def tokens_per_second(summary: dict, block_size: int) -> float:
    """Training blocks are full (all but at most one), so tokens are rows x block size."""
    return summary["samples_per_second"] * block_size


def continued_pretraining(args, folder: Path) -> list[dict]:
    data = folder / "reviews.tsv"
    data.write_text("".join(samples(IMDB, args.reviews, args.seed)), encoding="utf-8")
    options = ["--task", "causal-lm", "--model", args.model, "--data", str(data), "--block-size",
               str(args.block_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--eval-before", "--seed", str(args.seed)] + (["--lora"] if args.lora else [])
    summary, records, wall = tunelab_train(*options)
    evaluations = [r for r in records if "eval_loss" in r]
    before, after = evaluations[0], evaluations[-1]
    return [{"model": args.model, "training": "LoRA" if args.lora else "full", "reviews": args.reviews,
             "perplexity_before": before["eval_perplexity"], "perplexity_after": after["eval_perplexity"],
             "tokens_per_s": tokens_per_second(summary, args.block_size), "train_s": summary["train_seconds"],
             "wall_s": wall}]


def mlm_then_classify(args, folder: Path) -> list[dict]:
    unlabeled = folder / "unlabeled.tsv"
    labeled = folder / "labeled.tsv"
    # Disjoint rows: the labeled sample first, the unlabeled text after it in the same shuffled order.
    labeled.write_text("".join(samples(IMDB, args.labeled, args.seed)), encoding="utf-8")
    unlabeled.write_text("".join(samples(IMDB, args.reviews, args.seed, skip=args.labeled)), encoding="utf-8")
    summary, records, mlm_wall = tunelab_train("--task", "masked-lm", "--model", args.model, "--data", str(unlabeled),
                                               "--block-size", str(args.block_size), "--epochs", str(args.epochs),
                                               "--eval-before", "--seed", str(args.seed))
    evaluations = [r for r in records if "eval_loss" in r]
    adapted = summary["best_dir"]
    rows = []
    for seed in args.seeds:
        for name, model in ((f"{args.model} as shipped", args.model), (f"{args.model} after MLM", adapted)):
            result, _, wall = tunelab_train("--model", model, "--data", str(labeled), "--validation-fraction", "0.33",
                                            "--seed", str(seed))
            rows.append({"encoder": name, "seed": seed, "accuracy": result["best_metrics"]["accuracy"],
                         "macro_f1": result["best_metrics"]["macro_f1"], "wall_s": wall,
                         "mlm_perplexity_before": evaluations[0]["eval_perplexity"],
                         "mlm_perplexity_after": evaluations[-1]["eval_perplexity"], "mlm_wall_s": mlm_wall,
                         "mlm_tokens_per_s": tokens_per_second(summary, args.block_size)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["cpt", "mlm"])
    parser.add_argument("--model", help="default: smollm2 (cpt), minilm (mlm)")
    parser.add_argument("--reviews", type=int, default=600, help="reviews of unlabeled text")
    parser.add_argument("--labeled", type=int, default=1000, help="mlm: labeled rows for the classifiers")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="cpt: blocks per batch")
    parser.add_argument("--lora", action="store_true", help="cpt: LoRA adapters instead of every weight")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="mlm: the classifiers' seeds")
    parser.add_argument("--out", help="the result file (default bench/results/lm-adapt-WHAT.json)")
    args = parser.parse_args()
    args.model = args.model or ("smollm2" if args.what == "cpt" else "minilm")
    folder = Path(tempfile.mkdtemp())
    rows = continued_pretraining(args, folder) if args.what == "cpt" else mlm_then_classify(args, folder)
    name = f"lm-adapt-{args.what}"
    print(f"\ncommit {commit_label()}; {args.model}; {args.reviews} reviews, blocks of {args.block_size}\n")
    print_table(name, rows)
    print("results:", write_result(name, rows, args.out, model=args.model, reviews=args.reviews,
                                   block_size=args.block_size, epochs=args.epochs))


if __name__ == "__main__":
    main()
