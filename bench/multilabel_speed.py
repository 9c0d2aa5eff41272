"""Multi-label classification (GoEmotions, 28 labels): tunelab against the transformers `run_classification.py`
multi-label recipe, side by side.

    python bench/multilabel_speed.py --data ../shared/data/goemotions --epochs 1

The baseline is what users write today with transformers' examples/pytorch/text-classification/
run_classification.py for multi-label data: labels as multi-hot float vectors, a
`problem_type="multi_label_classification"` head (sigmoid + BCE), `Trainer` with its defaults (learning rate
5e-5, random batches, no warm-up, no weight decay), a decision threshold of 0.5. It runs twice: as the script
does by default (`pad_to_max_length=True`: every text padded to `max_seq_length` 128, `default_data_collator`),
and with dynamic padding (`DataCollatorWithPadding`, what a user who knows to turn that off gets).
tunelab runs with its defaults. Both read the same rows through tunelab's reader, train the bundled MiniLM for
the same epochs at batch 32 and are scored alike on the dev set (micro and macro F1, subset accuracy); tunelab
also reports its figures at the per-label thresholds it tuned on that dev set. Each variant runs in its own
process (for its own peak RSS). Both trained models are also scored by one function, `ranking_scores` (fp32,
the dev texts as each side's tokenizer reads them): micro-averaged average precision, which needs no threshold
and so shows what a short run learned where F1 at 0.5 is still 0 (one epoch of a few thousand rows); the
precision benchmark (`--precisions`) compares its variants on it.
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

from common import add_precision_options, add_side_by_side_options, child_variants, commit_label, \
    precision_benchmark, recipe_bf16, run_precision, side_by_side, training_row, tunelab_precision, \
    write_result  # noqa: E402
from tables import COLUMNS, print_table  # noqa: E402

BATCH = 32


def load(args):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data

    return load_task_data(DataSpec(str(Path(args.data) / "train.tsv"), validation=str(Path(args.data) / "dev.tsv"),
                                   label_column="labels", limit=args.limit, seed=args.seed))


def ranking_scores(model, tokenizer, texts: list[str], truth) -> dict:
    """Micro- and macro-averaged average precision of `model`'s label probabilities on `texts` (fp32, batches
    of 128): the same function for every variant."""
    import numpy as np
    import torch
    from sklearn.metrics import average_precision_score

    model.eval().float()
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(texts), 128):
            encoded = tokenizer(texts[start:start + 128], truncation=True, max_length=128, padding=True,
                                return_tensors="pt")
            probabilities.append(torch.sigmoid(model(**encoded).logits.float()).numpy())
    scores = np.concatenate(probabilities)
    present = truth.sum(0) > 0  # a label absent from the dev set has no average precision
    return {"micro_ap": float(average_precision_score(truth[:, present], scores[:, present], average="micro")),
            "macro_ap": float(average_precision_score(truth[:, present], scores[:, present], average="macro"))}


def run_trainer(args, padded: bool = False) -> dict:
    import datasets
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator)

    from tunelab.modeling import bundled_model_dir
    from tunelab.tasks.multi_label import set_metrics, sigmoid

    data = load(args)
    names = data.label_names
    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), problem_type="multi_label_classification", id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})

    def tokenize(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=128,
                            padding="max_length" if padded else False)
        encoded["labels"] = [[float(v) for v in row] for row in batch["label"]]
        return encoded

    train = datasets.Dataset.from_pandas(data.train[["text", "label"]]).map(tokenize, batched=True,
                                                                           remove_columns=["text", "label"])
    dev = datasets.Dataset.from_pandas(data.validation[["text", "label"]]).map(tokenize, batched=True,
                                                                              remove_columns=["text", "label"])
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, per_device_eval_batch_size=128,
        num_train_epochs=args.epochs, seed=args.seed, eval_strategy="no", save_strategy="no", report_to="none",
        logging_steps=50, use_cpu=True, disable_tqdm=True, bf16=recipe_bf16(args),
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train,
                      data_collator=default_data_collator if padded else DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    predictions = trainer.predict(dev)
    truth = np.array(data.validation["label"].tolist(), dtype=int)
    metrics = set_metrics(sigmoid(predictions.predictions) >= 0.5, truth)
    metrics.update(ranking_scores(model, tokenizer, data.validation["text"].tolist(), truth))
    lengths = [sum(mask) for mask in train["attention_mask"]]  # real pieces: model FLOPs count no padding
    name = "run_classification.py recipe, its default padding to 128" if padded else \
        "run_classification.py recipe, dynamic padding"
    return training_row(name, model.config, lengths, args.epochs,
                     seconds, metrics, output.metrics.get("train_samples_per_second"))


def run_tunelab(args) -> dict:
    import yaml
    from transformers import AutoConfig

    from tunelab.modeling import bundled_model_dir, load_tokenizer
    from tunelab.train import TrainConfig, train

    data = load(args)
    config = TrainConfig(data=str(Path(args.data) / "train.tsv"), label_column="labels",
                         output=tempfile.mkdtemp() + "/run", epochs=args.epochs, seed=args.seed, progress=False,
                         batch_size=BATCH, precision=tunelab_precision(args))
    result = train(config, data=data)
    batching = yaml.safe_load((result.run_dir / "config.yaml").read_text())["resolved"]["batching"]
    tokenizer = load_tokenizer(str(bundled_model_dir()))
    lengths = [len(x) for x in tokenizer(data.train["text"].tolist(), truncation=True, max_length=128)["input_ids"]]
    seconds = len(data.train) * args.epochs / result.samples_per_second
    import numpy as np
    from transformers import AutoModelForSequenceClassification

    truth = np.array(data.validation["label"].tolist(), dtype=int)
    ranking = ranking_scores(AutoModelForSequenceClassification.from_pretrained(result.best_dir),
                             load_tokenizer(str(result.best_dir)), data.validation["text"].tolist(), truth)
    row = training_row(f"tunelab train, defaults ({batching} batches)", AutoConfig.from_pretrained(bundled_model_dir()),
                       lengths, args.epochs, seconds, {**result.best_metrics, **ranking}, result.samples_per_second)
    return {**row, "computed": run_precision(result.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_side_by_side_options(parser, "../shared/data/goemotions")
    add_precision_options(parser)
    args = parser.parse_args()

    if args.variant:
        result = run_tunelab(args) if args.variant == "tunelab" else run_trainer(args, args.variant == "trainer-padded")
        print(json.dumps(result))
        return

    import torch

    if args.precisions:  # the recipe with dynamic padding: the faster of its two forms
        passed = ["--data", args.data, "--epochs", str(args.epochs)] + (["--limit", str(args.limit)] if args.limit else [])
        precision_benchmark(child_variants(__file__, passed, "trainer"), args,
                            "samples_per_s", "micro_ap", "training samples/s",
                            "multilabel", data=args.data, limit=args.limit, epochs=args.epochs)
        return
    rows, peak = side_by_side(__file__, args, ("trainer-padded", "trainer", "tunelab"))
    for row in rows:
        row["speedup_dynamic"] = row["samples_per_s"] / rows[1]["samples_per_s"]
    commit = commit_label()
    print(f"command: python bench/multilabel_speed.py {' '.join(sys.argv[1:])}")
    print(f"commit {commit}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"{rows[0]['rows'] // args.epochs} rows x {args.epochs} epoch(s) from {args.data}")
    columns = COLUMNS["multilabel"]
    for row in rows:
        for key, *_ in columns:
            row.setdefault(key, float("nan"))
    print_table("multilabel", rows)
    print("results:", write_result("multilabel", rows, args.out, peak_gflops=peak))


if __name__ == "__main__":
    main()
