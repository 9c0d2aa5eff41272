"""Probe: is the [CLS] head what holds one epoch of full SST-2 under 0.90?

    python bench/pooling_probe.py --pooling mean --seed 1 [--threads 1]

all-MiniLM-L6-v2 was trained to be read by mean pooling; `AutoModelForSequenceClassification`
(what `tunelab train` saves, so that any `transformers.pipeline` loads it) reads the [CLS] token
through BERT's pooler instead. This trains the `glue.sh sst2-full` recipe (batch 16, lr 1e-4, head
1e-3, layer decay 0.8, token embeddings frozen, no clipping, 10% warm-up, linear decay, one epoch)
with tunelab's own data loading, batches and parameter groups, reading either [CLS] (`--pooling
cls`: the model `tunelab train` trains) or the masked mean of the last hidden states (`--pooling
mean`: a plain linear head on it, which no standard transformers class has). Prints one JSON line
per evaluation. Results are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPooledClassifier(torch.nn.Module):
    """BERT, the attention-masked mean of its last hidden states, dropout, a linear head."""

    def __init__(self, encoder, num_labels: int):
        super().__init__()
        self.bert, self.config = encoder, encoder.config
        self.dropout = torch.nn.Dropout(encoder.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, num_labels)
        encoder._init_weights(self.classifier)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)  # what tunelab's evaluation reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pooling", choices=("cls", "mean"), default="mean")
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=None, help="training rows (a quick check)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    from accelerate import Accelerator
    from transformers import AutoModel, get_linear_schedule_with_warmup
    from transformers import set_seed

    from tunelab.collate import Collator, encode_frame, make_loader
    from tunelab.data import DataSpec, load_task_data
    from tunelab.modeling import freeze_input_embeddings, load_classifier, load_tokenizer, resolve_model
    from tunelab.train import _param_groups, evaluate_loader

    set_seed(args.seed)
    data = load_task_data(DataSpec(str(Path(args.data) / "train.tsv"), validation=str(Path(args.data) / "dev.tsv"),
                                   seed=args.seed, limit=args.limit))
    name = resolve_model("minilm")
    tokenizer = load_tokenizer(name)
    if args.pooling == "cls":
        model = load_classifier(name, data.label_names)
        freeze_input_embeddings(model)
    else:
        encoder = AutoModel.from_pretrained(name, add_pooling_layer=False)
        model = MeanPooledClassifier(encoder, len(data.label_names))
        freeze_input_embeddings(encoder)

    collator = Collator(tokenizer.pad_token_id)
    train_loader = make_loader(encode_frame(tokenizer, data.train, 128), 16, collator, args.seed)
    val_loader = make_loader(encode_frame(tokenizer, data.validation, 128), 128, collator, shuffle=False)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.01, 1e-3, 1e-4, 0.8), lr=1e-4, fused=True)
    total = len(train_loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * total), total)

    accelerator = Accelerator(cpu=True)  # evaluate_loader gathers through it; one process here

    def evaluate() -> dict:
        metrics, _, _ = evaluate_loader(model, val_loader, accelerator, len(data.label_names))
        return {"accuracy": round(metrics["accuracy"], 4), "loss": round(metrics["loss"], 4)}

    model.train()
    started = time.perf_counter()
    for step, batch in enumerate(train_loader, 1):
        model(**batch).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % args.eval_every == 0 or step == total:
            print(json.dumps({"pooling": args.pooling, "seed": args.seed, "step": step, **evaluate(),
                              "seconds": round(time.perf_counter() - started)}), flush=True)


if __name__ == "__main__":
    main()
