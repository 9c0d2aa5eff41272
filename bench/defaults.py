"""Defaults that win untuned: `tunelab train --data X` against the seeds' Trainer recipe, dataset by dataset.

    python bench/defaults.py --model minilm --datasets sst2 mrpc rotten-tomatoes stsb goemotions --limit 2000
    python bench/defaults.py --model models/all-mpnet-base-v2 ...    # bash bench/get_mpnet.sh fetches it

For each dataset both variants read the same rows through tunelab's reader (a seeded sample of --limit
training rows; the dataset's validation rows) and train the same model for the same number of epochs (3,
the default of both):
- the Trainer recipe users write today: `AutoModelForSequenceClassification` with the task's head, learning rate
  5e-5, weight decay 0.01, batch 32, `DataCollatorWithPadding`, texts cut at 128 pieces, scored once at the end;
- `tunelab train` with no option but the data's columns (so every default applies), scored at its last
  evaluation (the figure comparable to the Trainer's; the checkpoint it keeps, best/, is also shown).
GoEmotions (multi-label) is scored on half of its dev file, the other half being the validation rows (tunelab
tunes its thresholds there; see HELD_OUT).
Metrics come from the same functions (tunelab.metrics, multi-label F1 at threshold 0.5 for both). Wall time
is the whole train-and-score call in a fresh process. Each variant runs in its own child process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import commit_label, run_child, write_result  # noqa: E402
from tables import print_table  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# name: (DataSpec options, the metric compared)
DATASETS: dict[str, tuple[dict, str]] = {
    "sst2": ({"source": f"{SHARED}/sst2/train.tsv", "validation": f"{SHARED}/sst2/dev.tsv"}, "accuracy"),
    "mrpc": ({"source": f"{SHARED}/mrpc/train.tsv", "validation": f"{SHARED}/mrpc/dev.tsv",
              "text_column": "text_a", "text_pair_column": "text_b"}, "accuracy"),
    "rotten-tomatoes": ({"source": "rotten-tomatoes"}, "accuracy"),
    "stsb": ({"source": "stsb"}, "pearson"),
    "goemotions": ({"source": f"{SHARED}/goemotions/train.tsv", "validation": f"{SHARED}/goemotions/dev.tsv",
                    "label_column": "labels"}, "macro_f1"),
    "imdb": ({"source": f"{SHARED}/imdb/train.tsv"}, "accuracy"),
}
# Multi-label runs tune their decision thresholds (and pick best/) on the validation rows, so scoring them there
# would flatter tunelab: their validation file is cut in two, seeded; both variants see the first half as
# validation and are scored on the second, each with its own decision rule (the Trainer recipe at 0.5, tunelab's
# best/ with the thresholds it stored, as `tunelab predict` uses them).
HELD_OUT = {"goemotions"}
TRAINER = {"learning_rate": 5e-5, "weight_decay": 0.01, "batch_size": 32, "max_length": 128, "epochs": 3}


def options(args) -> tuple[dict, str | None]:
    """The dataset's DataSpec options, and the file both variants are scored on when it is not the validation
    file (HELD_OUT datasets: the validation file's two halves, written to a temporary folder)."""
    spec, _ = DATASETS[args.dataset]
    if args.dataset not in HELD_OUT:
        return dict(spec), None
    import random

    header, *lines = Path(spec["validation"]).read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(args.seed).shuffle(lines)
    folder = Path(tempfile.mkdtemp())
    half = len(lines) // 2
    for name, part in (("tune.tsv", lines[:half]), ("score.tsv", lines[half:])):
        (folder / name).write_text(header + "".join(part), encoding="utf-8")
    return {**spec, "validation": str(folder / "tune.tsv")}, str(folder / "score.tsv")


def load(spec: dict, args, validation: str | None = None):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data

    return load_task_data(DataSpec(**{**spec, **({"validation": validation} if validation else {})},
                                   limit=args.limit, seed=args.seed))


def resolve_model(name: str) -> str:
    from tunelab.modeling import resolve_model as resolve

    return resolve(name)


def run_trainer(args) -> dict:
    import datasets
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from tunelab.metrics import compute_metrics
    from tunelab.tasks.multi_label import set_metrics, sigmoid

    started = time.perf_counter()
    spec, scored_on = options(args)
    data = load(spec, args, scored_on)
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if data.task.name == "regression":
        head = {"num_labels": 1}
    else:
        names = data.label_names
        head = {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        if data.task.name == "multi-label":
            head["problem_type"] = "multi_label_classification"
    model = AutoModelForSequenceClassification.from_pretrained(path, **head)
    pairs = "text_pair" in data.train

    def tokenize(batch):
        encoded = tokenizer(batch["text"], batch["text_pair"] if pairs else None, truncation=True,
                            max_length=TRAINER["max_length"])
        encoded["labels"] = ([[float(v) for v in row] for row in batch["label"]] if data.task.name == "multi-label"
                             else batch["label"])
        return encoded

    columns = ["text", "label"] + (["text_pair"] if pairs else [])
    train, dev = (datasets.Dataset.from_pandas(frame[columns].reset_index(drop=True)).map(
        tokenize, batched=True, remove_columns=columns) for frame in (data.train, data.validation))
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), learning_rate=TRAINER["learning_rate"], weight_decay=TRAINER["weight_decay"],
        per_device_train_batch_size=TRAINER["batch_size"], per_device_eval_batch_size=128,
        num_train_epochs=TRAINER["epochs"], seed=args.seed, eval_strategy="no", save_strategy="no", report_to="none",
        logging_steps=50, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.train()
    predictions = trainer.predict(dev).predictions
    if data.task.name == "multi-label":
        metrics = set_metrics(sigmoid(predictions) >= 0.5, np.array(data.validation["label"].tolist(), dtype=int))
    else:
        metrics = compute_metrics(predictions, data.validation["label"].to_numpy(), head["num_labels"])
    return {"variant": "Trainer recipe", "wall_s": time.perf_counter() - started, "last": metrics,
            "train_rows": len(data.train), "validation_rows": len(data.validation), "task": data.task.name}


def run_tunelab(args) -> dict:
    from tunelab.train import TrainConfig, train

    started = time.perf_counter()
    spec, scored_on = options(args)
    config = TrainConfig(**{("data" if k == "source" else k): v for k, v in spec.items()}, model=args.model,
                         limit=args.limit, seed=args.seed, progress=False, output=tempfile.mkdtemp() + "/run",
                         **overrides(args.set))
    result = train(config)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if "eval_loss" in r]
    last = {k.removeprefix("eval_"): v for k, v in (evaluations[-1] if evaluations else {}).items()}
    if scored_on:
        last = score_held_out(result.run_dir / "best", load(spec, args, scored_on))
    return {"variant": "tunelab train (defaults)", "wall_s": time.perf_counter() - started,
            "last": last, "best": result.best_metrics, "config": _resolved(result.run_dir)}


