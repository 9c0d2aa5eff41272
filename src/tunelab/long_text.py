"""Texts longer than the model's window: count them, and read them whole in overlapping windows.

A row longer than `--max-length` pieces is either cut (`truncate`) or split into windows of
`max_length` pieces that share `stride` pieces with their neighbour (`windows`). In training each
window carries its document's label; in evaluation and prediction a document's probabilities are the
mean of its windows' probabilities. Either way the rows that were long are counted and reported:
text is never cut silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

LONG_TEXT = ("auto", "windows", "truncate")
# --long-text auto reads in windows when more than this share of the training rows is long: a few cut rows
# cost nothing measurable, while on long-document data (IMDb: 15% over 512 pieces, most over 128) the cut
# loses what the end of a review says.
AUTO_SHARE = 0.03


@dataclass
class Lengths:
    """How many of the rows are longer than the window, and by how much."""

    rows: int
    max_length: int
    mode: str = "truncate"  # what was done with the long rows: windows or truncate
    stride: int = 0  # pieces consecutive windows share
    excess: list[int] = field(default_factory=list)  # pieces beyond max_length, one per long row

    @property
    def long(self) -> int:
        return len(self.excess)

    @property
    def share(self) -> float:
        return self.long / self.rows if self.rows else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "long_rows": self.long, "max_length": self.max_length, "long_text": self.mode,
                "mean_excess": float(np.mean(self.excess)) if self.excess else 0.0,
                "longest": self.max_length + max(self.excess, default=0)}

    def describe(self, what: str) -> str:
        """One line: how many rows are long, and what was done with them."""
        counted = (f"{self.long:,} of {self.rows:,} {what} ({self.share:.1%}) are longer than {self.max_length} "
                   f"pieces (by {np.mean(self.excess):.0f} on average; longest {self.as_dict()['longest']:,})")
        if self.mode == "windows":
            return (f"{counted}: read whole, in overlapping windows of {self.max_length} pieces sharing "
                    f"{self.stride}")
        return (f"{counted}: cut to {self.max_length} pieces (--long-text truncate); --long-text windows reads "
                "them whole")


def report(lengths: Lengths | None, what: str) -> None:
    """Log how many rows were long and what was done with them: a warning when they were cut."""
    if lengths is None or not lengths.long:
        return
    line = lengths.describe(what)
    if lengths.mode == "windows":
        logger.info(line)
    else:
        logger.warning(line)


def resolve(mode: str, lengths: Lengths, pairs: bool) -> str:
    """What --long-text auto means for these training rows: windows when more than AUTO_SHARE are long
    (single texts only: a pair has no one text to split)."""
    if mode != "auto":
        return mode
    return "windows" if lengths.share > AUTO_SHARE and not pairs else "truncate"


@dataclass
class Pieces:
    """Tokenized rows: the model rows (windows, or one per document) and the document each comes from."""

    features: dict[str, list[list[int]]]
    documents: list[int] | None  # the document of each model row; None when there is one row per document
    lengths: Lengths


def tokenize(tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int, stride: int,
             windows: bool, names: Sequence[str]) -> Pieces:
    """Tokenize documents into model rows of at most `max_length` pieces: cut, or in windows sharing `stride`
    pieces; the documents' full lengths are counted either way."""
    if text_pairs is not None:
        if windows:
            from tunelab.errors import TunelabError

            raise TunelabError("--long-text windows splits single texts, and this data has text pairs; use "
                               "--long-text truncate (or a larger --max-length)")
        full = tokenizer(list(texts), list(text_pairs), truncation=False, verbose=False)["input_ids"]
        cut = tokenizer(list(texts), list(text_pairs), truncation=True, max_length=max_length, padding=False)
        excess = [len(ids) - max_length for ids in full if len(ids) > max_length]
        return Pieces({n: cut[n] for n in names if n in cut}, None, Lengths(len(texts), max_length, excess=excess))
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    # The tokenizer's windows need a stride below the window's text; half the window keeps every piece in
    # at most two windows.
    stride = max(0, min(stride, (max_length - specials) // 2))
    out = tokenizer(list(texts), truncation=True, max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, padding=False)
    documents = np.asarray(out["overflow_to_sample_mapping"])
    counts = np.bincount(documents, minlength=len(texts))
    # Each window holds its own text plus `stride` pieces of the previous one: the document's length is the
    # windows' text less the overlaps.
    text = np.bincount(documents, weights=[len(ids) - specials for ids in out["input_ids"]], minlength=len(texts))
    full = text - stride * (counts - 1) + specials
    excess = [int(n - max_length) for n in full if n > max_length]
    lengths = Lengths(len(texts), max_length, "windows" if windows else "truncate", stride, excess)
    if windows:
        return Pieces({n: out[n] for n in names if n in out}, documents.tolist(), lengths)
    first = first_rows(documents)  # each document's first window is the document cut to the window
    return Pieces({n: [out[n][i] for i in first] for n in names if n in out}, None, lengths)


def first_rows(documents: Sequence[int]) -> np.ndarray:
    """The index of each document's first model row (documents come in order)."""
    documents = np.asarray(documents)
    return np.flatnonzero(np.r_[True, documents[1:] != documents[:-1]])


def window_mean(values: np.ndarray, documents: Sequence[int]) -> np.ndarray:
    """The mean of each document's rows of `values` (documents numbered 0.. in order)."""
    documents = np.asarray(documents)
    sums = np.zeros((documents.max() + 1,) + values.shape[1:], dtype=np.float64)
    np.add.at(sums, documents, values)
    return (sums / np.bincount(documents)[(...,) + (None,) * (values.ndim - 1)]).astype(np.float32)
