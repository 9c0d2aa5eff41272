"""Predict with a saved checkpoint: the task of the checkpoint turns model outputs into predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tunelab.collate import Encoded, effective_max_length, prediction_batches
from tunelab.errors import TunelabError
from tunelab.modeling import check_checkpoint, load_tokenizer
from tunelab.tasks.base import Settings
from tunelab.tasks.classification import Prediction  # noqa: F401  (tunelab.predict.Prediction, as before)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
INFO_FILE = "tunelab.json"


def read_settings(path: Path, task) -> Settings:
    """How the checkpoint's data was read and cut (written by tunelab); the task's defaults otherwise."""
    info = path / INFO_FILE
    if info.exists():
        stored = json.loads(info.read_text(encoding="utf-8")).get("settings")
        if stored:
            return Settings(**stored)
    return Settings(task=task.name)


class Predictor:
    """A loaded checkpoint: its model, tokenizer, task and the settings it was trained with."""

    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64, runner=None,
                 task=None, settings: Settings | None = None, progress: bool = False):
        from tunelab.collate import Collator
        from tunelab.tasks import task_for_config

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task or task_for_config(model.config)
        self.settings = settings or Settings(task=self.task.name)
        self.max_length = effective_max_length(tokenizer, model.config, max_length or self.settings.max_length)
        self.batch_size = batch_size
        self.collator = Collator(tokenizer.pad_token_id or 0)
        # The ONNX Runtime fast path, when chosen; the torch model still supplies config and labels.
        self.runner = runner
        self.backend = "onnx" if runner is not None else "torch"
        self.progress = progress  # a bar on a terminal for runs over many rows (evaluate, predict --input)
        self.threshold: float | None = None  # --threshold: one decision threshold for every label (multi-label)

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "auto", **kwargs) -> "Predictor":
        """Load a checkpoint for prediction.

        backend "onnx" runs the int8 ONNX export (made on first use); "auto" uses it when
        `tunelab export` has written one, PyTorch otherwise; "torch" always uses PyTorch.
        """
        from transformers import AutoConfig

        from tunelab.tasks import task_for_config

        if backend not in BACKENDS:
            raise TunelabError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        path = check_checkpoint(path)
        try:
            config = AutoConfig.from_pretrained(path)
            task = task_for_config(config)
            task.check_predictable()  # before the slow load: language models are read elsewhere
            model = task.model_class().from_pretrained(path, config=config)
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
        return cls(model, load_tokenizer(str(path)), runner=runner, task=task, settings=read_settings(path, task),
                   **kwargs)

    @property
    def is_regression(self) -> bool:
        return self.model.config.num_labels == 1

    @property
    def label_names(self) -> list[str]:
        config = self.model.config
        return [config.id2label[i] for i in range(config.num_labels)]

    def run(self, encoded: Encoded) -> list[np.ndarray]:
        """Each encoded row's logits (per piece for token tasks, cut to the row's length), in row order;
        rows are batched by length so that little padding is computed."""
        # Batches straight from the sorted indices: a DataLoader's setup would cost more than a
        # one-sentence forward pass of the int8 model (the serving case).
        from tunelab.progress import bar

        out: list[np.ndarray] = [None] * len(encoded)  # type: ignore[list-item]
        lengths = encoded.lengths
        with bar(len(encoded), "predict", enabled=self.progress) as progress:
            for indices in prediction_batches(lengths, self.batch_size):
                logits = self.forward(self.collator([encoded[i] for i in indices]))
                for row, index in zip(logits, indices):
                    out[index] = row[: lengths[index]] if row.ndim == 2 else row
                progress.update(len(indices))
        return out

    @torch.inference_mode()
    def forward(self, batch: dict) -> np.ndarray:
        """Logits of one padded batch, with the chosen backend."""
        from tunelab.collate import model_inputs

        if self.runner:
            return self.runner(batch)
        return self.model(**model_inputs(batch)).logits.float().numpy()

    def logits(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> np.ndarray:
        """Raw logits in input order (sequence classification)."""
        return self.task.logits(self, texts, text_pairs)

    def predict(self, inputs, text_pairs=None) -> list:
        """The task's predictions for each input: a label and its probabilities (classification), or
        tags and entities (token classification)."""
        return self.task.predict(self, inputs, text_pairs)


def load(path: str | Path, threshold: float | None = None, **kwargs) -> Predictor:
    """Load a checkpoint (a run's best/ or last/, or the run folder itself) for prediction; `threshold`
    replaces a multi-label checkpoint's tuned decision thresholds."""
    if threshold is not None and not 0 < threshold < 1:
        raise TunelabError(f"--threshold must be between 0 and 1 (exclusive), got {threshold:g}")
    predictor = Predictor.from_pretrained(path, **kwargs)
    if threshold is not None and not predictor.task.thresholded:
        raise TunelabError(f"--threshold applies to multi-label checkpoints; this one is {predictor.task.name}: "
                           "drop --threshold")
    predictor.threshold = threshold
    return predictor
