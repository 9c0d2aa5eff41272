"""Encoded rows, batched with dynamic padding.

A task tokenizes its rows once and keeps them unpadded (`Encoded`); each batch
is padded to its own longest row. Training batches are grouped by length so that
little padding is computed at all, or packed end to end.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
ROW_INDEX = "row_index"  # which encoded row a batch row is: evaluation scores rows in any order with it
IGNORE = -100  # a label position the loss and the metrics skip


def model_inputs(batch: dict, leave: Sequence[str] = ()) -> dict:
    """The batch without what only tunelab reads (the row indices) and the keys in `leave`."""
    return {key: value for key, value in batch.items() if key != ROW_INDEX and key not in leave}


def effective_max_length(tokenizer, config, requested: int | None) -> int:
    """Clamp the requested length to what the model and tokenizer can take (None: their limit)."""
    limits = [requested or 1_000_000]
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    if getattr(tokenizer, "model_max_length", None) and tokenizer.model_max_length < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    length = min(limits)
    if requested and length < requested:
        logger.warning("--max-length %d is more than the model takes; using %d", requested, length)
    return length


@dataclass
class Encoded:
    """Tokenized rows, unpadded, with their labels (a class id, a float, or one id per piece); features a
    task adds beside the model inputs (answer positions) are batched as well."""

    features: dict[str, list[list[int]]]
    labels: list | None
    meta: list | None = None  # what a task keeps per row to map outputs back (token classification: windows)
    documents: list[int] | None = None  # the document each row is a window of (--long-text windows), else None
    long: Any = None  # how many documents were longer than the window, and by how much (the task's report)
    costs: list[int] | None = None  # what each row costs in a padded batch, where not its length (batching)

    def __len__(self) -> int:
        return len(self.features["input_ids"])

    @property
    def sizes(self) -> list[int]:
        """What each row costs in a batch padded to its longest: how batches are grouped and cut."""
        return self.costs if self.costs is not None else self.lengths

    @property
    def lengths(self) -> list[int]:
        """Each row's tokens (a row of several sequences, one per choice: all of theirs)."""
        return [len(ids) if not ids or isinstance(ids[0], int) else sum(map(len, ids))
                for ids in self.features["input_ids"]]

    def __getitem__(self, index: int) -> dict:
        row = {name: values[index] for name, values in self.features.items()}
        if self.labels is not None:
            row["labels"] = self.labels[index]
        row[ROW_INDEX] = index
        return row


@dataclass
class Collator:
    """Pad a list of rows to the longest one in the batch. A list feature of integers is padded (input ids
    with the padding id, per-piece labels with -100, masks and segment ids with 0); a list of floats (one
    value per label) and a single number are stacked as they are."""

    pad_token_id: int = 0
    skip: tuple[str, ...] = ()  # row keys that stay out of the batch (what only the collator reads)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = {}
        for name, first in rows[0].items():
            if name in self.skip:
                continue
            values = [r[name] for r in rows]
            if isinstance(first, list) and first and isinstance(first[0], float):
                batch[name] = torch.tensor(values, dtype=torch.float32)
            elif isinstance(first, list):
                fill = self.pad_token_id if name == "input_ids" else IGNORE if name == "labels" else 0
                width = max(len(v) for v in values)
                batch[name] = torch.tensor([v + [fill] * (width - len(v)) for v in values], dtype=torch.long)
            else:
                dtype = torch.float32 if isinstance(first, float) else torch.long
                batch[name] = torch.tensor(values, dtype=dtype)
        return batch


@dataclass
class PackingCollator:
    """Random batches without padding, for tasks labeled per token: the batch's rows are laid end to end in
    as few model rows as its longest row allows (first fit, longest first), positions restart at 0 for each,
    and a 4-D attention mask keeps every row's attention within itself. The model computes the same outputs
    as for the padded rows (`packing_matches` checks a model does) on about as many positions as the batch
    holds tokens: random batches at the speed of length-grouped ones."""

    pad_token_id: int = 0
    position_offset: int = 0  # where positions start: 0, or padding id + 1 for RoBERTa-style embeddings
    causal: bool = False  # causal LMs: a token attends to the earlier tokens of its own row only

    def layout(self, lengths: Sequence[int]) -> list[list[int]]:
        """Which rows share each model row, in order: first fit into rows as wide as the longest."""
        width = max(lengths)
        bins: list[list[int]] = []
        used: list[int] = []
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            for b, filled in enumerate(used):
                if filled + lengths[i] <= width:
                    bins[b].append(i)
                    used[b] += lengths[i]
                    break
            else:
                bins.append([i])
                used.append(lengths[i])
        return bins

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(r["input_ids"]) for r in rows]
        bins = self.layout(lengths)
        shape = (len(bins), max(lengths))
        fills = {"input_ids": self.pad_token_id, "token_type_ids": 0, "labels": IGNORE}
        batch = {name: torch.full(shape, fill, dtype=torch.long) for name, fill in fills.items() if name in rows[0]}
        positions = torch.full(shape, self.position_offset, dtype=torch.long)
        segment = torch.full(shape, -1, dtype=torch.long)
        order = []
        for b, members in enumerate(bins):
            offset = 0
            for i in members:
                span = slice(offset, offset + lengths[i])
                for name in batch:
                    batch[name][b, span] = torch.tensor(rows[i][name], dtype=torch.long)
                positions[b, span] = torch.arange(lengths[i]) + self.position_offset
                segment[b, span] = len(order)
                order.append(i)
                offset += lengths[i]
        # Padding positions attend to themselves only: a fully masked row of scores would be NaN.
        padding = torch.arange(-1, -shape[1] - 1, -1).expand(shape)
        segment = torch.where(segment >= 0, segment, padding)
        together = segment[:, :, None] == segment[:, None, :]
        if self.causal:
            together &= torch.ones(shape[1], shape[1], dtype=torch.bool).tril()
            # The loss shifts labels by one: a row's first label would be predicted from the row packed
            # before it. Padded, that label is never predicted at all, so it carries no loss here either.
            if "labels" in batch:
                for b, members in enumerate(bins):
                    offset = 0
                    for i in members:
                        batch["labels"][b, offset] = IGNORE
                        offset += lengths[i]
        # An additive float mask works for eager and SDPA attention alike (a boolean one only for SDPA).
        mask = torch.zeros(together.shape, dtype=torch.float32).masked_fill_(~together, torch.finfo(torch.float32).min)
        batch.update(attention_mask=mask[:, None], position_ids=positions)
        if ROW_INDEX in rows[0]:
            batch[ROW_INDEX] = torch.tensor([rows[i][ROW_INDEX] for i in order], dtype=torch.long)
        return batch


