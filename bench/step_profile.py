"""Where a training step's time goes, per task (issue 31): matmuls of the model against everything else.

    python -m bench profile                       # every task, tunelab at its defaults
    python -m bench profile --tasks ner --precision fp32

Each task is set up by tunelab itself (`start`, its defaults: batches, optimizer, precision) on a small
sample of its benchmark data and driven step by step through `optimizer_steps`, the generator `train` drives;
after --warmup steps, --steps steps run under `torch.profiler` (CPU). Each operator's self time is put in one
of a few kinds (matmul, attention, dropout, optimizer, casts, other) and the largest operators that are not matmuls
are listed: the candidates for "the largest cost that is not a matmul of the model". Each task runs in its own
process.
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

from common import add_child_options, commit_label, run_child, write_result  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = ("classification", "ner", "multi-label", "causal-lm", "masked-lm")

# operator name -> kind; matched on the name after "aten::" (first rule that matches wins)
KINDS = (
    ("matmul", ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mkldnn_", "_weight_int", "onednn")),
    ("attention", ("scaled_dot_product", "_scaled_dot_product", "_flash_attention", "softmax", "_softmax")),
    ("dropout", ("bernoulli", "native_dropout", "dropout")),
    ("optimizer", ("_fused_adamw", "_foreach", "adamw", "lerp", "addcdiv", "addcmul")),
    ("casts", ("to", "_to_copy", "copy_", "clone", "contiguous", "empty_like")),
)


def kind(name: str) -> str:
    short = name.split("::")[-1]
    for label, prefixes in KINDS:
        if any(short == p or short.startswith(p) for p in prefixes):
            return label
    return "other"


def config_for(task: str, folder: Path, precision: str):
    """tunelab's TrainConfig for a task's sample (its defaults otherwise)."""
    from tunelab.train import TrainConfig

    common = dict(output=str(folder / "run"), progress=False, precision=precision, epochs=1)
    if task == "classification":
        return TrainConfig(data=str(DATA / "sst2" / "train.tsv"), validation=str(DATA / "sst2" / "dev.tsv"),
                           limit=1024, **common)
    if task == "ner":
        return TrainConfig(data=str(DATA / "conll2003" / "train.txt"),
                           validation=str(DATA / "conll2003" / "valid.txt"), limit=1024, **common)
    if task == "multi-label":
        return TrainConfig(data=str(DATA / "goemotions" / "train.tsv"), validation=str(DATA / "goemotions" / "dev.tsv"),
                           label_column="labels", **common)
    if task == "causal-lm":
        from sft import write_splits

        paths = write_splits(argparse.Namespace(seed=42, rows=512, validation_rows=32, test_rows=1), folder)
        return TrainConfig(data=paths["train"], validation=paths["validation"], task="causal-lm", model="smollm2",
                           lora=True, **common)
    from mlm_speed import reviews

    data = folder / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in reviews(400, 42)), encoding="utf-8")
    return TrainConfig(data=str(data), task="masked-lm", block_size=128, **common)


def profile_task(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tunelab.train.loop import optimizer_steps, start

    folder = Path(tempfile.mkdtemp())
    run = start(config_for(args.variant, folder, args.precision), None, resume=False)
    steps = optimizer_steps(run.s, run.state, lambda step: False)
    for _ in range(args.warmup):
        next(steps)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            next(steps)
    seconds = time.perf_counter() - started
    totals: dict[str, float] = {}
    operators = []
    for event in prof.key_averages():
        if event.self_cpu_time_total <= 0 or not event.key.startswith("aten::"):
            continue
        totals[kind(event.key)] = totals.get(kind(event.key), 0.0) + event.self_cpu_time_total
        operators.append((event.self_cpu_time_total, event.key))
    whole = sum(totals.values())
    largest = sorted((o for o in operators if kind(o[1]) != "matmul"), reverse=True)[:6]
    return {"task": args.variant, "computed": run.s.precision.name if run.s.precision else "fp32",
            "batch_size": run.s.batch_size, "batching": run.s.batching,
            "step_ms": seconds / args.steps * 1000, **{f"{k}_share": v / whole for k, v in totals.items()},
            "largest": ", ".join(f"{name.removeprefix('aten::')} {t / whole:.1%}" for t, name in largest),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--warmup", type=int, default=3, help="steps before the profiled ones")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    add_child_options(parser, TASKS, "profile")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(profile_task(args)))
        return
    import tables

    passed = ["--precision", args.precision, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    rows = [run_child(__file__, passed + ["--variant", task]) for task in args.tasks]
    print(f"commit {commit_label()}")
    tables.print_table("profile", rows)
    print("results:", write_result("profile", rows, args.out, steps=args.steps, warmup=args.warmup))


if __name__ == "__main__":
    main()
