"""Predict with a saved checkpoint: the checkpoint's task encodes the inputs and turns model outputs into
predictions; this module loads the checkpoint and runs batches through the model (PyTorch or ONNX Runtime)."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tunelab.collate import Encoded, effective_max_length, model_inputs, prediction_batches
from tunelab.errors import TunelabError
from tunelab.modeling import check_checkpoint, load_tokenizer
from tunelab.tasks.base import Checkpoint, Settings

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
INFO_FILE = "tunelab.json"


def read_settings(path: Path, task) -> Settings:
    """How the checkpoint's data was read and cut (written by tunelab); the task's defaults otherwise."""
    info = path / INFO_FILE
    if info.exists():
        stored = json.loads(info.read_text(encoding="utf-8")).get("settings")
        if stored:
            return Settings.stored(stored)
    return Settings(task=task.name)


class Predictor:
    """A loaded checkpoint: its model, tokenizer, task, the settings it was trained with, and the task
    options given for prediction (`options`: a threshold, say)."""

    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 64, runner=None,
                 task=None, settings: Settings | None = None, progress: bool = False, options: dict | None = None,
                 precision: str = "auto"):
        from tunelab.precision import resolve
        from tunelab.tasks import task_for_config

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task or task_for_config(model.config)
        self.settings = settings or Settings(task=self.task.name)
        self.max_length = effective_max_length(tokenizer, model.config, max_length or self.settings.max_length)
        self.batch_size = batch_size
        self.collator = self.task.collator(tokenizer, self.settings)
        # The ONNX Runtime fast path, when chosen; the torch model still supplies config and labels.
        self.runner = runner
        self.backend = "onnx" if runner is not None else "torch"
        # The same rule as training: bf16 autocast where the device computes it natively (torch only; the
        # ONNX export runs in its own precision).
        self.precision = resolve(precision if runner is None else "fp32")
        self.progress = progress  # a bar on a terminal for runs over many rows (evaluate, predict --input)
        self.options = {k: v for k, v in (options or {}).items() if v is not None}

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "auto", **kwargs) -> "Predictor":
        """Load a checkpoint for prediction.

        backend "onnx" runs the int8 ONNX export (made on first use); "auto" uses it when
        `tunelab export` has written one, PyTorch otherwise; "torch" always uses PyTorch.
        """
        from transformers import AutoConfig

        from tunelab.precision import check_name
        from tunelab.tasks import task_for_config

        if backend not in BACKENDS:
            raise TunelabError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        problem = check_name(kwargs.get("precision", "auto"))  # before the slow load, as the backend
        if problem:
            raise TunelabError(problem)
        path = check_checkpoint(path)
        try:
            config = AutoConfig.from_pretrained(path)
            task = task_for_config(config)
            task.check_predictable()  # before the slow load: language models are read elsewhere
            model = task.model_class().from_pretrained(path, config=config)
        except (OSError, ValueError) as exc:
            raise TunelabError(f"could not load the model in {path}: {str(exc).splitlines()[0]}") from None
        return cls(model, load_tokenizer(str(path)), runner=onnx_runner(path, backend), task=task,
                   settings=read_settings(path, task), **kwargs)

    @property
    def label_names(self) -> list[str]:
        config = self.model.config
        return [config.id2label[i] for i in range(config.num_labels)]

    def checkpoint(self) -> Checkpoint:
        """What reading labeled data for this checkpoint needs: its labels and settings."""
        values = getattr(self.model.config, "tunelab_label_values", None) or self.label_names
        return Checkpoint(self.label_names, list(values), self.settings)

    def run(self, encoded: Encoded) -> list[dict[str, np.ndarray]]:
        """Each encoded row's outputs by name (an output per position cut to the row's length), in row order;
        rows are batched by length so that little padding is computed."""
        axes = self.task.output_axes()

        def rows(batch: dict, outputs: dict, indices: list[int]) -> list[dict]:
            widths = [len(encoded.features["input_ids"][i]) for i in indices]
            return [{name: v[k][:widths[k]] if axes[name].get(1) == "sequence" else v[k] for name, v in outputs.items()}
                    for k in range(len(indices))]

        return self.batched(encoded, rows)

    def outputs(self, encoded: Encoded) -> list[tuple]:
        """Each encoded (labeled) row's outputs as the task keeps them for scoring (`Task.outputs`), in row
        order: what training's evaluation gathers, computed by this checkpoint and backend."""
        def rows(batch: dict, outputs: dict, indices: list[int]) -> list[tuple]:
            kept = self.task.outputs({k: torch.from_numpy(v) for k, v in outputs.items()}, batch)
            return [tuple(v[k].numpy() for v in kept) for k in range(len(indices))]

        return self.batched(encoded, rows)

    def batched(self, encoded: Encoded, rows: Callable) -> list:
        """`rows(batch, outputs, indices)` of every length-sorted batch, put back in row order."""
        # Batches straight from the sorted indices: a DataLoader's setup would cost more than a
        # one-sentence forward pass of the int8 model (the serving case).
        from tunelab.progress import bar

        out: list = [None] * len(encoded)
        with bar(len(encoded), "predict", enabled=self.progress) as progress:
            for indices in prediction_batches(encoded.sizes, self.batch_size):
                batch = self.collator([encoded[i] for i in indices])
                for index, row in zip(indices, rows(batch, self.forward(batch), indices)):
                    out[index] = row
                progress.update(len(indices))
        return out

    @torch.inference_mode()
    def forward(self, batch: dict) -> dict[str, np.ndarray]:
        """The task's outputs of one padded batch, by name, with the chosen backend."""
        if self.runner:
            return self.runner(batch)
        with self.precision.autocast():
            outputs = self.model(**model_inputs(batch, leave=self.task.label_keys + self.task.extra_keys))
        return {name: outputs[name].float().numpy() for name in self.task.output_names}

    def predict(self, *inputs, **options) -> list:
        """The task's predictions for each input (see the task's `predict`: texts and pairs for
        classification, texts or word lists for token classification, questions and contexts, ...)."""
        return self.task.predict(self, *inputs, **options)

    def __getattr__(self, name: str):
        # A task's own prediction helpers (classification's `logits`) are reachable on its predictor.
        task = self.__dict__.get("task")
        if task is not None and name in getattr(task, "predictor_methods", ()):
            return functools.partial(getattr(task, name), self)
        raise AttributeError(f"'Predictor' object has no attribute '{name}'")