@torch.inference_mode()
def packing_matches(model, rows: list[dict], collator: PackingCollator, outputs: Sequence[str] = ("logits",)) -> bool:
    """Whether `model` gives rows packed by `collator` the `outputs` (per position) it gives them padded
    (architectures with relative positions or no 4-D attention mask do not). Compared in fp32 whatever the run
    computes in: that is a property of the architecture, and bf16's rounding (a batch of another shape moves
    SmolLM2's logits by up to 1%) would hide it or refuse a model that packs."""
    lengths = [len(r["input_ids"]) for r in rows]
    padded, packed = Collator(collator.pad_token_id)(rows), collator(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(next(model.parameters()).device.type, enabled=False):
            expected = model(**{k: v for k, v in padded.items() if k in MODEL_INPUTS})
            got = model(**{k: v for k, v in packed.items() if k in MODEL_INPUTS + ("position_ids",)})
    except Exception as exc:  # any refusal of the inputs means the model cannot take packed rows
        logger.debug("packed rows refused: %s", exc)
        return False
    finally:
        model.train(was_training)
    return all(_same_rows(got[name].float(), expected[name].float(), collator.layout(lengths), lengths)
               for name in outputs)


def _same_rows(packed: torch.Tensor, padded: torch.Tensor, layout: list[list[int]], lengths: list[int]) -> bool:
    for b, members in enumerate(layout):
        offset = 0
        for i in members:
            if not torch.allclose(packed[b, offset:offset + lengths[i]], padded[i, :lengths[i]], atol=1e-4, rtol=1e-3):
                return False
            offset += lengths[i]
    return True


class LengthGroupedBatches:
    """Batches of similar length, in a random order that changes every epoch.

    Indices are shuffled, cut into mega-batches of `group` batches, sorted by
    length inside each mega-batch and cut into batches; the batches are then
    shuffled, so training order stays random while padding nearly vanishes.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50, shuffle: bool = True,
                 by_length: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.shuffle = shuffle
        self.by_length = by_length  # False: plain random batches (still a function of seed and epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        indices = list(range(len(self.lengths)))
        if not self.shuffle:
            # Evaluation and prediction: fully sorted, longest first.
            indices.sort(key=lambda i: -self.lengths[i])
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(indices)
        if not self.by_length:
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        mega = self.batch_size * self.group
        batches = []
        for start in range(0, len(indices), mega):
            chunk = sorted(indices[start : start + mega], key=lambda i: self.lengths[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng.shuffle(batches)
        # The one short batch goes last, as in a plain DataLoader: accelerate's sharding across
        # processes expects every batch but the last to be full.
        return [b for b in batches if len(b) == self.batch_size] + [b for b in batches if len(b) < self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def prediction_batches(lengths: Sequence[int], batch_size: int, min_fill: float = 2 / 3) -> list[list[int]]:
    """Indices sorted longest first, cut into batches of at most `batch_size` rows that also end before
    a row shorter than `min_fill` times the batch's longest, so padding stays under a third.

    A mixed bag of short and long texts (a serving micro-batch) padded as one batch is mostly padding:
    32 SST-2 sentences ran 1.7x faster as 4-5 such batches than as one (BENCHMARKS.md).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[i] >= min_fill * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def make_loader(encoded: Encoded, batch_size: int, collator: Collator, seed: int = 0, shuffle: bool = True,
                group_by_length: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader over encoded rows; batch order depends on (seed, epoch) only, so runs can resume exactly."""
    sampler = LengthGroupedBatches(encoded.sizes, batch_size, seed, shuffle=shuffle, by_length=group_by_length)
    # A private generator: each new iterator draws a seed from it, not from the global torch RNG that
    # dropout uses, so a resumed run's fresh iterator leaves the dropout masks as they would have been.
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(encoded, batch_sampler=sampler, collate_fn=collator, generator=generator)


def by_row(gathered: list[tuple]) -> list[tuple]:
    """Batches of (outputs..., row indices), gathered in any order, as each encoded row's outputs in row order
    (a row gathered twice, as accelerate pads the last batch across processes, counts once)."""
    found: dict[int, tuple] = {}
    for *values, rows in gathered:
        for i, row in enumerate(rows.tolist()):
            found[row] = tuple(v[i] for v in values)
    return [found[i] for i in sorted(found)]
