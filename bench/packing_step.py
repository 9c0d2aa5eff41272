"""Training-step speed of one batch layout against another, on CoNLL-2003 sentences and the bundled MiniLM.

    python bench/packing_step.py [--data ../shared/data/conll2003] [--batches 40] [--rounds 2]

The same 40 random batches of 32 training sentences (forward, backward and an AdamW step each), laid out:
padded (what the Trainer computes), packed into rows as wide as each batch's longest sentence (tunelab's
--batching packed), and packed into 128-wide rows; and 40 length-grouped batches (tunelab's --batching grouped,
the same sentences sorted in mega-batches of 50 batches). Rounds alternate the layouts so drift hits all alike.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/conll2003")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from transformers import AutoModelForTokenClassification

    from tunelab.collate import Collator, PackingCollator
    from tunelab.data import read_conll
    from tunelab.modeling import bundled_model_dir, load_tokenizer
    from tunelab.tasks.token_classification import encode_words

    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(bundled_model_dir()))
    sentences = read_conll(Path(args.data) / "train.txt")["tokens"].map(list).tolist()
    tags = [[i % 9 for i in range(len(s))] for s in sentences]
    encoded = encode_words(tokenizer, sentences, 128, 32, tags, True)
    lengths = encoded.lengths
    model = AutoModelForTokenClassification.from_pretrained(bundled_model_dir(), num_labels=9).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    order = list(range(len(encoded)))
    random.Random(0).shuffle(order)
    batch = 32
    randoms = [order[i : i + batch] for i in range(0, batch * args.batches, batch)]
    pool = sorted(order[: batch * 50], key=lengths.__getitem__)
    grouped = [pool[i : i + batch] for i in range(0, len(pool), batch)]
    random.Random(1).shuffle(grouped)
    grouped = grouped[: args.batches]

    pad = Collator(tokenizer.pad_token_id)

    def wide(rows):
        # Packing into fixed 128-wide rows: one extra 128-piece dummy row sets the width, then is dropped.
        dummy = {**rows[0], "input_ids": [tokenizer.pad_token_id] * 128, "attention_mask": [1] * 128,
                 "token_type_ids": [0] * 128, "labels": [-100] * 128}
        packed = PackingCollator(tokenizer.pad_token_id)([dummy] + rows)
        keep = [b for b in range(packed["input_ids"].shape[0]) if not bool((packed["input_ids"][b] == dummy["input_ids"][0]).all())]
        return {k: (v[keep] if k != "row_index" else v) for k, v in packed.items()}

    layouts = {"padded random": (randoms, pad), "packed, batch's longest": (randoms, PackingCollator(tokenizer.pad_token_id)),
               "packed, 128 wide": (randoms, wide), "length-grouped": (grouped, pad)}
    results: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, (batches, collate) in layouts.items():
            prepared = [collate([encoded[i] for i in b]) for b in batches]
            prepared = [{k: v for k, v in p.items() if k != "row_index"} for p in prepared]
            model(**prepared[0]).loss.backward()  # warm-up
            optimizer.zero_grad()
            started = time.perf_counter()
            for inputs in prepared[1:]:
                model(**inputs).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            results[name].append((len(prepared) - 1) * batch / (time.perf_counter() - started))
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout:
        commit += " + uncommitted changes"
    print(f"commit {commit}, threads {torch.get_num_threads()}, {args.batches} batches of {batch}, rounds {args.rounds}")
    print("| layout | samples/s per round |\n|---|---|")
    for name, speeds in results.items():
        print(f"| {name} | {' / '.join(f'{v:.1f}' for v in speeds)} |")


if __name__ == "__main__":
    main()
