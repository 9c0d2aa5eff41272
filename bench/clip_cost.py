"""What gradient clipping (`--max-grad-norm 1.0`, the default) costs per training step on this CPU,
side by side with no clipping (`--max-grad-norm 0`).

Real SST-2 training batches (length-grouped, batch 16), the bundled MiniLM with frozen token
embeddings and fused AdamW, as in `bench/recipes/sst2-full.yaml`. Variants are interleaved in rounds so
that the machine's drift hits each alike; the table gives the median milliseconds per step.

Usage: python bench/clip_cost.py [--data ../shared/data/sst2] [--steps 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from tables import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--steps", type=int, default=40, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="the result file (default bench/results/clip.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator

    from tunelab.collate import Collator, make_loader

    from tunelab.tasks.texts import encode_frame
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.modeling import freeze_input_embeddings, load_classifier, load_tokenizer, resolve_model
    from tunelab.train import _param_groups

    # tunelab train's own pipeline: its data loading, model, frozen embeddings, parameter groups and batches.
    data = load_task_data(DataSpec(str(Path(args.data) / "train.tsv"), validation=str(Path(args.data) / "dev.tsv")))
    name = resolve_model("minilm")
    tokenizer = load_tokenizer(name)
    model = load_classifier(name, data.label_names)
    freeze_input_embeddings(model)
    model.train()
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.01, 1e-3, 1e-4, 0.8), lr=1e-4, fused=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    loader = make_loader(encode_frame(tokenizer, data.train, 128), 16, Collator(tokenizer.pad_token_id))
    batches = [batch for batch, _ in zip(loader, range(args.steps))]

    params = [p for p in model.parameters() if p.requires_grad]
    norms: list[float] = []
    variants = {
        "no clipping": lambda: None,
        "clipping at 1.0": lambda: norms.append(float(accelerator.clip_grad_norm_(model.parameters(), 1.0))),
    }
    times: dict[str, list[float]] = {key: [] for key in variants}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for key, clip in variants.items():
            start = time.perf_counter()
            for batch in batches:
                loss = model(**batch).loss
                accelerator.backward(loss)
                clip()
                optimizer.step()
                optimizer.zero_grad()
            if round_:
                times[key].append((time.perf_counter() - start) / len(batches) * 1000)
    base = statistics.median(times["no clipping"])
    table = [{"variant": key, "ms": statistics.median(v), "ratio": statistics.median(v) / base}
             for key, v in times.items()]
    print(f"threads {torch.get_num_threads()}, {len(batches)} SST-2 batches of 16 x {args.rounds} rounds, "
          f"{sum(p.numel() for p in params) / 1e6:.1f}M trained parameters; clipping bound on "
          f"{sum(n > 1.0 for n in norms) / len(norms):.0%} of its steps (median norm {statistics.median(norms):.1f})")
    print_table("clip", table)
    print("results:", write_result("clip", table, args.out, rounds=args.rounds))

if __name__ == "__main__":
    main()
