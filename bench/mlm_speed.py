"""Masked-LM training: tunelab against the transformers `run_mlm.py` recipe, side by side (issue 31).

    python -m bench mlm --reviews 1500 --precisions --seeds 1

Both sides train the bundled MiniLM's masked-LM head on the same IMDb reviews (a seeded sample of
`../shared/data/imdb/train.tsv`), one epoch, batch 16, blocks of 128 tokens; each runs in its own process:
- the recipe, as `run_mlm.py` writes it: the reviews tokenized, concatenated and cut into blocks
  (`group_texts`, the remainder dropped), `DataCollatorForLanguageModeling(mlm_probability=0.15)`, `Trainer`
  at its defaults (learning rate 5e-5, linear decay, fused AdamW) otherwise;
- tunelab: `train(TrainConfig(task="masked-lm", block_size=128, batch_size=16))`, its defaults otherwise.
Both are scored by one function: the masked-LM perplexity of the trained model, in fp32, on blocks of other
reviews with 15% of their tokens masked by a fixed generator (the same positions for both). Speed is training
tokens per second: blocks x block size over the training time each reports. Model FLOPs count the encoder
(`forward_flops`) and the vocabulary projection at the masked positions only for tunelab (it computes no other),
at every position for the recipe (it computes them all): MFU counts what each side computes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import add_precision_options, child_variants, forward_flops, peak_rss_mb, precision_benchmark, \
    recipe_bf16, run_precision, tunelab_precision  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.tsv"
BLOCK, BATCH, MASKED = 128, 16, 0.15


def reviews(count: int, seed: int, skip: int = 0) -> list[str]:
    """A seeded sample of the reviews' text (the same sample for both sides; `skip` for held-out ones)."""
    import random

    from tunelab.data import read_file

    texts = read_file(IMDB)["text"].tolist()
    random.Random(seed).shuffle(texts)
    return texts[skip:skip + count]


def group_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """run_mlm.py's tokenize + group_texts: every text's ids laid end to end, cut into BLOCK-token blocks, the
    remainder dropped."""
    stream = [i for ids in tokenizer(texts)["input_ids"] for i in ids]
    return [stream[i:i + BLOCK] for i in range(0, len(stream) - BLOCK + 1, BLOCK)]


def perplexity(model, tokenizer, texts: list[str]) -> float:
    """Masked-LM perplexity over `texts`' blocks with the same 15% of positions masked for every model."""
    import torch

    blocks = torch.tensor(group_texts(tokenizer, texts))
    special = torch.tensor(tokenizer.all_special_ids)
    chosen = torch.rand(blocks.shape, generator=torch.Generator().manual_seed(0)) < MASKED
    chosen &= ~torch.isin(blocks, special)
    inputs = blocks.masked_fill(chosen, tokenizer.mask_token_id)
    labels = blocks.masked_fill(~chosen, -100)
    model.eval().float()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(blocks), 32):
            logits = model(input_ids=inputs[start:start + 32]).logits
            target = labels[start:start + 32]
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100,
                                                       reduction="sum").item()
            count += int((target != -100).sum())
    return math.exp(total / count)


def held_out(args) -> list[str]:
    return reviews(args.eval_reviews, args.data_seed, skip=args.reviews)


def encoder_flops(config, blocks: int, projected: float) -> float:
    """Training FLOPs (3x forward) of `blocks` full blocks: the encoder, plus the vocabulary projection at
    `projected` positions (transform and decoder)."""
    head = 2 * (config.hidden_size ** 2 + config.hidden_size * config.vocab_size)
    return 3 * (forward_flops(config, [BLOCK] * blocks) + head * projected)


def run_recipe(args) -> dict:
    import datasets
    from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from tunelab.modeling import bundled_model_dir

    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path)
    blocks = group_texts(tokenizer, reviews(args.reviews, args.data_seed))
    train = datasets.Dataset.from_dict({"input_ids": blocks})
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1, seed=args.seed,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True,
        disable_tqdm=True, bf16=recipe_bf16(args))
    trainer = Trainer(model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASKED))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    flops = encoder_flops(model.config, len(blocks), len(blocks) * BLOCK)
    return {"variant": "Trainer + DataCollatorForLanguageModeling (run_mlm.py)", "blocks": len(blocks),
            "train_s": seconds, "tokens_per_s": len(blocks) * BLOCK / seconds, "model_gflops": flops / seconds / 1e9,
            "perplexity": perplexity(model, tokenizer, held_out(args)), "peak_rss_mb": peak_rss_mb()}


def run_tunelab(args) -> dict:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tunelab.train import TrainConfig, train

    folder = Path(tempfile.mkdtemp())
    data = folder / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in reviews(args.reviews, args.data_seed)),
                    encoding="utf-8")
    result = train(TrainConfig(data=str(data), task="masked-lm", block_size=BLOCK, batch_size=BATCH, epochs=1,
                               seed=args.seed, progress=False, output=str(folder / "run"),
                               precision=tunelab_precision(args)))
    seconds = result.rows_trained / result.samples_per_second
    model = AutoModelForMaskedLM.from_pretrained(result.best_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.best_dir)
    flops = encoder_flops(model.config, result.rows_trained, result.rows_trained * BLOCK * MASKED)
    return {"variant": "tunelab train --task masked-lm", "blocks": result.rows_trained, "train_s": seconds,
            "tokens_per_s": result.rows_trained * BLOCK / seconds, "model_gflops": flops / seconds / 1e9,
            "perplexity": perplexity(model, tokenizer, held_out(args)), "peak_rss_mb": peak_rss_mb(),
            "computed": run_precision(result.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=1500, help="training reviews")
    parser.add_argument("--eval-reviews", type=int, default=200, help="held-out reviews scored by both")
    parser.add_argument("--data-seed", type=int, default=42, help="which reviews (the same for every seed)")
    parser.add_argument("--seed", type=int, default=42, help="the training seed")
    parser.add_argument("--variant", choices=["recipe", "tunelab"], help="(set by the parent)")
    parser.add_argument("--json", action="store_true", help="(set by the parent)")
    parser.add_argument("--out", help="the result file (default bench/results/precision-mlm.json)")
    add_precision_options(parser)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps((run_recipe if args.variant == "recipe" else run_tunelab)(args)))
        return
    if not args.precisions:
        raise SystemExit("python -m bench mlm runs its four precision variants: add --precisions")
    passed = ["--reviews", str(args.reviews), "--eval-reviews", str(args.eval_reviews), "--data-seed",
              str(args.data_seed)]
    precision_benchmark(child_variants(__file__, passed, "recipe"), args,
                            "tokens_per_s", "perplexity", "training tokens/s", "mlm",
                            reviews=args.reviews, block_size=BLOCK, batch_size=BATCH)


if __name__ == "__main__":
    main()
