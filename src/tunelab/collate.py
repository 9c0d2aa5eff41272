"""Tokenize frames once, then batch them with dynamic padding.

Rows are tokenized with the fast tokenizer in batches and kept unpadded (long
documents are counted, and cut or split into windows: long_text.py); each batch
is padded to its own longest row. Training batches are grouped by length so that
little padding is computed at all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import pandas as pd
import torch

if TYPE_CHECKING:
    from tunelab.long_text import Lengths

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
ROW_INDEX = "row_index"  # which encoded row a batch row is: evaluation scores rows in any order with it
IGNORE = -100  # a label position the loss and the metrics skip


def model_inputs(batch: dict) -> dict:
    """The batch without what only tunelab reads (the row indices)."""
    return {key: value for key, value in batch.items() if key != ROW_INDEX}


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
    """Tokenized rows, unpadded, with their labels (a class id, a float, or one id per piece)."""

    features: dict[str, list[list[int]]]
    labels: list | None
    meta: list | None = None  # what a task keeps per row to map outputs back (token classification: windows)
    documents: list[int] | None = None  # the document each row is a window of (--long-text windows), else None
    long: "Lengths | None" = None  # how many documents were longer than the window, and by how much

    def __len__(self) -> int:
        return len(self.features["input_ids"])

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.features["input_ids"]]

    def __getitem__(self, index: int) -> dict:
        row = {name: values[index] for name, values in self.features.items()}
        if self.labels is not None:
            row["labels"] = self.labels[index]
        row[ROW_INDEX] = index
        return row

    def cut(self) -> "Encoded":
        """Each document's first window alone: its rows cut to the window, as --long-text truncate reads them."""
        from tunelab.long_text import first_rows

        if self.documents is None:
            return self
        keep = first_rows(self.documents)
        labels = [self.labels[i] for i in keep] if self.labels is not None else None
        long = dataclasses.replace(self.long, mode="truncate") if self.long is not None else None
        return Encoded({name: [values[i] for i in keep] for name, values in self.features.items()}, labels,
                       long=long)


def encode(
    tokenizer,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    max_length: int,
    labels: Sequence | None = None,
    stride: int = 0,
    windows: bool = False,
) -> Encoded:
    """Tokenize rows (pairs produce token_type_ids) with the fast tokenizer, in batches of 1,000.

    Rows longer than `max_length` pieces are counted (`Encoded.long`) and cut, or with `windows` split into
    windows sharing `stride` pieces, each with its document's label (`Encoded.documents` says whose).
    """
    from tunelab.long_text import Lengths, tokenize

    texts = list(texts)
    pairs = list(text_pairs) if text_pairs is not None else None
    features: dict[str, list[list[int]]] = {"input_ids": []}
    documents: list[int] = []
    lengths = Lengths(len(texts), max_length, "windows" if windows else "truncate")
    for start in range(0, len(texts), 1000):
        chunk = tokenize(tokenizer, texts[start:start + 1000], pairs[start:start + 1000] if pairs else None,
                         max_length, stride, windows, MODEL_INPUTS)
        for name, values in chunk.features.items():
            features.setdefault(name, []).extend(values)
        documents.extend(start + d for d in (chunk.documents or range(len(chunk.features["input_ids"]))))
        lengths.excess.extend(chunk.lengths.excess)
        lengths.stride = chunk.lengths.stride  # as clamped to the window
    labels = list(labels) if labels is not None else None
    if not windows:
        return Encoded(features, labels, long=lengths)
    if labels is not None:
        labels = [labels[d] for d in documents]
    return Encoded(features, labels, documents=documents, long=lengths)


def encode_frame(tokenizer, frame: pd.DataFrame, max_length: int, stride: int = 0, windows: bool = False) -> Encoded:
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
    labels = frame["label"].tolist() if "label" in frame else None
    return encode(tokenizer, frame["text"].astype(str).tolist(), pairs, max_length, labels, stride, windows)


@dataclass
class Collator:
    """Pad a list of rows to the longest one in the batch; per-piece labels are padded with -100."""

    pad_token_id: int = 0
    regression: bool = False
    multi_hot: bool = False  # labels are one 0/1 float per label (multi-label), not one per piece

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {}
        for name in MODEL_INPUTS:
            if name not in rows[0]:
                continue
            fill = self.pad_token_id if name == "input_ids" else 0
            batch[name] = torch.tensor([r[name] + [fill] * (width - len(r[name])) for r in rows], dtype=torch.long)
        if "labels" in rows[0]:
            if self.multi_hot:
                batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.float32)
            elif isinstance(rows[0]["labels"], list):
                labels = [r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows]
                batch["labels"] = torch.tensor(labels, dtype=torch.long)
            else:
                dtype = torch.float32 if self.regression else torch.long
                batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=dtype)
        if ROW_INDEX in rows[0]:
            batch[ROW_INDEX] = torch.tensor([r[ROW_INDEX] for r in rows], dtype=torch.long)
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
def packing_matches(model, rows: list[dict], collator: PackingCollator, autocast=None) -> bool:
    """Whether `model` gives rows packed by `collator` the logits it gives them padded (architectures with
    relative positions or no 4-D attention mask do not)."""
    import contextlib

    pad_token_id = collator.pad_token_id
    lengths = [len(r["input_ids"]) for r in rows]
    padded, packed = Collator(pad_token_id)(rows), collator(rows)
    was_training = model.training
    model.eval()
    try:
        with autocast or contextlib.nullcontext():
            expected = model(**{k: v for k, v in padded.items() if k in MODEL_INPUTS}).logits.float()
            got = model(**{k: v for k, v in packed.items() if k in MODEL_INPUTS + ("position_ids",)}).logits.float()
    except Exception as exc:  # any refusal of the inputs means the model cannot take packed rows
        logger.debug("packed rows refused: %s", exc)
        return False
    finally:
        model.train(was_training)
    for b, members in enumerate(collator.layout(lengths)):
        offset = 0
        for i in members:
            same = torch.allclose(got[b, offset : offset + lengths[i]], expected[i, : lengths[i]], atol=1e-4, rtol=1e-3)
            if not same:
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
    sampler = LengthGroupedBatches(encoded.lengths, batch_size, seed, shuffle=shuffle, by_length=group_by_length)
    # A private generator: each new iterator draws a seed from it, not from the global torch RNG that
    # dropout uses, so a resumed run's fresh iterator leaves the dropout masks as they would have been.
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(encoded, batch_sampler=sampler, collate_fn=collator, generator=generator)
