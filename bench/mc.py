"""Multiple choice: tunelab against the transformers `run_swag.py` recipe, side by side, over several seeds.

    python -m bench mc hellaswag --seeds 42 1 2
    python -m bench mc dream --limit 2000 --seeds 42 1 2

The recipe is run_swag.py as users adapt it to their data: each choice as (context, question + " " + choice)
tokenized with `truncation=True` at the tokenizer's limit, `DataCollatorForMultipleChoice` (dynamic padding),
`Trainer` with learning rate 5e-5 and its other defaults (batch 8, no warm-up, linear decay), the same epochs
as tunelab. tunelab gets the training file and nothing else (`tunelab train --data train.jsonl`: its
defaults, a tenth split off by context to pick best/). Both read the same rows (with `--limit`, the same
seeded sample) and both are scored by one function here, accuracy on every row of `dev.jsonl`, from their
predicted choices (tunelab's from `tunelab predict best/ --input dev.jsonl`). DREAM's train file has one row
whose wrong choices are the same text twice: tunelab refuses such a row, so both sides read the file without
it (said in the result). Each side runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import add_child_options, ran_as_child, commit_label, matmul_peaks, run_variants, write_result  # noqa: E402
from tables import print_table  # noqa: E402

RECIPE = dict(learning_rate=5e-5, batch_size=8)
TUNELAB_EPOCHS = 3  # tunelab's default, which the recipe runs too unless --epochs sets both
DATA = {"hellaswag": ("context", None, "endings"), "dream": ("dialogue", "question", "choices")}


def read(path: str, dataset: str) -> list[dict]:
    """Rows as {id, context, question, choices, label}; rows with the same choice twice left out."""
    context, question, choices = DATA[dataset]
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append({"id": r["id"], "context": r[context], "question": r[question] if question else "",
                     "choices": r[choices], "label": int(r["label"])})
    return [r for r in rows if len(set(r["choices"])) == len(r["choices"])]


def accuracy(chosen: dict[str, int], rows: list[dict]) -> float:
    return sum(chosen[r["id"]] == r["label"] for r in rows) / len(rows)


def run_recipe(args) -> dict:
    """run_swag.py's preprocess_function and DataCollatorForMultipleChoice around Trainer."""
    import datasets
    import numpy as np
    from transformers import AutoModelForMultipleChoice, AutoTokenizer, DataCollatorForMultipleChoice, Trainer, \
        TrainingArguments

    from tunelab.modeling import bundled_model_dir

    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMultipleChoice.from_pretrained(path)
    max_seq_length = min(tokenizer.model_max_length, 1024)

    def preprocess_function(examples):
        counts = [len(c) for c in examples["choices"]]
        first_sentences = [[context] * n for context, n in zip(examples["context"], counts)]
        second_sentences = [[f"{header} {choice}" for choice in choices]
                            for header, choices in zip(examples["question"], examples["choices"])]
        first_sentences = sum(first_sentences, [])
        second_sentences = sum(second_sentences, [])
        tokenized = tokenizer(first_sentences, second_sentences, truncation=True, max_length=max_seq_length)
        out, at = {k: [] for k in tokenized}, 0
        for n in counts:
            for k, v in tokenized.items():
                out[k].append(v[at:at + n])
            at += n
        return out

    train_rows, dev_rows = json.loads(Path(args.rows).read_text()), read(args.dev, args.dataset)
    train = datasets.Dataset.from_list(train_rows)
    train_features = train.map(preprocess_function, batched=True, remove_columns=[c for c in train.column_names
                                                                                  if c != "label"])
    epochs = args.epochs or TUNELAB_EPOCHS
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=RECIPE["batch_size"], per_device_eval_batch_size=16,
        learning_rate=RECIPE["learning_rate"], num_train_epochs=epochs, seed=args.seed, eval_strategy="no",
        save_strategy="no", report_to="none", logging_steps=50, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_features,
                      data_collator=DataCollatorForMultipleChoice(tokenizer), processing_class=tokenizer)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    dev = datasets.Dataset.from_list(dev_rows)
    dev_features = dev.map(preprocess_function, batched=True, remove_columns=[c for c in dev.column_names
                                                                              if c != "label"])
    logits = trainer.predict(dev_features).predictions
    chosen = {r["id"]: int(np.argmax(row)) for r, row in zip(dev_rows, logits)}
    return {"variant": "Trainer + run_swag.py", "computed": "fp32", "seed": args.seed, "rows": len(train_rows),
            "epochs": epochs, "train_s": seconds, "rows_per_s": len(train_rows) * epochs / seconds,
            "reported_rows_per_s": output.metrics.get("train_samples_per_second"),
            "accuracy": accuracy(chosen, dev_rows)}