def overrides(pairs: list[str]) -> dict:
    """`--set name=value` pairs as TrainConfig fields (values read as YAML: false, [1, 2]; numbers such as 5e-5,
    which YAML 1.1 reads as text, as numbers): to measure a candidate default against the recipe first."""
    import yaml

    out = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        value = yaml.safe_load(text)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out[name.replace("-", "_")] = value
    return out


def score_held_out(checkpoint: Path, data) -> dict:
    """A multi-label checkpoint's set metrics on the held-out rows, at the thresholds it stored."""
    import numpy as np

    from tunelab.predict import load as load_predictor
    from tunelab.tasks.multi_label import set_metrics, sigmoid

    predictor = load_predictor(checkpoint)
    frame = data.validation
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
    probabilities = sigmoid(predictor.logits(frame["text"].astype(str).tolist(), pairs))
    predicted = probabilities >= predictor.task.thresholds(predictor.label_names, predictor.model.config,
                                                           predictor.options)
    return set_metrics(predicted, np.array(frame["label"].tolist(), dtype=int))


def _resolved(run_dir: Path) -> dict:
    import yaml

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())["resolved"]
    return {k: resolved.get(k) for k in ("task", "learning_rate", "head_learning_rate", "total_steps", "batching",
                                         "long_text")}


