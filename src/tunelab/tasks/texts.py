"""Texts and text pairs as model rows (what sequence classification and multi-label share): their column
options, tokenization in batches, and texts longer than the model's window.

A row longer than `--max-length` pieces is either cut (`truncate`) or split into windows of
`max_length` pieces that share `stride` pieces with their neighbour (`windows`). In training each
window carries its document's label; in evaluation and prediction a document's probabilities are the
mean of its windows' probabilities. Either way the rows that were long are counted and reported:
text is never cut silently.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tunelab.errors import TunelabError
from tunelab.options import Option

if TYPE_CHECKING:
    import pandas as pd

    from tunelab.collate import Encoded

logger = logging.getLogger(__name__)

TEXT_COLUMN = Option("text_column", str, "text", "Column with the text.", commands=("train", "evaluate", "predict"))
TEXT_PAIR_COLUMN = Option("text_pair_column", str | None, None, "Column with the second text of a pair.",
                          commands=("train", "evaluate", "predict"))
LABEL_COLUMN = Option("label_column", str, "label", "Column with the label.", commands=("train", "evaluate"))
PAIR = Option("pair", list[str] | None, None, "Second text of a pair, once per text.", commands=("predict",),
              stored=None)
LONG_TEXT = ("auto", "windows", "truncate")
LONG_TEXT_OPTION = Option(
    "long_text", str, "auto", "Classification: texts longer than --max-length are read whole in overlapping windows "
    "(each with the text's label; a text's probabilities are its windows' mean) or cut (truncate). auto: windows "
    "when more than 3% of the training texts are long. Stored with the checkpoint.", stored="info",
    sweep="long-texts", choices=LONG_TEXT)
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


def cut(encoded: "Encoded") -> "Encoded":
    """Each document's first window alone: its rows cut to the window, as --long-text truncate reads them."""
    from tunelab.collate import Encoded

    if encoded.documents is None:
        return encoded
    keep = first_rows(encoded.documents)
    labels = [encoded.labels[i] for i in keep] if encoded.labels is not None else None
    long = dataclasses.replace(encoded.long, mode="truncate") if encoded.long is not None else None
    return Encoded({name: [values[i] for i in keep] for name, values in encoded.features.items()}, labels, long=long)


def encode(tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int,
           labels: Sequence | None = None, stride: int = 0, windows: bool = False) -> "Encoded":
    """Tokenize rows (pairs produce token_type_ids) with the fast tokenizer, in batches of 1,000.

    Rows longer than `max_length` pieces are counted (`Encoded.long`) and cut, or with `windows` split into
    windows sharing `stride` pieces, each with its document's label (`Encoded.documents` says whose).
    """
    from tunelab.collate import MODEL_INPUTS, Encoded

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


def encode_frame(tokenizer, frame: "pd.DataFrame", max_length: int, stride: int = 0,
                 windows: bool = False) -> "Encoded":
    """A frame's `text` (and `text_pair`) column encoded, with its `label` column when it has one."""
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
    labels = frame["label"].tolist() if "label" in frame else None
    return encode(tokenizer, frame["text"].astype(str).tolist(), pairs, max_length, labels, stride, windows)


# ---------------------------------------------------------------- inputs: a text, or a text pair


