"""Preference tuning with LoRA: `tunelab train` on prompt / chosen / rejected rows against TRL's DPOTrainer
(issue 33).

    python -m bench dpo --rows 400 --test-rows 200

The rows come from the rotten-tomatoes snippets as in bench/sft.py: the question "Is this review positive or
negative? Answer with one word." with the right label word as the chosen answer and the wrong one as the
rejected answer (train, validation and test samples of the corpus's splits, split by movie). Both variants
start from the bundled SmolLM2-135M-Instruct with the same peft LoRA configuration (r 16, alpha 32, dropout
0.05, q_proj and v_proj), DPO's sigmoid loss with beta 0.1, the same rows, one epoch, batch 8; each runs in
its own process:
- TRL: `DPOTrainer` with `DPOConfig`'s defaults (learning rate 1e-6, no warm-up, gradient checkpointing,
  the reference computed at every step with the adapters off) except bf16, off because this CPU has no
  native bf16 (tunelab runs fp32 here too, said in its start line);
- tunelab: `tunelab train --data pairs.jsonl --lora` with its defaults otherwise (learning rate 5e-4 for
  adapters, 10% warm-up, length-grouped pairs, the reference computed once per row, an evaluation of the
  validation pairs at the end, which its speed excludes).
One function scores both results on the test pairs: reward accuracy (the DPO reward, the policy's log-probability
of an answer less the base model's, higher for the chosen answer) and exact match of the greedy answer against
the chosen word (as bench/sft.py), before and after. Tokens/s counts both sides of every training pair (the
chat template applied) times the epochs, over the training time each reports (tunelab's with its reference
pass added, which runs before its first step).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import add_child_options, commit_label, matmul_peak_gflops, peak_rss_mb, ran_as_child, run_child, \
    write_result  # noqa: E402
from sft import LORA, QUESTION, exact_match, write_splits  # noqa: E402
from tables import print_table  # noqa: E402

BETA = 0.1


def pair_row(text: str, label: str) -> dict:
    """The review question with the right label word chosen and the wrong one rejected."""
    return {"prompt": QUESTION.format(text=text), "chosen": label,
            "rejected": {"positive": "negative", "negative": "positive"}[label]}


def read_pairs(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def conversation(row: dict, side: str) -> list[dict]:
    return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[side]}]


def pair_tokens(model_path: str, path: str) -> int:
    """Tokens of both conversations of every pair, as the chat template writes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return sum(len(tokenizer.apply_chat_template(conversation(r, side), tokenize=True, return_dict=True)["input_ids"])
               for r in read_pairs(path) for side in ("chosen", "rejected"))


def answer_logps(model, tokenizer, rows: list[dict]):
    """Each pair's summed log-probability of its chosen and rejected answers (tunelab's answer-only masking)."""
    import torch

    from tunelab.tasks.causal_lm import ChatWriter

    writer, out = ChatWriter(tokenizer), []
    model.eval()
    with torch.inference_mode():
        for row in rows:
            pair = []
            for side in ("chosen", "rejected"):
                ids, labels = writer.tokens(conversation(row, side))
                logits = model(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
                targets = torch.tensor(labels[1:])
                keep = targets != -100
                pair.append(float(logits[keep].gather(1, targets[keep, None]).sum()))
            out.append(pair)
    return torch.tensor(out, dtype=torch.float64)


def scores(model, tokenizer, base_logps, test: str) -> dict:
    """Reward accuracy and margin against the base model, and greedy exact match, on the test pairs."""
    rows = read_pairs(test)
    rewards = BETA * (answer_logps(model, tokenizer, rows) - base_logps)
    margins = rewards[:, 0] - rewards[:, 1]
    messages = [conversation(r, "chosen") for r in rows]
    path = Path(tempfile.mkdtemp()) / "test.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in messages), encoding="utf-8")
    return {"reward_accuracy": float((margins > 0).double().mean()), "reward_margin": float(margins.mean()),
            "exact_match": exact_match(model, tokenizer, str(path))}


def base_scores(args) -> tuple:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(args.model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    base = answer_logps(model, tokenizer, read_pairs(args.paths["test"]))
    return model, tokenizer, base


def run_trl(args) -> dict:
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_path, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in read_pairs(args.paths["train"])]
    config = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, beta=BETA,
                       num_train_epochs=args.epochs, seed=args.seed, eval_strategy="no", save_strategy="no",
                       report_to="none", logging_steps=20, use_cpu=True, disable_tqdm=True, bf16=False, fp16=False)
    trainer = DPOTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    output = trainer.train()
    rss = peak_rss_mb()
    merged = trainer.model.merge_and_unload()
    _, _, base = base_scores(args)
    return {"variant": "TRL DPOTrainer + peft LoRA (its defaults)", "train_s": output.metrics["train_runtime"],
            "learning_rate": config.learning_rate, "peak_rss_mb": rss,
            **scores(merged, tokenizer, base, args.paths["test"])}