def onnx_runner(path: Path, backend: str):
    """The ONNX Runtime runner for `backend` (exported on first use for "onnx"), or None for PyTorch."""
    from tunelab.export import OnnxRunner, export_onnx, onnx_path

    if backend == "auto":
        backend = "onnx" if onnx_path(path).exists() else "torch"
    if backend != "onnx":
        return None
    exported = onnx_path(path)
    if not exported.exists():
        logger.info("no ONNX export in %s yet: exporting (once)", path)
        exported = export_onnx(path)
    return OnnxRunner(exported, threads=torch.get_num_threads())


def load(path: str | Path, **kwargs) -> Predictor:
    """Load a checkpoint (a run's best/ or last/, or the run folder itself) for prediction. Options of the
    checkpoint's task (a multi-label `threshold`, say) are refused for a task that does not read them."""
    from tunelab.tasks import registry, task_options

    known = {o.name for o in task_options()}
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in known}
    given = {k: v for k, v in given.items() if v is not None}
    predictor = Predictor.from_pretrained(path, **kwargs)
    for name in given:
        if name not in {o.name for o in predictor.task.options}:
            owners = [t.name for t in registry().values() if name in {o.name for o in t.options}]
            flag = "--" + name.replace("_", "-")
            raise TunelabError(f"{flag} applies to {' and '.join(owners)} checkpoints; this one is "
                               f"{predictor.task.name}: drop {flag}")
    predictor.task.check_given(given)
    predictor.options = given
    return predictor