def run_tunelab(args) -> dict:
    import yaml

    run = Path(tempfile.mkdtemp()) / "run"
    data = Path(tempfile.mkdtemp()) / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in json.loads(Path(args.rows).read_text())))
    command = [sys.executable, "-m", "tunelab.cli"]
    started = time.perf_counter()
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []  # the recipe's, where told; else tunelab's own
    subprocess.run(command + ["train", "--data", str(data), "--output", str(run), "--seed", str(args.seed),
                              "--no-progress", *epochs, *args.tunelab_options], check=True, capture_output=True)
    wall = time.perf_counter() - started
    summary = json.loads((run / "summary.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    dev_rows = read(args.dev, args.dataset)
    dev = Path(tempfile.mkdtemp()) / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in dev_rows))
    scored = {name: accuracy(predicted_choices(command, run / name, dev, dev_rows), dev_rows)
              for name in ("best", "last")}
    rows = config["resolved"]["train_rows"]
    options = " ".join(args.tunelab_options)
    return {"variant": f"tunelab train --data TRAIN {options or '(its defaults)'}",
            "computed": config["resolved"]["precision"], "seed": args.seed, "rows": rows,
            "epochs": config["epochs"], "train_s": summary["rows_trained"] / summary["samples_per_second"],
            "rows_per_s": summary["samples_per_second"], "reported_rows_per_s": summary["samples_per_second"],
            "wall_s": wall, "accuracy": scored["best"], "accuracy_last": scored["last"],
            "best_step": summary["best_step"], "steps": summary["steps"], "validation_rows": config["resolved"].get(
                "validation_rows"), "validation_accuracy": summary["best_metrics"].get("accuracy")}


def predicted_choices(command: list[str], checkpoint: Path, dev: Path, dev_rows: list[dict]) -> dict[str, int]:
    """`tunelab predict CHECKPOINT --input dev.jsonl`: each dev row's chosen index."""
    done = subprocess.run(command + ["predict", str(checkpoint), "--input", str(dev), "-f", "jsonl", "--no-progress"],
                          check=True, capture_output=True, text=True)
    return {r["id"]: json.loads(line)["index"] for r, line in zip(dev_rows, done.stdout.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATA))
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="training rows: a seeded sample, the same on both sides")
    parser.add_argument("--epochs", type=int, default=None,
                        help="both sides' epochs (default: tunelab's default, 3, which the recipe then runs too)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--sides", nargs="+", choices=("recipe", "tunelab"), default=["recipe", "tunelab"],
                        help="which sides run (tunelab alone: to compare candidate options over seeds)")
    parser.add_argument("--tunelab-options", type=shlex.split, default=[],
                        help="options given to `tunelab train`, as one string (candidate defaults): "
                             "--tunelab-options='--learning-rate 5e-5'")
    parser.add_argument("--seed", type=int, default=42, help="(set by the parent)")
    parser.add_argument("--rows", help="(set by the parent: the training rows as JSON)")
    parser.add_argument("--dev", help="(set by the parent)")
    add_child_options(parser, ("recipe", "tunelab"), "mc")
    args = parser.parse_args()
    if ran_as_child(args, {"recipe": run_recipe, "tunelab": run_tunelab}):
        return
    import torch

    folder = Path(args.data) / args.dataset
    train = read(str(folder / "train.jsonl"), args.dataset)
    dropped = sum(1 for _ in (folder / "train.jsonl").open()) - len(train)
    if args.limit:
        train = random.Random(0).sample(train, args.limit)
    rows_file = Path(tempfile.mkdtemp()) / "rows.json"
    rows_file.write_text(json.dumps(train))
    peaks = matmul_peaks()
    peak = peaks["fp32"]
    rows = []
    for number, seed in enumerate(args.seeds, 1):
        passed = [args.dataset, "--rows", str(rows_file), "--dev", str(folder / "dev.jsonl"), "--seed", str(seed)]
        passed += ["--epochs", str(args.epochs)] if args.epochs else []
        passed += [f"--tunelab-options={shlex.join(args.tunelab_options)}"] if args.tunelab_options else []
        rows += run_variants(__file__, passed, tuple(args.sides), "rows_per_s", peaks)
        # after every seed: a run stopped later (an hour a seed on long data) keeps the seeds it finished
        written = write_result("mc", rows, args.out, peaks_gflops=peaks, dataset=args.dataset, dropped_rows=dropped,
                               seeds_finished=args.seeds[:number], seeds_planned=args.seeds)
    print(f"commit {commit_label()}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"{len(train)} training rows of {folder} ({dropped} with a repeated choice left out), every dev row scored")
    print_table("mc", rows)
    print("results:", written)


if __name__ == "__main__":
    main()