class ReferenceTime(logging.Handler):
    """The seconds of tunelab's reference pass, read from its log line."""

    value = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"computed once .* in ([0-9.]+) s$", record.getMessage())
        if found:
            self.value += float(found.group(1))


def run_tunelab(args) -> dict:
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.train import TrainConfig, train

    out = tempfile.mkdtemp() + "/run"
    seconds = ReferenceTime()
    logging.getLogger("tunelab.tasks.preference").addHandler(seconds)
    logging.getLogger("tunelab.tasks.preference").setLevel(logging.INFO)
    result = train(TrainConfig(data=args.paths["train"], validation=args.paths["validation"],
                               model=args.model_path, lora=True, epochs=args.epochs, batch_size=args.batch_size,
                               beta=BETA, seed=args.seed, progress=False, output=out))
    rss = peak_rss_mb()
    best = str(result.best_dir)
    resolved = yaml.safe_load((Path(out) / "config.yaml").read_text())["resolved"]
    _, _, base = base_scores(args)
    # The reference pass runs once before the first step; it is part of the training's cost (TRL's runs inside
    # its steps), so it is counted in tunelab's training time.
    return {"variant": "tunelab train --data pairs.jsonl --lora", "train_s": result.rows_trained /
            result.samples_per_second + seconds.value, "reference_s": seconds.value, "wall_s": result.train_seconds, "learning_rate": resolved["learning_rate"],
            "peak_rss_mb": rss,
            "validation_reward_accuracy": result.best_metrics.get("reward_accuracy"),
            **scores(AutoModelForCausalLM.from_pretrained(best), AutoTokenizer.from_pretrained(best), base,
                     args.paths["test"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400, help="training pairs")
    parser.add_argument("--validation-rows", type=int, default=100)
    parser.add_argument("--test-rows", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folder", help="(set by the parent: where the pair files are)")
    parser.add_argument("--write-pairs", type=Path, default=None, metavar="DIR",
                        help="write the train / validation / test pair files to DIR and stop (to choose a default "
                             "on the validation pairs with tunelab train alone)")
    add_child_options(parser, ("trl", "tunelab"), "dpo")
    args = parser.parse_args()
    from tunelab.generate import bundled_generator_dir

    args.model_path = str(bundled_generator_dir(progress=False))
    if args.folder:
        args.paths = {s: str(Path(args.folder) / f"{s}.jsonl") for s in ("train", "validation", "test")}
    if ran_as_child(args, {"trl": run_trl, "tunelab": run_tunelab}):
        return
    import torch

    folder = args.write_pairs or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_splits(args, folder, pair_row)
    if args.write_pairs:
        print("pairs written:", ", ".join(paths.values()))
        return
    args.paths = paths
    model, tokenizer, base = base_scores(args)
    before = scores(model, tokenizer, base, paths["test"])
    del model
    tokens = pair_tokens(args.model_path, paths["train"]) * args.epochs
    peak = matmul_peak_gflops()
    passed = ["--rows", str(args.rows), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--seed", str(args.seed), "--folder", str(folder)]
    rows = []
    for variant in ("trl", "tunelab"):
        row = run_child(__file__, passed + ["--variant", variant])
        row["tokens_per_s"] = tokens / row["train_s"]
        row["exact_match_before"] = before["exact_match"]
        rows.append(row)
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    print(f"commit {commit_label()}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"{args.rows} training pairs ({tokens} tokens a pass), {args.test_rows} test pairs; before training: "
          f"exact match {before['exact_match']:.3f}, reward accuracy 0 by definition (the base is the reference)")
    print_table("dpo", rows)
    print("results:", write_result("dpo", rows, args.out, train_rows=args.rows, test_rows=args.test_rows,
                                   epochs=args.epochs, batch_size=args.batch_size, beta=BETA, lora=LORA,
                                   train_tokens=tokens, before=before))


if __name__ == "__main__":
    main()
