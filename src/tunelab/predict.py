"""Predict label names and probabilities with a saved checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tunelab.collate import Collator, effective_max_length, encode, prediction_batches
from tunelab.errors import TunelabError
from tunelab.modeling import check_checkpoint, load_tokenizer

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")


@dataclass
class Prediction:
    """One input's label and score; for regression, label is None and score the value."""

    label: str | None
    score: float
    probabilities: dict[str, float]

    def as_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "probabilities": self.probabilities}


class Predictor:
    """A loaded checkpoint: its model, tokenizer and label names."""

    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64, runner=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = effective_max_length(tokenizer, model.config, max_length)
        self.batch_size = batch_size
        self.collator = Collator(tokenizer.pad_token_id or 0)
        # The ONNX Runtime fast path, when chosen; the torch model still supplies config and labels.
        self.runner = runner
        self.backend = "onnx" if runner is not None else "torch"

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "auto", **kwargs) -> "Predictor":
        """Load a checkpoint for prediction.

        backend "onnx" runs the int8 ONNX export (made on first use); "auto" uses it when
        `tunelab export` has written one, PyTorch otherwise; "torch" always uses PyTorch.
        """
        from transformers import AutoModelForSequenceClassification

        if backend not in BACKENDS:
            raise TunelabError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        path = check_checkpoint(path)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise TunelabError(f"could not load the model in {path}: {str(exc).splitlines()[0]}") from None
        runner = None
        if backend == "auto":
            from tunelab.export import onnx_path

            backend = "onnx" if onnx_path(path).exists() else "torch"
        if backend == "onnx":
            from tunelab.export import OnnxRunner, export_onnx, onnx_path

            exported = onnx_path(path)
            if not exported.exists():
                logger.info("no ONNX export in %s yet: exporting (once)", path)
                exported = export_onnx(path)
            runner = OnnxRunner(exported, threads=torch.get_num_threads())
        return cls(model, load_tokenizer(str(path)), runner=runner, **kwargs)

    @property
    def is_regression(self) -> bool:
        return self.model.config.num_labels == 1

    @property
    def label_names(self) -> list[str]:
        config = self.model.config
        return [config.id2label[i] for i in range(config.num_labels)]

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> np.ndarray:
        """Raw logits in input order; rows are batched by length so that little padding is computed."""
        texts = list(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise TunelabError(f"{len(texts)} texts but {len(text_pairs)} pair texts; give one pair text per text")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise TunelabError(f"input {i + 1} is empty; give non-empty texts")
        if not texts:
            return np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        encoded = encode(self.tokenizer, texts, text_pairs, self.max_length, via_datasets=False)
        # Batches straight from the sorted indices: a DataLoader's setup would cost more than a
        # one-sentence forward pass of the int8 model (the serving case).
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        for indices in prediction_batches(encoded.lengths, self.batch_size):
            out[indices] = self.forward(self.collator([encoded[i] for i in indices]))
        return out

    @torch.inference_mode()
    def forward(self, batch: dict) -> np.ndarray:
        """Logits of one padded batch, with the chosen backend."""
        return self.runner(batch) if self.runner else self.model(**batch).logits.float().numpy()

    def predict(self, texts: Sequence[str] | str, text_pairs: Sequence[str] | str | None = None) -> list[Prediction]:
        """Label name, its probability and all probabilities, for each text (or pair)."""
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(text_pairs, str):
            text_pairs = [text_pairs]
        logits = self.logits(texts, text_pairs)
        if self.is_regression:
            return [Prediction(None, float(v[0]), {}) for v in logits]
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        names = self.label_names
        return [
            Prediction(names[int(p.argmax())], float(p.max()), {n: float(x) for n, x in zip(names, p)})
            for p in probabilities
        ]


def load(path: str | Path, **kwargs) -> Predictor:
    """Load a checkpoint (a run's best/ or last/, or the run folder itself) for prediction."""
    return Predictor.from_pretrained(path, **kwargs)
