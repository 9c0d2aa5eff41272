"""Token classification (CoNLL-2003): tunelab against the transformers `run_ner.py` recipe, side by side.

    python bench/ner_speed.py --data ../shared/data/conll2003 --epochs 1

The baseline is what users write today, as in transformers' examples/pytorch/token-classification/run_ner.py:
the sentences tokenized with `is_split_into_words`, the first piece of each word labeled (-100 elsewhere),
`DataCollatorForTokenClassification`, `Trainer` with its defaults (random batches, fused AdamW, clipping at
1.0). Both read the same sentences through tunelab's reader (IOB1 converted to IOB2, as the hub's conll2003
is), train the bundled MiniLM with the same learning rate, batch size, epochs, warm-up and weight decay, and
are scored the same way: word-level IOB2 tags, entity F1 with seqeval in strict mode (tunelab's score_tags).
Each variant runs in its own process (for its own peak RSS).
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
from tables import print_table  # noqa: E402

HYPER = dict(learning_rate=1e-4, batch_size=32, warmup_ratio=0.1, weight_decay=0.01)


def load(args):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data

    return load_task_data(DataSpec(str(Path(args.data) / "train.txt"), validation=str(Path(args.data) / "valid.txt"),
                                   limit=args.limit, seed=args.seed))


def run_trainer(args) -> dict:
    """The baseline: run_ner.py's alignment and collator, Trainer's defaults otherwise."""
    import datasets
    import numpy as np
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    from tunelab.modeling import bundled_model_dir
    from tunelab.tasks.token_classification import score_tags

    data = load(args)
    names = data.label_names
    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def tokenize_and_align(batch):  # run_ner.py's tokenize_and_align_labels, label_all_tokens=False
        encoded = tokenizer(batch["tokens"], truncation=True, is_split_into_words=True)
        labels = []
        for i, tags in enumerate(batch["tags"]):
            previous, row = None, []
            for word in encoded.word_ids(batch_index=i):
                row.append(-100 if word is None or word == previous else tags[word])
                previous = word
            labels.append(row)
        encoded["labels"] = labels
        return encoded

    train = datasets.Dataset.from_pandas(data.train[["tokens", "tags"]]).map(
        tokenize_and_align, batched=True, remove_columns=["tokens", "tags"])
    dev = datasets.Dataset.from_pandas(data.validation[["tokens", "tags"]]).map(
        tokenize_and_align, batched=True, remove_columns=["tokens", "tags"])
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=HYPER["batch_size"],
        per_device_eval_batch_size=128, learning_rate=HYPER["learning_rate"], num_train_epochs=args.epochs,
        warmup_steps=HYPER["warmup_ratio"], weight_decay=HYPER["weight_decay"], seed=args.seed,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True,
        disable_tqdm=True, bf16=recipe_bf16(args),
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train,
                      data_collator=DataCollatorForTokenClassification(tokenizer), processing_class=tokenizer)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    predictions = trainer.predict(dev)
    guess = []
    for logits, labels in zip(predictions.predictions, predictions.label_ids):
        keep = labels != -100
        guess.append([names[i] for i in np.argmax(logits, -1)[keep]])
    truth = [[names[t] for t in tags] for tags in data.validation["tags"]]
    # Truncation at 512 pieces cuts no CoNLL sentence, so every word has a prediction.
    assert [len(g) for g in guess] == [len(t) for t in truth]
    metrics = score_tags(truth, guess).metrics
    lengths = [len(x) for x in train["input_ids"]]
    return training_row("Trainer + DataCollatorForTokenClassification (run_ner.py)", model.config, lengths,
                     args.epochs, seconds, metrics, output.metrics.get("train_samples_per_second"))


def run_tunelab(args) -> dict:
    from transformers import AutoConfig

    from tunelab.modeling import bundled_model_dir
    from tunelab.train import TrainConfig, train

    data = load(args)
    config = TrainConfig(data=str(Path(args.data) / "train.txt"), output=tempfile.mkdtemp() + "/run",
                         epochs=args.epochs, seed=args.seed, progress=False, eval_batch_size=128,
                         precision=tunelab_precision(args), **HYPER)
    result = train(config, data=data)
    import yaml

    batching = yaml.safe_load((result.run_dir / "config.yaml").read_text())["resolved"]["batching"]
    lengths = [len(x) for x in load_lengths(data)]
    seconds = len(data.train) * args.epochs / result.samples_per_second
    metrics = {k: result.best_metrics[k] for k in ("f1", "precision", "recall", "accuracy")}
    row = training_row(f"tunelab train ({batching} batches)", AutoConfig.from_pretrained(bundled_model_dir()),
                       lengths, args.epochs, seconds, metrics, result.samples_per_second)
    return {**row, "computed": run_precision(result.run_dir)}


def load_lengths(data):
    from tunelab.modeling import bundled_model_dir, load_tokenizer
    from tunelab.tasks.token_classification import encode_words

    tokenizer = load_tokenizer(str(bundled_model_dir()))
    return encode_words(tokenizer, data.train["tokens"].tolist(), 128, 32, None, True).features["input_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_side_by_side_options(parser, "../shared/data/conll2003")
    add_precision_options(parser)
    args = parser.parse_args()

    if args.variant:
        result = run_trainer(args) if args.variant == "trainer" else run_tunelab(args)
        print(json.dumps(result))
        return

    import torch

    if args.precisions:
        passed = ["--data", args.data, "--epochs", str(args.epochs)] + (["--limit", str(args.limit)] if args.limit else [])
        precision_benchmark(child_variants(__file__, passed, "trainer"), args,
                            "samples_per_s", "f1", "training sentences/s", "ner",
                            data=args.data, limit=args.limit, epochs=args.epochs)
        return
    rows, peak = side_by_side(__file__, args)
    commit = commit_label()
    print(f"commit {commit}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"{rows[0]['rows'] // args.epochs} sentences x {args.epochs} epoch(s) from {args.data}")
    print_table("ner", rows)
    print("results:", write_result("ner", rows, args.out, peak_gflops=peak))


if __name__ == "__main__":
    main()
