"""The interface every task implements, split by concern, and the pieces tasks share.

A task is one class that inherits the five small interfaces below. The core asks each part only what its
own concern needs: the data readers `Reading`, the loop `Encoding`, `Head` and `Scoring`, `predict`,
`evaluate` and `export` `Predicting`, the server `Serving`. None of them looks at a model's outputs, a
batch's labels or an input's fields: the task does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tunelab.errors import TunelabError
from tunelab.options import Option

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits


@dataclass
class Scores:
    """What an evaluation found: the metrics, and details for reports and plots."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # per_class, confusion_matrix, confusion_labels, ...


@dataclass
class Settings:
    """How a checkpoint's data was read and cut; stored in the checkpoint so evaluate, predict and serve
    repeat it unless told otherwise."""

    task: str
    columns: dict[str, Any] = field(default_factory=dict)  # the task's column options (Option.stored "columns")
    max_length: int | None = None
    stride: int = 32
    info: dict[str, Any] = field(default_factory=dict)  # its training switches and what the task found

    @classmethod
    def stored(cls, values: dict) -> "Settings":
        """Settings as a checkpoint's tunelab.json holds them (older ones kept --long-text at the top)."""
        values = dict(values)
        info = dict(values.pop("info", None) or {})
        if "long_text" in values:
            info.setdefault("long_text", values.pop("long_text"))
        known = {"task", "columns", "max_length", "stride"}
        return cls(**{k: v for k, v in values.items() if k in known}, info=info)

    def option(self, item: Option) -> Any:
        """A task option's value as stored (columns or info), else its default."""
        return item.value({**self.columns, **self.info})


@dataclass
class TaskData:
    """Train and validation frames in the task's own columns, the task that read them, and the label set."""

    train: "pd.DataFrame"
    validation: "pd.DataFrame"
    task: "Task"
    name: str = ""
    label_names: list[str] | None = None  # the head's outputs by name, where it has named ones
    label_values: list[str] = field(default_factory=list)  # the raw labels, in id order
    info: dict = field(default_factory=dict)  # what the task found and stores with the run (a tag scheme, ...)


# ---------------------------------------------------------------------------------------------------- reading


class Reading:
    """What the task reads: its options, which data it claims, and how rows become its columns and labels."""

    name: str = ""
    options: tuple[Option, ...] = ()  # every option it reads, declared once (shared ones by sharing the object)
    reads_plain_text: bool = False  # .txt files and folders are documents (not CoNLL columns); --block-size applies

    summary: str = ""  # what it trains, for --task's help

    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        """Whether --task auto should pick this task for the data."""
        return False

    def option_problems(self, values: dict) -> list[str]:
        """What is wrong with the values of its options, told before any file is read."""
        return []

    def source_reading(self, spec: "DataSpec") -> tuple[bool, bool]:
        """How a source is read when this task is named: (plain .txt documents, one document a line)."""
        return False, False

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        """Training and validation rows in the task's columns, labels as ids."""
        raise NotImplementedError

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: "Checkpoint") -> TaskData:
        """Labeled rows to evaluate a checkpoint on (its `validation`), labels as the checkpoint's ids."""
        raise NotImplementedError

    def check_options(self, data: TaskData) -> None:
        """Refuse the task's options (in data.info) that do not fit the data."""

    def label_counts(self, data: TaskData) -> dict[str, int]:
        """How often each label occurs in the training data (for the model card); empty when not countable."""
        return {}


# ---------------------------------------------------------------------------------------------------- batches


class Encoding:
    """How rows become model rows and batches."""

    packs: bool = False  # labeled per token, so training rows may be packed end to end (--batching packed)
    causal: bool = False  # a token attends only to those before it (packed rows keep that)
    max_length: int = 128  # what --max-length defaults to
    stride: int = 32  # what --stride defaults to
    batch_size: int = 32  # what --batch-size defaults to

    def encode(self, tokenizer, frame: "pd.DataFrame", settings: Settings, training: bool) -> "Encoded":
        """Tokenized rows with their labels (training rows, or evaluation rows when not `training`)."""
        raise NotImplementedError

    def collator(self, tokenizer, settings: Settings):
        """What pads a list of encoded rows into a batch."""
        from tunelab.collate import Collator

        return Collator(tokenizer.pad_token_id or 0)

    def prepare(self, encoded: "Encoded", batch_size: int) -> None:
        """Learn what the loss needs from the training rows before the first step (nothing by default)."""

    def before_training(self, model, encoded: list["Encoded"], collator, settings: Settings, accelerator) -> None:
        """Compute what the loss needs from the starting model, before the first step, and keep it with the
        rows (`encoded`: the training and validation rows); nothing by default. Preference tuning keeps each
        pair's reference log-probabilities, which never change, instead of computing them at every step."""

    def eval_batch_size(self, model_config, max_length: int) -> int:
        """Rows per evaluation batch when --eval-batch-size is not given (a head's outputs are small)."""
        return 128

    def settings(self, options: dict, max_length: int, stride: int, data: TaskData) -> Settings:
        """What a checkpoint stores of how its data was read: the column options and the switches."""
        columns = {o.name: o.value(options) for o in self.options if o.stored == "columns"}
        info = {o.name: o.value(options) for o in self.options if o.stored == "info"}
        return Settings(task=self.name, columns=columns, max_length=max_length, stride=stride,
                        info={**info, **data.info})

    def describe_reading(self, settings: Settings) -> str:
        """What the start-of-run line adds after the max length (how longer rows are read)."""
        return ""