def text_items(inputs, pairs=None) -> list[dict]:
    """Inputs as {"text"[, "text_pair"]} items: a string, a list of strings (with a list of pair texts),
    or items already."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(pairs, str):
        pairs = [pairs]
    inputs = list(inputs)
    if pairs is not None and len(pairs) != len(inputs):
        raise TunelabError(f"{len(inputs)} texts but {len(pairs)} pair texts; give one pair text per text")
    items = [dict(x) if isinstance(x, dict) else {"text": x} for x in inputs]
    for i, item in enumerate(items):
        if pairs is not None:
            item["text_pair"] = pairs[i]
        for value in item.values():
            if not isinstance(value, str) or not value.strip():
                raise TunelabError(f"input {i + 1} is empty; give non-empty texts")
    return items


class TextInputs:
    """How tasks that read a text or a text pair per input take them from the command line, files and
    requests."""

    inputs = (PAIR,)
    item_noun = "texts"

    def option_problems(self, values: dict) -> list[str]:
        pair = TEXT_PAIR_COLUMN.value(values)
        return ["--text-pair-column must differ from --text-column"] if pair and pair == TEXT_COLUMN.value(values) \
            else []

    def export_items(self) -> list[dict]:
        return text_items([self.example, self.example.split()[0]])

    def items_from_arguments(self, arguments: list[str], given: dict) -> list[dict]:
        pairs = given.get("pair") or None
        if pairs and len(pairs) != len(arguments):
            raise TunelabError(f"{len(arguments)} texts but {len(pairs)} --pair values; give one --pair per text")
        return text_items(arguments, pairs)

    def items_from_lines(self, lines: list[str]) -> list[dict]:
        """One text a line; TAB-separated lines are pairs."""
        split = [line.split("\t", 1) for line in lines]
        if all(len(parts) == 2 for parts in split):
            return text_items([p[0] for p in split], [p[1] for p in split])
        return text_items(lines)

    def items_from_frame(self, frame: "pd.DataFrame", options: dict, where: str) -> list[dict]:
        text, pair = TEXT_COLUMN.value(options), TEXT_PAIR_COLUMN.value(options)
        missing = [c for c in (text, pair) if c and c not in frame.columns]
        if missing:
            raise TunelabError(f"column '{missing[0]}' not found in {where}; columns found: {', '.join(frame.columns)} "
                               "(set --text-column / --text-pair-column)")
        return text_items(cells(frame, text), cells(frame, pair) if pair else None)

    def request_items(self, body: dict) -> list[dict]:
        from tunelab.serve.limits import RequestError, strings

        texts = strings(body, "texts") if body.get("texts") is not None else None
        pairs = strings(body, "text_pairs") if body.get("text_pairs") is not None else None
        if texts is None and body.get("text") is not None:
            texts = [strings(body, "text", single=True)]
        if pairs is None and body.get("text_pair"):
            pairs = [strings(body, "text_pair", single=True)]
        if not texts:
            raise RequestError(422, "give 'texts' (a list) or 'text' (a string) with at least one text")
        if pairs is not None and len(pairs) != len(texts):
            raise RequestError(422, f"{len(texts)} texts but {len(pairs)} text_pairs; give one pair text per text")
        return [{"text": t, **({"text_pair": pairs[i]} if pairs else {})} for i, t in enumerate(texts)]

    def item_texts(self, item: dict) -> list[tuple[str, str, bool]]:
        return [("text", value, False) for value in item.values()]


def cells(frame: "pd.DataFrame", column: str) -> list[str]:
    # A null (JSON null, parquet None) becomes "", which prediction refuses, not the text "None".
    return frame[column].where(frame[column].notna(), "").astype(str).tolist()


def render_rows(rows: list[dict], output_format: str, columns: list[str], probabilities: list[tuple[str, str]],
                label, score=None) -> str:
    """Predictions for texts (and pairs) as JSON lines, CSV (`columns`, then one column per label's
    probability) or a table (`label`, `score` and the text, cut to 100 characters)."""
    import csv
    import io
    import json

    pairs = any("text_pair" in r for r in rows)
    if output_format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["text"] + (["text_pair"] if pairs else []) + columns + [h for h, _ in probabilities])
        for row in rows:
            values = [row[c] if not isinstance(row[c], float) else f"{row[c]:.6f}" for c in columns]
            values = [",".join(v) if isinstance(v, list) else v for v in values]
            writer.writerow([row["text"]] + ([row["text_pair"]] if pairs else []) + values
                            + [f"{row['probabilities'][n]:.6f}" for _, n in probabilities])
        return buffer.getvalue()
    shown = [label(r) for r in rows]
    width = max(5, *(len(s) for s in shown))
    lines = [f"{columns[0]:<{width}}  " + ("" if score is None else f"{'score':>6}  ") + "text"]
    for row, first in zip(rows, shown):
        text = row["text"] if "text_pair" not in row else f"{row['text']} || {row['text_pair']}"
        text = text if len(text) <= 100 else text[:97] + "..."
        lines.append(f"{first:<{width}}  " + ("" if score is None else f"{score(row)}  ") + text)
    return "\n".join(lines) + "\n"
