"""The interface every task implements, and the pieces tasks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from tunelab.collate import Collator, Encoded
    from tunelab.data import DataSpec, Splits, TaskData


@dataclass
class Scores:
    """What an evaluation found: the metrics, and details for reports and plots."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # per_class, confusion_matrix, confusion_labels


@dataclass
class Settings:
    """How a checkpoint's data was read and cut; stored in the checkpoint so evaluate, predict and serve
    repeat it unless told otherwise."""

    task: str
    columns: dict[str, Any] = field(default_factory=dict)  # DataSpec column options
    max_length: int | None = None
    stride: int = 32
    long_text: str = "truncate"  # windows or truncate: how rows longer than max_length are read (--long-text)
    info: dict[str, Any] = field(default_factory=dict)  # what the task found (a tag scheme, ...)


class Task:
    """One kind of model. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    pipeline_tag: str = ""  # the transformers pipeline that loads its checkpoints
    architecture_suffix: str = ""  # how its checkpoints' architectures end ("ForSequenceClassification")
    metrics: tuple[str, ...] = ()  # what its evaluation reports (besides loss)
    endpoint: str = ""  # the serving route
    formats: tuple[str, ...] = ("table", "jsonl")  # what `tunelab predict --format` can write
    label_smoothing: bool = False  # whether --label-smoothing applies
    action: str = "Predict"  # the playground's button
    column_options: tuple[str, ...] = ()  # the DataSpec fields it reads (stored with the checkpoint)
    problem_type: str | None = None  # a head config's problem_type that marks this task's checkpoints
    example: str = "What a great film!"  # an input the model card's usage snippet shows
    thresholded: bool = False  # predictions are labels over a decision threshold (--threshold applies)
    packs: bool = False  # labeled per token, so training rows may be packed end to end (--batching packed)
    long_text: bool = False  # labeled per text, so long texts may be cut or read in windows (--long-text)
    reads_plain_text: bool = False  # .txt files and folders are documents (not CoNLL columns); --block-size applies
    causal: bool = False  # a token attends only to those before it (packed rows keep that)
    default_model: str = "minilm"  # what --model defaults to
    warmup_ratio: float = 0.1  # what --warmup-ratio defaults to
    lora_task_type: str | None = None  # peft's task type where --lora applies
    options: tuple[str, ...] = ()  # TrainConfig fields only this kind of task reads (stored in its settings)

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        """Whether --task auto should pick this task for the data."""
        return False

    def read(self, spec: "DataSpec", splits: "Splits") -> "TaskData":
        raise NotImplementedError

    def default_metric(self, data: "TaskData") -> str:
        raise NotImplementedError

    def eval_batch_size(self, model_config, max_length: int) -> int:
        """Rows per evaluation batch when --eval-batch-size is not given (a head's outputs are small)."""
        return 128

    def reported_metrics(self, data: "TaskData") -> tuple[str, ...]:
        """What its evaluations of this data report (besides loss): what --metric may name."""
        return tuple(self.metrics)

    def metric_hint(self, metric: str) -> str:
        """What would make --metric `metric` reported, when an option would (said with the refusal)."""
        return ""

    def check_options(self, data: "TaskData") -> None:
        """Refuse the task's options (in data.info) that do not fit the data."""

    def label_counts(self, data: "TaskData") -> dict[str, int]:
        """How often each label occurs in the training data (for the model card); empty when not countable."""
        return {}

    # ------------------------------------------------------------ model
    def model_class(self):
        raise NotImplementedError

    def model_kwargs(self, data: "TaskData") -> dict:
        """Config values of the head: number of labels, their names, the problem type."""
        raise NotImplementedError

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: "pd.DataFrame", settings: Settings, training: bool,
               label_names: list[str] | None = None) -> "Encoded":
        """Tokenized rows with their labels (training rows, or evaluation rows when not `training`)."""
        raise NotImplementedError

    def collator(self, tokenizer, data: "TaskData | None" = None) -> "Collator":
        from tunelab.collate import Collator

        return Collator(tokenizer.pad_token_id or 0)

    def prepare(self, encoded: "Encoded", batch_size: int) -> None:
        """Learn what the loss needs from the training rows before the first step (nothing by default)."""

    def loss(self, model, batch: dict, label_smoothing: float = 0.0) -> "torch.Tensor":
        from tunelab.collate import model_inputs

        return model(**model_inputs(batch)).loss

    # ------------------------------------------------------------ evaluation during training
    def class_weights(self, data: "TaskData", how: str) -> dict[str, float] | None:
        """Weigh the loss by label (--class-weights none, balanced or a JSON file); returns the weights used."""
        from tunelab.errors import TunelabError

        if how != "none":
            raise TunelabError(f"--class-weights applies to classification and multi-label data; drop it for "
                               f"{data.task}")
        return None

    def sampled(self, model, tokenizer, data: "TaskData", settings: Settings) -> tuple[dict, list[dict]]:
        """Metrics an evaluation gets by running the model on validation inputs (causal LM: generated answers),
        and the samples to show; nothing by default."""
        return {}, []

    def checkpoint_config(self, scores: Scores) -> dict:
        """Config attributes a checkpoint saved after this evaluation carries (multi-label: its thresholds)."""
        return {}

    def outputs(self, logits: "torch.Tensor", batch: dict, accelerator) -> tuple:
        """The tensors to gather across processes for scoring; the last is always the rows' indices."""
        raise NotImplementedError

    def score(self, gathered: list[tuple[np.ndarray, ...]], encoded: "Encoded", data: "TaskData") -> Scores:
        """Metrics from the gathered outputs of every batch (rows may come in any order)."""
        raise NotImplementedError

    # ------------------------------------------------------------ checkpoints
    def settings(self, spec: "DataSpec", max_length: int, stride: int, data: "TaskData") -> Settings:
        return Settings(task=self.name, columns={k: getattr(spec, k) for k in self.column_options},
                        max_length=max_length, stride=stride, info=dict(data.info))

    def logits_axes(self) -> dict[int, str]:
        """The dynamic axes of the logits in an ONNX export."""
        return {0: "batch"}

    # ------------------------------------------------------------ prediction
    def check_predictable(self) -> None:
        """Refuse, with what to use instead, when tunelab predict / evaluate / serve cannot read its checkpoints."""

    def predict(self, predictor, inputs: Sequence, pairs: Sequence[str] | None = None) -> list:
        raise NotImplementedError

    def evaluate(self, predictor, spec: "DataSpec", split: str):
        raise NotImplementedError

    def render(self, predictor, inputs, predictions: list, output_format: str) -> str:
        """`tunelab predict`'s output: one of `formats`, for the inputs (cli.predict.Inputs)."""
        raise NotImplementedError


def check_texts(texts: Sequence) -> None:
    from tunelab.errors import TunelabError

    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise TunelabError(f"input {i + 1} is empty; give non-empty texts")


def in_row_order(gathered: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Concatenate gathered (..., row index) batches and put them back in the data's row order."""
    columns = list(zip(*gathered))
    rows = np.concatenate(columns[-1])
    order = np.argsort(rows, kind="stable")
    return [np.concatenate(c)[order] for c in columns[:-1]]
