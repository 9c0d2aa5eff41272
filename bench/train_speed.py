"""Training speed: tunelab against transformers.Trainer, side by side, same model/data/hyperparameters.

    python bench/train_speed.py --data ../shared/data/sst2 --limit 8000 --epochs 1

Each variant runs in its own process (for its own peak RSS). The baseline is
what users write today: Trainer with DataCollatorWithPadding and its defaults
(random batches). Both use the bundled MiniLM, the same 8,000 rows, AdamW with
lr 1e-4, batch 32, 10% linear warm-up, weight decay 0.01, and torch's threads.
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

from common import add_precision_options, child_variants, forward_flops, matmul_peaks, peak_rss_mb, \
    precision_benchmark, recipe_bf16, run_child, run_precision, tunelab_precision, write_result  # noqa: E402
from tables import print_table  # noqa: E402

HYPER = dict(learning_rate=1e-4, batch_size=32, warmup_ratio=0.1, weight_decay=0.01, max_length=128)


def load(args):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data

    return load_task_data(DataSpec(str(Path(args.data) / "train.tsv"), validation=str(Path(args.data) / "dev.tsv"),
                                   limit=args.limit, seed=args.seed, text_column=args.text_column,
                                   text_pair_column=args.text_pair_column))


def run_trainer(args) -> dict:
    """The baseline: Trainer + DataCollatorWithPadding, defaults otherwise."""
    import datasets
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from tunelab.modeling import bundled_model_dir

    data = load(args)
    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(data.label_names))

    def tokenize(batch):
        return tokenizer(batch["text"], batch.get("text_pair"), truncation=True, max_length=HYPER["max_length"])

    columns = [c for c in data.train.columns if c != "label"]
    train = datasets.Dataset.from_pandas(data.train).map(tokenize, batched=True, remove_columns=columns)
    dev = datasets.Dataset.from_pandas(data.validation).map(tokenize, batched=True, remove_columns=columns)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=HYPER["batch_size"],
        per_device_eval_batch_size=128, learning_rate=HYPER["learning_rate"], num_train_epochs=args.epochs,
        warmup_steps=HYPER["warmup_ratio"], weight_decay=HYPER["weight_decay"], seed=args.seed,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True,
        disable_tqdm=True, bf16=recipe_bf16(args),
    )

    def metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    trainer = Trainer(model=model, args=training_args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=metrics)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    accuracy = trainer.evaluate(dev)["eval_accuracy"]
    lengths = [len(x) for x in train["input_ids"]]
    return summarize("Trainer + DataCollatorWithPadding", model.config, lengths, args.epochs, seconds, accuracy,
                     output.metrics.get("train_samples_per_second"))


def run_tunelab(args) -> dict:
    from tunelab.train import TrainConfig, train

    data = load(args)
    config = TrainConfig(data="bench", output=tempfile.mkdtemp() + "/run", epochs=args.epochs, seed=args.seed,
                         progress=False, eval_batch_size=128, precision=tunelab_precision(args), **HYPER)
    result = train(config, data=data)
    from tunelab.tasks.texts import encode_frame
    from tunelab.modeling import bundled_model_dir, load_tokenizer
    from transformers import AutoConfig

    tokenizer = load_tokenizer(str(bundled_model_dir()))
    lengths = encode_frame(tokenizer, data.train, HYPER["max_length"]).lengths
    seconds = len(data.train) * args.epochs / result.samples_per_second
    row = summarize("tunelab train", AutoConfig.from_pretrained(bundled_model_dir()), lengths, args.epochs,
                    seconds, result.best_metrics["accuracy"], result.samples_per_second)
    return {**row, "computed": run_precision(result.run_dir)}


def summarize(name, config, lengths, epochs, seconds, accuracy, reported_speed) -> dict:
    flops = 3 * forward_flops(config, lengths) * epochs  # forward + backward = 3x forward
    return {"variant": name, "rows": len(lengths) * epochs, "train_s": seconds,
            "samples_per_s": len(lengths) * epochs / seconds, "reported_samples_per_s": reported_speed,
            "accuracy": accuracy, "model_gflops": flops / seconds / 1e9, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--text-pair-column", default=None)
    parser.add_argument("--limit", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variant", choices=["trainer", "tunelab"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="the result file (default bench/results/NAME.json)")
    add_precision_options(parser)
    args = parser.parse_args()

    if args.variant:
        result = run_trainer(args) if args.variant == "trainer" else run_tunelab(args)
        print(json.dumps(result))
        return

    import torch

    passed = ["--data", args.data, "--limit", str(args.limit), "--epochs", str(args.epochs), "--text-column",
              args.text_column]
    if args.text_pair_column:
        passed += ["--text-pair-column", args.text_pair_column]
    if args.precisions:
        precision_benchmark(child_variants(__file__, passed, "trainer"), args,
                            "samples_per_s", "accuracy", "training samples/s",
                            "classification", data=args.data, limit=args.limit, epochs=args.epochs)
        return
    passed += ["--seed", str(args.seed)]
    peaks = matmul_peaks()
    peak = peaks["fp32"]
    rows = [run_child(__file__, passed + ["--variant", v]) for v in ("trainer", "tunelab")]
    for row in rows:
        row["mfu"] = row["model_gflops"] / peaks[row.get("computed", "fp32")]
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    print(f"threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, {args.limit} rows x "
          f"{args.epochs} epoch(s) from {args.data}")
    print_table("train", rows)
    print("results:", write_result("train", rows, args.out, peak_gflops=peak))


if __name__ == "__main__":
    main()
