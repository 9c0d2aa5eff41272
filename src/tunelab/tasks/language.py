"""What the two language-model tasks share: reading unlabeled text, packing it into blocks, and scoring by
validation loss and perplexity.

Plain text is read as documents (a `text` column, .txt files, a folder of them); for training, documents are
tokenized, joined with the end-of-text token between them and cut into blocks of `--block-size` tokens, so no
position is padding and nothing is dropped (only the last block may be shorter).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Scores, Task, TaskData, stacked
from tunelab.tasks.texts import TEXT_COLUMN

if TYPE_CHECKING:
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

METRICS = ("perplexity",)
LINE_PER_DOCUMENT = Option("line_per_document", bool, False, "Language models, .txt files: each line is a document "
                           "(default: blocks separated by blank lines).")


def text_frame(frame: pd.DataFrame, spec: "DataSpec", where: str) -> pd.DataFrame:
    """The text column as a `text` frame, empty rows dropped (and counted)."""
    from tunelab.data import drop_blank, select_columns

    frame = select_columns(frame, [("--text-column", TEXT_COLUMN.value(spec.options), "text")], where)
    frame["text"] = frame["text"].map(lambda v: v if v is None else str(v))
    return drop_blank(frame, where, ["text"], None)


def split_off_validation(train: pd.DataFrame, splits: "Splits", spec: "DataSpec", normalize) -> tuple:
    """(train, validation) frames normalized by `normalize(frame, where)`: the source's validation data, or
    a seeded share of the training rows (whole documents or conversations, never cut across)."""
    from tunelab.data import limit_rows, split_validation

    train = limit_rows(normalize(train, splits.train_where), spec.limit, spec.seed)
    if splits.validation is not None:
        return train, normalize(splits.validation, splits.validation_where)
    if len(train) < 2:
        raise TunelabError(f"{splits.train_where} holds a single row; splitting off a validation set needs at least "
                           "two, or pass --validation FILE")
    return split_validation(train, spec)


def blocks(documents: Sequence[list[int]], block_size: int) -> list[list[int]]:
    """Token lists laid end to end and cut into blocks of `block_size`; only the last may be shorter
    (kept when it holds at least two tokens, the least a next-token or masked prediction needs)."""
    stream = [t for ids in documents for t in ids]
    out = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    if out and len(out[-1]) < 2:
        out.pop()
    return out


def tokenize_documents(tokenizer, texts: Sequence[str], separator: int | None, word_ids: bool = False):
    """Each document's token ids (the tokenizer's own special tokens included), followed by `separator`
    when given and not already last; with `word_ids`, each token's word number across all documents
    (-1 for special tokens), for whole-word masking."""
    ids_out, words_out, next_word = [], [], 0
    for start in range(0, len(texts), 1000):
        encoded = tokenizer(list(texts[start:start + 1000]), truncation=False, verbose=False)
        for i, ids in enumerate(encoded["input_ids"]):
            ids = list(ids)
            words = []
            if word_ids:
                local = encoded.word_ids(i)
                words = [-1 if w is None else next_word + w for w in local]
                next_word += 1 + max((w for w in local if w is not None), default=-1)
            if separator is not None and (not ids or ids[-1] != separator):
                ids.append(separator)
                words.append(-1)
            ids_out.append(ids)
            words_out.append(words)
    return ids_out, words_out


LOGITS_BUDGET = 512 * 2**20  # bytes of fp32 vocabulary logits in one evaluation batch


class LanguageModelTask(Task):
    """The shared part of causal and masked language modeling: plain-text reading and perplexity."""

    metrics = METRICS
    reads_plain_text = True
    options = (TEXT_COLUMN, LINE_PER_DOCUMENT)

    def source_reading(self, spec: "DataSpec") -> tuple[bool, bool]:
        return True, bool(LINE_PER_DOCUMENT.value(spec.options))

    def default_metric(self, data: TaskData) -> str:
        return "loss"

    def eval_batch_size(self, model_config, max_length: int) -> int:
        """Evaluation holds a batch's logits over the whole vocabulary (and the loss a copy of them): 128 rows of
        256 tokens of SmolLM2's 49,152 would be 6 GiB each, so rows are limited to what keeps one under 512 MiB."""
        vocab = getattr(model_config, "vocab_size", None) or 1
        return max(1, min(128, LOGITS_BUDGET // (max_length * vocab * 4)))

    def labeled(self, labels: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Which positions' logits the loss reads (batch x length: those with a label) and their targets."""
        from tunelab.collate import IGNORE

        keep = labels != IGNORE
        return keep, labels[keep]

    def labeled_logits(self, model, batch: dict) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """The logits at the positions the loss reads (positions x vocabulary), their target tokens, and each
        position's row. The vocabulary projection runs on those positions alone: SFT reads only the answers,
        masked LM 15% of the positions, and the projection is up to a fifth of a small model's FLOPs."""
        from tunelab.collate import model_inputs

        keep, targets = self.labeled(batch["labels"])
        with projection_at(model, keep) as selected:
            logits = model(**model_inputs(batch, leave=self.extra_keys + self.label_keys))["logits"]
        if not selected:  # a head that does not see one hidden state per position: the full logits, then cut
            logits = logits[keep]
        return logits, targets, keep.nonzero()[:, 0]

    def loss(self, model, batch: dict, label_smoothing: float = 0.0) -> "torch.Tensor":
        """The mean cross-entropy over the labeled tokens, as the model's own loss computes it."""
        import torch

        logits, targets, _ = self.labeled_logits(model, batch)
        if not len(targets):
            return logits.sum() * 0.0  # a batch with no labeled token teaches nothing (the model's loss: nan)
        return torch.nn.functional.cross_entropy(logits.float(), targets)

    def evaluation_forward(self, model, batch: dict) -> dict:
        """Each row's summed negative log-likelihood and labeled-token count, and the batch's mean loss."""
        import torch

        logits, targets, rows = self.labeled_logits(model, batch)
        tokens = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none").double()
        nll = torch.zeros(len(batch["labels"]), dtype=torch.float64, device=tokens.device).index_add_(0, rows, tokens)
        counts = torch.bincount(rows, minlength=len(batch["labels"]))
        return {"loss": tokens.mean() if len(tokens) else None, "nll": nll, "tokens": counts}

    def outputs(self, outputs, batch: dict) -> tuple:
        """Each row's summed negative log-likelihood over its labeled tokens, and how many there are."""
        import torch

        from tunelab.collate import IGNORE

        if "nll" in outputs:  # computed at the labeled positions alone (evaluation_forward)
            return outputs["nll"], outputs["tokens"]
        logits, labels = self.aligned(outputs["logits"], batch["labels"])
        nll = torch.zeros(len(labels), dtype=torch.float64, device=labels.device)
        for i in range(len(labels)):  # one row at a time: a batch's log-probabilities would be B x T x vocab
            keep = labels[i] != IGNORE
            if keep.any():
                nll[i] = torch.nn.functional.cross_entropy(logits[i][keep].float(), labels[i][keep],
                                                           reduction="sum").double()
        return nll, (labels != IGNORE).sum(dim=1)

    def aligned(self, logits, labels):
        """Logits and the labels they predict (causal models predict the next token)."""
        return logits, labels

    def score(self, rows: list[tuple], encoded, data: TaskData, decisions: dict | None = None) -> Scores:
        nll, counts = stacked(rows, 0), stacked(rows, 1)
        tokens = int(counts.sum())
        loss = float(nll.sum() / max(tokens, 1))
        return Scores({"loss": loss, "perplexity": float(math.exp(min(loss, 700)))}, {"tokens": tokens})


@contextlib.contextmanager
def projection_at(model, keep: "torch.Tensor"):
    """While open, the model's output projection (its vocabulary head) computes only the positions `keep`
    marks (batch x length), in order: its logits come out positions x vocabulary. Yields a dict that is
    true once it did (a model whose head saw other shapes computed everything)."""
    from accelerate.utils import extract_model_from_parallel

    head = extract_model_from_parallel(model).get_output_embeddings()
    selected: dict = {}

    def select(module, args):
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != keep.shape:
            return None
        selected["done"] = True
        return (hidden[keep], *args[1:])

    handle = head.register_forward_pre_hook(select) if head is not None else None
    try:
        yield selected
    finally:
        if handle is not None:
            handle.remove()


def block_report(kind: str, documents: int, tokens: int, rows: list[list[int]], block_size: int) -> str:
    return (f"{kind}: {documents:,} documents, {tokens:,} tokens in {len(rows):,} blocks of {block_size}"
            + (f" (the last holds {len(rows[-1])})" if rows and len(rows[-1]) != block_size else ""))