# ---------------------------------------------------------------------------------------------------- the head


class Head:
    """The model the task trains: its class, its head's config, its loss, its outputs."""

    pipeline_tag: str = ""  # the transformers pipeline that loads its checkpoints ("" when there is none)
    architecture_suffix: str = ""  # how its checkpoints' architectures end ("ForSequenceClassification")
    problem_type: str | None = None  # a head config's problem_type that marks this task's checkpoints
    default_model: str = "minilm"  # what --model defaults to
    warmup_ratio: float = 0.1  # what --warmup-ratio defaults to
    lora_task_type: str | None = None  # peft's task type where --lora applies
    learning_rate: float | None = None  # what --learning-rate defaults to, where not the width-based default
    lora_learning_rate: float | None = None  # the same with --lora, where not LoRA's default
    label_smoothing: bool = False  # whether --label-smoothing applies
    data_noun: str = ""  # what its data is called in a refusal ("numeric labels (regression)"; default: NAME data)
    head_prefixes: tuple[str, ...] = ("classifier", "score", "pre_classifier")  # the new head's modules (head rate)
    label_keys: tuple[str, ...] = ("labels",)  # batch keys the loss reads, not model inputs at prediction
    extra_keys: tuple[str, ...] = ()  # batch keys its collator adds for the task alone, never model inputs
    output_names: tuple[str, ...] = ("logits",)  # the model outputs prediction reads (and ONNX exports)

    def model_class(self):
        raise NotImplementedError

    def model_kwargs(self, data: TaskData) -> dict:
        """Config values of the head: number of labels, their names, the problem type."""
        return {}

    def loss(self, model, batch: dict, label_smoothing: float = 0.0) -> "torch.Tensor":
        from tunelab.collate import model_inputs

        return model(**model_inputs(batch, leave=self.extra_keys)).loss

    def evaluation_forward(self, model, batch: dict):
        """The model's outputs (by name) for one labeled evaluation batch: what `evaluation_loss` and
        `outputs` read."""
        from tunelab.collate import model_inputs

        return model(**model_inputs(batch, leave=self.extra_keys))

    def class_weights(self, data: TaskData, how: str) -> dict[str, float] | None:
        """Weigh the loss by label (--class-weights none, balanced or a JSON file); returns the weights used."""
        if how != "none":
            raise TunelabError(f"--class-weights applies to classification and multi-label data; drop it for "
                               f"{self.name}")
        return None

    def input_axes(self) -> dict[int, str]:
        """The dynamic axes of every model input in an ONNX export."""
        return {0: "batch", 1: "sequence"}

    def output_axes(self) -> dict[str, dict[int, str]]:
        """The dynamic axes of each output in an ONNX export; a "sequence" axis is cut to each row's length."""
        return {"logits": {0: "batch"}}


# ---------------------------------------------------------------------------------------------------- scoring


class Scoring:
    """How model outputs become metrics, during training and for `tunelab evaluate` alike."""

    metrics: tuple[str, ...] = ()  # what its evaluation reports (besides loss)

    def default_metric(self, data: TaskData) -> str:
        raise NotImplementedError

    def reported_metrics(self, data: TaskData) -> tuple[str, ...]:
        """What its evaluations of this data report (besides loss): what --metric may name."""
        return tuple(self.metrics)

    def metric_hint(self, metric: str) -> str:
        """What would make --metric `metric` reported, when an option would (said with the refusal)."""
        return ""

    def evaluation_loss(self, outputs, batch: dict) -> "torch.Tensor | None":
        """The loss an evaluation batch reports (the model's own, computed from its labels, by default)."""
        return outputs.get("loss")

    def outputs(self, outputs, batch: dict) -> tuple["torch.Tensor", ...]:
        """Per-row tensors to keep from one evaluation batch (the model's outputs by name, and the batch):
        the core pads them alike across processes, gathers them and hands them to `score` in row order."""
        raise NotImplementedError

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        """Metrics from each encoded row's outputs. `decisions` holds what a checkpoint stored of what an
        earlier evaluation tuned (thresholds) and what the user gave; None: tune them on these rows."""
        raise NotImplementedError

    def checkpoint_config(self, scores: Scores) -> dict:
        """Config attributes a checkpoint saved after this evaluation carries (what it tuned)."""
        return {}

    def decisions(self, config, options: dict) -> dict | None:
        """What `score` decides with when a saved checkpoint is evaluated: what its config stored of an
        earlier evaluation's tuning, or what `options` (given to the command) say instead."""
        return None

    def sampled(self, model, tokenizer, data: TaskData, settings: Settings) -> tuple[dict, list[dict]]:
        """Metrics an evaluation gets by running the model on validation inputs (causal LM: generated answers),
        and the samples to show; nothing by default."""
        return {}, []


