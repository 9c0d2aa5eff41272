"""Masked language modeling: adapt an encoder to a domain's unlabeled text before classifying with it.

Documents (a `text` column of any file, labeled or not; .txt files; a folder of them) are tokenized with
the model's special tokens, laid end to end and cut into blocks of `--block-size` pieces. Training batches
are masked as they are drawn (a new mask every epoch): `--mlm-probability` of the pieces, or of the words
with `--whole-word-mask`, become targets; of those 80% are replaced by the mask token, 10% by a random
token and 10% left as they are (BERT's recipe). Validation blocks are masked once, with a fixed seed, so
every evaluation scores the same targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Settings, TaskData
from tunelab.tasks.language import LINE_PER_DOCUMENT, LanguageModelTask, block_report, blocks, split_off_validation, \
    text_frame, tokenize_documents
from tunelab.tasks.texts import TEXT_COLUMN

if TYPE_CHECKING:
    import torch

    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

VALIDATION_SEED = 1234  # the validation mask: the same targets at every evaluation and in every run
MLM_PROBABILITY = Option("mlm_probability", float, 0.15, "Masked LM: the share of pieces (or words) masked as "
                         "targets.", stored="info")
WHOLE_WORD_MASK = Option("whole_word_mask", bool, False, "Masked LM: mask whole words (all their pieces or none).",
                         stored="info")


class MaskedLMTask(LanguageModelTask):
    name = "masked-lm"
    pipeline_tag = "fill-mask"
    architecture_suffix = "ForMaskedLM"
    endpoint = "/fill-mask"
    action = "Fill"
    example = "A gripping, beautifully acted [MASK]."
    summary = "masked-LM adaptation of an encoder to plain text"
    options = (TEXT_COLUMN, LINE_PER_DOCUMENT, MLM_PROBABILITY, WHOLE_WORD_MASK)
    inputs = ()
    use_instead = ("fine-tune a classifier from it: tunelab train --model CHECKPOINT --data labeled.csv, or fill "
                   "masks with transformers: pipeline(\"fill-mask\", model=CHECKPOINT)")

    def option_problems(self, values: dict) -> list[str]:
        given = MLM_PROBABILITY.value(values)
        return [] if 0 < given < 1 else [f"--mlm-probability must be between 0 and 1 (exclusive), got {given}"]

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        train, validation = split_off_validation(splits.train, splits, spec, lambda f, w: text_frame(f, spec, w))
        return TaskData(train, validation, self, splits.name, info={"format": "text"})

    def model_class(self):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        import torch

        from tunelab.collate import Encoded

        if tokenizer.mask_token_id is None:
            raise TunelabError("the tokenizer has no mask token, so it cannot be trained by masking; use an "
                               "encoder such as BERT, RoBERTa or MPNet for --task masked-lm")
        ids, words = tokenize_documents(tokenizer, frame["text"].tolist(), None, word_ids=True)
        rows = blocks(ids, settings.max_length)
        word_rows = blocks(words, settings.max_length)[:len(rows)]
        where = "training" if training else "validation"
        logger.info(block_report(where, len(ids), sum(map(len, ids)), rows, settings.max_length))
        features = {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows], "word_ids": word_rows}
        if training:
            return Encoded(features, None)  # masked batch by batch by the collator
        masker = self.collator(tokenizer, settings)
        generator = torch.Generator().manual_seed(VALIDATION_SEED)
        masked, labels = [], []
        for ids_row, words_row in zip(rows, word_rows):
            row_ids, row_labels = masker.mask(torch.tensor([ids_row]), torch.tensor([words_row]), generator)
            masked.append(row_ids[0].tolist())
            labels.append(row_labels[0].tolist())
        return Encoded({**features, "input_ids": masked}, labels)

    def collator(self, tokenizer, settings: Settings):
        return MaskingCollator(tokenizer.pad_token_id or 0, tokenizer.mask_token_id, len(tokenizer),
                               tuple(tokenizer.all_special_ids), float(settings.option(MLM_PROBABILITY)),
                               bool(settings.option(WHOLE_WORD_MASK)))


@dataclass
class MaskingCollator:
    """Pad a batch, then mask the rows that carry no labels yet (training rows; validation rows were
    masked once when encoded)."""

    pad_token_id: int
    mask_token_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    probability: float = 0.15
    whole_word: bool = False

    def __call__(self, rows: list[dict]) -> dict[str, "torch.Tensor"]:
        import torch

        from tunelab.collate import IGNORE, Collator

        batch = Collator(self.pad_token_id, skip=("word_ids",))(rows)
        if "labels" in batch:
            return batch
        width = batch["input_ids"].shape[1]
        words = torch.tensor([r["word_ids"] + [-1] * (width - len(r["word_ids"])) for r in rows])
        batch["input_ids"], batch["labels"] = self.mask(batch["input_ids"], words, None)
        batch["labels"][batch["attention_mask"] == 0] = IGNORE
        return batch

    def mask(self, ids: "torch.Tensor", words: "torch.Tensor", generator: "torch.Generator | None"):
        """(masked ids, labels): the chosen targets keep their id as label, every other position -100."""
        import torch

        from tunelab.collate import IGNORE

        special = torch.isin(ids, torch.tensor(self.special_ids)) | (words < 0)
        if self.whole_word:
            # One draw per word; each piece takes its word's draw, so a word is a target whole or not at all.
            # Word numbers run across the whole corpus: draw for this batch's words only.
            present, word_of = torch.unique(words.clamp(min=0), return_inverse=True)
            chosen = torch.rand(len(present), generator=generator)[word_of] < self.probability
        else:
            chosen = torch.rand(ids.shape, generator=generator) < self.probability
        chosen &= ~special
        labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
        how = torch.rand(ids.shape, generator=generator)
        masked = ids.clone()
        masked[chosen & (how < 0.8)] = self.mask_token_id
        swap = chosen & (how >= 0.8) & (how < 0.9)
        masked[swap] = torch.randint(self.vocab_size, ids.shape, generator=generator)[swap]
        return masked, labels
