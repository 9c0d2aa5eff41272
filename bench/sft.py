"""Chat fine-tuning with LoRA: `tunelab train --task causal-lm --lora` against TRL's SFTTrainer (issue 16).

    python -m bench sft --rows 2000 --test-rows 500 --epochs 1

The task has a checkable answer: rotten-tomatoes snippets (the built-in corpus, split by movie, so no film
is in two splits) as the question "Is this review positive or negative? Answer with one word." and the
label word as the answer. Both variants fine-tune the bundled SmolLM2-135M-Instruct with the same peft LoRA
configuration (r 16, alpha 32, dropout 0.05, q_proj and v_proj), learning rate 2e-4, the same rows, epochs
and batch size, the loss on the answer only; each runs in its own process:
- TRL: `SFTTrainer` on prompt / completion conversations (its completion-only loss), padded batches, warm-up 10%;
- tunelab: `tunelab train --task causal-lm --lora` on the same conversations as JSONL, defaults otherwise
  (packed batches, an evaluation of the validation loss each epoch, which its speed excludes).
Model-FLOP utilization counts 4 FLOPs per weight per training token (forward, and backward through the
activations: LoRA leaves the weights frozen) over the best fp32 matmul rate. Exact match on the test rows (greedy answer, normalized, against the label word) is measured for the model
before training and for both results by the same function. Tokens/s counts the training rows' tokens (the
chat template applied) times the epochs, over the training time each reports (evaluations excluded).
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

from common import add_precision_options, commit_label, matmul_peaks, peak_rss_mb, precision_benchmark, \
    recipe_bf16, run_child, run_precision, tunelab_precision, write_result  # noqa: E402
from tables import print_table  # noqa: E402

QUESTION = "Is this review positive or negative? Answer with one word.\n\n{text}"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
LEARNING_RATE = 2e-4


def chat_row(text: str, label: str) -> dict:
    return {"messages": [{"role": "user", "content": QUESTION.format(text=text)},
                         {"role": "assistant", "content": label}]}


def write_splits(args, folder: Path, row=chat_row) -> dict[str, str]:
    """train / validation / test JSONL files of `row(text, label)` objects (default: {"messages": [...]}),
    seeded samples of the corpus's splits."""
    from tunelab.data import BUILTINS

    splits = BUILTINS["rotten-tomatoes"].load(args.seed)
    sizes = {"train": args.rows, "validation": args.validation_rows, "test": args.test_rows}
    paths = {}
    for split, size in sizes.items():
        frame = splits[split].sample(n=min(size, len(splits[split])), random_state=args.seed)
        path = folder / f"{split}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for text, label in zip(frame["text"], frame["label"]):
                handle.write(json.dumps(row(text, label)) + "\n")
        paths[split] = str(path)
    return paths


def read_rows(path: str) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in Path(path).read_text(encoding="utf-8").splitlines()]


def train_tokens(model_path: str, path: str) -> int:
    """Tokens of the training conversations as the chat template writes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # transformers 5 returns a BatchEncoding (its len() is its number of keys): count the ids.
    return sum(len(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"])
               for m in read_rows(path))


def exact_match(model, tokenizer, path: str) -> float:
    """Greedy answers to the test questions against their label words (tunelab's normalization)."""
    from tunelab.tasks.causal_lm import ChatWriter, answer

    writer = ChatWriter(tokenizer)
    scores = [answer(model, tokenizer, writer, messages, 512)["exact_match"] for messages in read_rows(path)]
    return sum(scores) / len(scores)


def score_folder(folder: str, test: str) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return exact_match(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), test)


def weight_count(model_path: str) -> int:
    """The weights a token meets in matmuls: every parameter once (a tied embedding is the output layer's
    weight; the input lookup is free). With LoRA a training token costs about 4 FLOPs per weight: the forward
    pass and the backward pass through the activations (frozen weights get no gradient), attention scores
    aside."""
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_path).parameters())


def run_trl(args, paths: dict, model_path: str) -> dict:
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    def as_prompt_completion(path):
        rows = read_rows(path)
        return datasets.Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in rows])

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    config = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
                       num_train_epochs=args.epochs, learning_rate=LEARNING_RATE, lr_scheduler_type="linear",
                       warmup_steps=0.1, weight_decay=0.01, max_length=args.max_length, seed=args.seed,
                       eval_strategy="no", save_strategy="no", report_to="none", logging_steps=20, use_cpu=True,
                       disable_tqdm=True, bf16=recipe_bf16(args), fp16=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=as_prompt_completion(paths["train"]),
                         processing_class=tokenizer, peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    output = trainer.train()
    merged = trainer.model.merge_and_unload()
    return {"variant": "TRL SFTTrainer + peft LoRA", "train_s": output.metrics["train_runtime"],
            "exact_match": exact_match(merged, tokenizer, paths["test"]), "peak_rss_mb": peak_rss_mb()}