# ---------------------------------------------------------------------------------------------------- prediction


class Predicting:
    """What `tunelab predict` reads and prints, and what `Predictor.predict` returns."""

    formats: tuple[str, ...] = ("table", "jsonl")  # what `tunelab predict --format` can write
    inputs: tuple[Option, ...] = ()  # `tunelab predict` flags that give an input's parts (--pair, --context)
    example: Any = "What a great film!"  # an input the card's usage snippet and the ONNX export show
    use_instead: str = ""  # what to run instead of predict / evaluate / serve, for checkpoints they cannot read

    def check_given(self, options: dict) -> None:
        """Refuse values of the task's prediction options (given to predict, evaluate or serve) it cannot use."""

    def check_predictable(self) -> None:
        """Refuse, with what to use instead, when tunelab predict / evaluate / serve cannot read its checkpoints."""
        if self.use_instead:
            raise TunelabError(f"this checkpoint is a {self.name} model, which tunelab predict, evaluate and "
                               f"serve do not read; {self.use_instead}")

    def items_from_arguments(self, arguments: list[str], given: dict) -> list:
        """Inputs from the command line: the positional arguments and the `inputs` flags given."""
        raise NotImplementedError

    def items_from_lines(self, lines: list[str]) -> list:
        """Inputs from a text file or standard input, one a line."""
        raise NotImplementedError

    def items_from_frame(self, frame: "pd.DataFrame", options: dict, where: str) -> list:
        """Inputs from a table (--input FILE), its columns named by the task's column options."""
        raise NotImplementedError

    def export_items(self) -> list:
        """Two inputs of different lengths, for the ONNX export's example batch."""
        raise NotImplementedError

    def card_usage(self) -> list[str]:
        """The model card's Python lines that use the checkpoint with transformers alone."""
        return ["from transformers import pipeline", "",
                f'model = pipeline("{self.pipeline_tag}", model="PATH_OR_HUB_ID")', f'print(model("{self.example}"))']

    def card_command(self) -> str:
        """What the model card's `tunelab predict PATH_OR_HUB_ID ...` line is given."""
        return f'"{self.example}"'

    def encode_items(self, predictor, items: list) -> "Encoded":
        """Inputs as model rows, read as the checkpoint's training data was."""
        raise NotImplementedError

    def predict(self, predictor, items: list) -> list:
        """A prediction for each input (its `as_dict` is what JSON output and the server return)."""
        raise NotImplementedError

    def render(self, items: list, predictions: list, output_format: str, predictor) -> str:
        """`tunelab predict`'s output: one of `formats`."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------- serving


class Serving:
    """The route `tunelab serve` answers for the task, and the playground view that calls it."""

    endpoint: str = ""  # the serving route
    action: str = "Predict"  # the playground's button
    view: str = "classify"  # the playground's view: static/views/VIEW.js

    def request_items(self, body: dict) -> list:
        """A request's inputs (raise RequestError from tunelab.serve.limits for a malformed one)."""
        raise NotImplementedError

    request_help: str = ""  # what the route's JSON body holds, for /docs
    item_noun: str = "inputs"  # what a request's inputs are called in its refusals ("too many texts")

    def item_texts(self, item) -> list[tuple[str, str, bool]]:
        """The texts of an input that the server's size limits apply to: (what it is, the text, whether it
        is the input's long text, held to --max-context-chars)."""
        raise NotImplementedError

    def describe(self, predictor) -> dict:
        """What /v1/models says of the checkpoint beyond its task (its labels)."""
        return {}


class Task(Reading, Encoding, Head, Scoring, Predicting, Serving):
    """One kind of model: every concern of its head."""


@dataclass
class Checkpoint:
    """What reading labeled data for a saved checkpoint needs to know of it."""

    label_names: list[str]
    label_values: list[str]
    settings: Settings


# ---------------------------------------------------------------------------------------------------- shared


def check_texts(texts: Sequence) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise TunelabError(f"input {i + 1} is empty; give non-empty texts")


def stacked(rows: list[tuple], k: int = 0) -> np.ndarray:
    """Output `k` of every row, stacked (outputs of one shape)."""
    return np.stack([row[k] for row in rows]) if rows else np.zeros((0,))


def list_cell(value) -> list | None:
    """A cell holding a list (a Python list, a NumPy array from Parquet, or a JSON list written into a CSV
    cell) as a list; None when it holds no list."""
    import json

    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else None