def recorded_trainer(args) -> dict[str, dict]:
    """The recipe's side of each dataset from an earlier result (`--trainer-from`), as a trainer child reports it.

    Refused unless that result trained the same model on the same rows (--limit, --seed) and has every dataset."""
    path = Path(args.trainer_from)
    record = json.loads(path.read_text(encoding="utf-8"))
    if "trainer" in args.variants:
        raise SystemExit("--trainer-from replaces the recipe's runs: add --variants tunelab")
    found = {k: record.get(k) for k in ("model", "limit", "seed")}
    if found != {"model": args.model, "limit": args.limit, "seed": args.seed}:
        raise SystemExit(f"--trainer-from {path}: it ran {found}, this run {args.model}, {args.limit} rows, seed "
                         f"{args.seed}; the recipe's figures must come from the same rows")
    rows = {row["dataset"]: row for row in record["rows"] if row.get("trainer") is not None}
    missing = [name for name in args.datasets if name not in rows]
    if missing:
        raise SystemExit(f"--trainer-from {path} has no recipe figures for {', '.join(missing)}")
    recorded = {}
    for name in args.datasets:
        row = rows[name]
        train_rows, _, validation_rows = row["rows"].partition(" / ")
        recorded[name] = {"task": row["task"], "train_rows": int(train_rows), "validation_rows": int(validation_rows),
                          "last": {row["metric"]: row["trainer"]}, "wall_s": row["trainer_s"],
                          "from": f"{path.name} (commit {record.get('commit', '?')}, {record.get('date', '?')})"}
    return recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sst2", "mrpc", "rotten-tomatoes", "stsb", "goemotions"],
                        choices=list(DATASETS))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--limit", type=int, default=2000, help="training rows per dataset")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a TrainConfig field for the tunelab side (a candidate default), repeatable")
    parser.add_argument("--variants", nargs="+", default=["trainer", "tunelab"], choices=["trainer", "tunelab"],
                        help="which sides to run (tunelab alone to compare candidate defaults)")
    parser.add_argument("--trainer-from", metavar="FILE",
                        help="take the recipe's figures from this earlier result of the same model, rows and seed "
                             "instead of training it again (the recipe does not change with tunelab's defaults)")
    parser.add_argument("--dataset", help="(set by the parent)")
    parser.add_argument("--variant", choices=["trainer", "tunelab"], help="(set by the parent)")
    parser.add_argument("--json", action="store_true", help="(set by the parent)")
    parser.add_argument("--out", help="the result file (default bench/results/NAME.json)")
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_trainer(args) if args.variant == "trainer" else run_tunelab(args)))
        return

    commit = commit_label()
    recorded = recorded_trainer(args) if args.trainer_from else {}
    rows = []
    for name in args.datasets:
        metric = DATASETS[name][1]
        passed = ["--dataset", name, "--model", args.model, "--limit", str(args.limit), "--seed", str(args.seed),
                  *(f"--set={pair}" for pair in args.set)]
        ran = {v: run_child(__file__, passed + ["--variant", v]) for v in args.variants}
        trainer, tunelab = ran.get("trainer") or recorded.get(name, {}), ran.get("tunelab", {})
        row = {"dataset": name, "task": tunelab.get("config", {}).get("task") or trainer.get("task"),
               "rows": f"{trainer['train_rows']} / {trainer['validation_rows']}" if trainer else "",
               "metric": metric, "trainer": trainer.get("last", {}).get(metric),
               "tunelab_last": tunelab.get("last", {}).get(metric), "tunelab_best": tunelab.get("best", {}).get(metric),
               "trainer_s": trainer.get("wall_s"), "tunelab_s": tunelab.get("wall_s"),
               "tunelab_config": tunelab.get("config")}
        if recorded:
            row["trainer_from"] = trainer["from"]
        if trainer and tunelab:
            row["wins"] = "yes" if row["tunelab_last"] > row["trainer"] and row["tunelab_s"] <= row["trainer_s"] else "no"
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\ncommand: python bench/defaults.py {' '.join(sys.argv[1:])}")
    print(f"commit {commit}; model {args.model}; {args.limit} training rows a dataset, seed {args.seed}; Trainer "
          f"recipe: {TRAINER}\n")
    print_table("defaults", rows)
    print("results:", write_result("defaults", rows, args.out, model=args.model, limit=args.limit, seed=args.seed))


if __name__ == "__main__":
    main()