def run_tunelab(args, paths: dict, model_path: str) -> dict:
    from tunelab.train import TrainConfig, train

    out = tempfile.mkdtemp() + "/run"
    result = train(TrainConfig(data=paths["train"], validation=paths["validation"], task="causal-lm",
                               model=model_path, lora=True, epochs=args.epochs, batch_size=args.batch_size,
                               max_length=args.max_length, seed=args.seed, progress=False, output=out,
                               precision=tunelab_precision(args)))
    rows = result.rows_trained
    return {"variant": "tunelab train --task causal-lm --lora", "train_s": rows / result.samples_per_second,
            "wall_s": result.train_seconds, "exact_match": score_folder(str(result.best_dir), paths["test"]),
            "validation_loss": result.best_metrics.get("loss"), "peak_rss_mb": peak_rss_mb(),
            "computed": run_precision(result.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=2000, help="training rows")
    parser.add_argument("--validation-rows", type=int, default=200)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variant", choices=["base", "trl", "tunelab"], help="(set by the parent)")
    parser.add_argument("--folder", help="(set by the parent)")
    parser.add_argument("--json", action="store_true", help="(set by the parent)")
    parser.add_argument("--out", help="the result file (default bench/results/sft.json)")
    add_precision_options(parser)
    args = parser.parse_args()

    from tunelab.modeling import resolve_model

    model_path = resolve_model(args.model)
    if args.variant:
        paths = {s: str(Path(args.folder) / f"{s}.jsonl") for s in ("train", "validation", "test")}
        if args.variant == "base":
            print(json.dumps({"exact_match": score_folder(model_path, paths["test"])}))
        else:
            print(json.dumps((run_trl if args.variant == "trl" else run_tunelab)(args, paths, model_path)))
        return

    folder = Path(tempfile.mkdtemp())
    paths = write_splits(args, folder)
    tokens = train_tokens(model_path, paths["train"]) * args.epochs
    passed = [a for a in sys.argv[1:] if a != "--json"] + ["--folder", str(folder)]
    base = run_child(__file__, passed + ["--variant", "base"])
    if args.precisions:
        precision_sft(args, passed, model_path, tokens, base["exact_match"])
        return
    peaks = matmul_peaks()
    peak = peaks["fp32"]
    rows = [run_child(__file__, passed + ["--variant", v]) for v in ("trl", "tunelab")]
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(model_path)
    flops_per_token = 4 * weight_count(model_path)
    for row in rows:
        row["tokens_per_s"] = tokens / row["train_s"]
        row["speedup"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        row["exact_match_before"] = base["exact_match"]
        row["mfu"] = row["tokens_per_s"] * flops_per_token / 1e9 / peaks[row.get("computed", "fp32")]
    print(f"\ncommit {commit_label()}; {args.model}; {args.rows} training rows ({tokens:,} tokens over "
          f"{args.epochs} epoch(s)), {args.test_rows} test rows; matmul peak {peak:.0f} GFLOP/s\n")
    print_table("sft", rows)
    print("results:", write_result("sft", rows, args.out, model=args.model, train_rows=args.rows, test_rows=args.test_rows,
                                   epochs=args.epochs, batch_size=args.batch_size, train_tokens=tokens,
                                   exact_match_before=base["exact_match"], lora=LORA, learning_rate=LEARNING_RATE,
                                   model_type=model_config.model_type))


def precision_sft(args, passed: list[str], model_path: str, tokens: int, before: float) -> None:
    """The four precision variants (TRL fp32 and bf16=True, tunelab --precision fp32 and its defaults) on the
    same rows; --seeds change the training seed only (the rows are --seed's sample)."""
    flops_per_token = 4 * weight_count(model_path)
    passed = [a for a in passed if a != "--precisions"]

    def run(side: str, precision: str, seed: int) -> dict:
        row = run_child(__file__, passed + ["--seed", str(seed), "--variant", "trl" if side == "recipe" else "tunelab",
                                            "--precision", precision])
        row["tokens_per_s"] = tokens / row["train_s"]
        row["model_gflops"] = row["tokens_per_s"] * flops_per_token / 1e9
        return {**row, "exact_match_before": before}

    precision_benchmark(run, args, "tokens_per_s", "exact_match", "training tokens/s", "sft", train_rows=args.rows,
                        test_rows=args.test_rows, train_tokens=tokens, exact_match_before=before)


if __name__ == "__main__":
    main()
