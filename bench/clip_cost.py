"""What gradient clipping (`--max-grad-norm 1.0`, the default) costs per training step on this CPU,
side by side with no clipping (`--max-grad-norm 0`).

Real SST-2 training batches (length-grouped, batch 16), the bundled MiniLM with frozen token
embeddings and fused AdamW, as in `bench/glue.sh sst2-full`. Variants are interleaved in rounds so
that the machine's drift hits each alike; the table gives the median milliseconds per step.

Usage: python bench/clip_cost.py [--data ../shared/data/sst2] [--steps 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--steps", type=int, default=40, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.collate import LengthGroupedBatches
    from tunelab.modeling import resolve_model
    from tunelab.train import _param_groups

    with open(Path(args.data) / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    name = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.01, 1e-3, 1e-4, 0.8), lr=1e-4, fused=True)
    model, optimizer = accelerator.prepare(model, optimizer)

    texts = [r["text"] for r in rows[:20000]]
    labels = [int(r["label"]) for r in rows[:20000]]
    encoded = tokenizer(texts, truncation=True, max_length=128)
    order = LengthGroupedBatches([len(ids) for ids in encoded["input_ids"]], 16, seed=0).batches(0)
    batches = []
    for indices in order[: args.steps]:
        batch = tokenizer.pad({"input_ids": [encoded["input_ids"][i] for i in indices],
                               "attention_mask": [encoded["attention_mask"][i] for i in indices]},
                              return_tensors="pt")
        batch["labels"] = torch.tensor([labels[i] for i in indices])
        batches.append(dict(batch))

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
    print_table(table, [("variant", "variant", ""), ("ms", "ms per step (median)", ".1f"),
                        ("ratio", "vs no clipping", ".2f")])


if __name__ == "__main__":
    main()
