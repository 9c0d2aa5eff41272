"""Sequence classification: one label per text or text pair (single-label), or a score (regression)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.tasks.base import Checkpoint, Scores, Settings, Task, TaskData, stacked
from tunelab.tasks.texts import LABEL_COLUMN, LONG_TEXT, LONG_TEXT_OPTION, TEXT_COLUMN, TEXT_PAIR_COLUMN, TextInputs

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits
    from tunelab.tasks.texts import Lengths

logger = logging.getLogger(__name__)

CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "mse")


@dataclass
class Prediction:
    """One input's label and score; for regression, label is None and score the value."""

    label: str | None
    score: float
    probabilities: dict[str, float]

    def as_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "probabilities": self.probabilities}


class ClassificationTask(TextInputs, Task):
    """Texts (or pairs) to one label."""

    name = "classification"
    summary = "a label per text or text pair"
    request_help = ('JSON: {"texts": [...]} or {"text": "..."}, with "text_pairs" / "text_pair" for pairs; each '
                    "input's label and probabilities.")
    pipeline_tag = "text-classification"
    architecture_suffix = "ForSequenceClassification"
    metrics = CLASSIFICATION_METRICS
    endpoint = "/v1/classify"
    formats = ("table", "jsonl", "csv")
    options = (TEXT_COLUMN, TEXT_PAIR_COLUMN, LABEL_COLUMN, LONG_TEXT_OPTION)
    action = "Classify"
    label_smoothing = True
    # No warm-up (the Trainer's default too): measured against 10% on the untuned-defaults tables, BENCHMARKS.md.
    warmup_ratio = 0.0
    predictor_methods = ("logits",)
    kind = "str"  # how labels are read when the task is named; regression reads numbers

    # ------------------------------------------------------------ data
    def columns(self, spec: "DataSpec", splits: "Splits") -> list[tuple[str, str, str]]:
        """(option, column, name) of each column read; a built-in corpus names its own columns."""
        if splits.builtin is not None:
            pair = splits.builtin.text_pair_column
            return [("--text-column", "text", "text")] + ([("--text-pair-column", pair, "text_pair")] if pair else []) \
                + [("--label-column", "label", "label")]
        options = spec.options
        wanted = [(TEXT_COLUMN.flag, TEXT_COLUMN.value(options), "text")]
        if TEXT_PAIR_COLUMN.value(options):
            wanted.append((TEXT_PAIR_COLUMN.flag, TEXT_PAIR_COLUMN.value(options), "text_pair"))
        return wanted + [(LABEL_COLUMN.flag, LABEL_COLUMN.value(options), "label")]

    def frame(self, frame: pd.DataFrame, wanted, where: str, spec: "DataSpec") -> pd.DataFrame:
        from tunelab.data import drop_blank, select_columns

        selected = select_columns(frame, wanted, where)
        inputs = [name for _, _, name in wanted if name != "label"]
        return drop_blank(selected, where, inputs, "label")

    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        return True

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows

        wanted = self.columns(spec, splits)
        train = self.frame(splits.train, wanted, splits.train_where, spec)
        validation = None  # split off below, once the labels are known
        if splits.validation is not None:
            validation = self.frame(splits.validation, wanted, splits.validation_where, spec)
            train = limit_rows(train, spec.limit, spec.seed)
        # Label kind and set are decided over every split together.
        everything = train["label"] if validation is None else pd.concat([train["label"], validation["label"]])
        kind = self.label_kind(everything, spec.task)
        train = train.assign(label=[canonical(v, kind) for v in train["label"]])
        if validation is not None:
            validation = validation.assign(label=[canonical(v, kind) for v in validation["label"]])
        return self.labeled(train, validation, spec, splits)

    def label_kind(self, labels: pd.Series, named: str) -> str:
        return label_kind(labels, "classification" if named == self.name else named)

    def labeled(self, train: pd.DataFrame, validation: pd.DataFrame | None, spec: "DataSpec",
                splits: "Splits") -> TaskData:
        """Labels as ids over the label set of every split, the validation rows split off when there are none."""
        from tunelab.data import limit_rows, split_validation

        values = sorted(set(train["label"]) | (set(validation["label"]) if validation is not None else set()))
        if len(values) < 2:
            raise TunelabError(
                f"only one label found in column '{LABEL_COLUMN.value(spec.options)}' ('{values[0]}', {len(train)} "
                "rows); classification needs at least two: check --label-column, or pass --task regression for "
                "scores")
        if validation is None:
            train = limit_rows(train, spec.limit, spec.seed)
            train, validation = split_validation(train, spec, stratify_by=train["label"])
        check_unseen(validation["label"], set(train["label"]), spec)
        ids = {value: i for i, value in enumerate(values)}
        train = train.assign(label=train["label"].map(ids).astype("int64"))
        validation = validation.assign(label=validation["label"].map(ids).astype("int64"))
        names = [str(v) for v in values]
        return TaskData(train.reset_index(drop=True), validation.reset_index(drop=True), self, splits.name,
                        label_names=names, label_values=list(names))

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: Checkpoint) -> TaskData:
        from tunelab.data import limit_rows

        frame = self.frame(splits.train, self.columns(spec, splits), splits.train_where, spec)
        frame = limit_rows(frame, spec.limit, spec.seed)
        frame = frame.assign(label=self.label_ids(checkpoint, frame["label"]))
        return TaskData(frame.iloc[:0], frame, self, splits.name, label_names=checkpoint.label_names,
                        info=dict(checkpoint.settings.info))

    def label_ids(self, checkpoint: Checkpoint, raw_labels) -> np.ndarray:
        return label_ids(checkpoint, raw_labels)

    def label_counts(self, data: TaskData) -> dict[str, int]:
        counts = data.train["label"].value_counts()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(data.label_names)}

    # ------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self, data: TaskData) -> dict:
        names = data.label_names
        return {"num_labels": len(names), "problem_type": "single_label_classification",
                "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

    def class_weights(self, data: TaskData, how: str) -> dict[str, float] | None:
        """Cross-entropy weights: balanced gives class c the weight n / (classes x count of c)."""
        import torch

        self.loss_weights = None
        if how == "none":
            return None
        names = data.label_names
        if how == "balanced":
            counts = np.bincount(data.train["label"].to_numpy(), minlength=len(names))
            weights = [len(data.train) / (len(names) * c) for c in counts]
        else:
            weights = weight_file(how, names)
        self.loss_weights = torch.tensor(weights, dtype=torch.float32)
        return dict(zip(names, map(float, weights)))

    def loss(self, model, batch: dict, label_smoothing: float = 0.0):
        """The model's own loss, or cross-entropy against smoothed labels (computed here: transformers'
        classification heads take no smoothing argument). Evaluation always reports the plain loss."""
        import torch

        from tunelab.collate import model_inputs

        weights = getattr(self, "loss_weights", None)
        if not label_smoothing and weights is None:
            return model(**model_inputs(batch)).loss
        logits = model(**model_inputs(batch, leave=self.label_keys)).logits.float()
        if weights is not None:
            weights = weights.to(logits.device)
        return torch.nn.functional.cross_entropy(logits, batch["labels"], weight=weights,
                                                 label_smoothing=label_smoothing)

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        """Tokenized rows; documents longer than settings.max_length are cut or read in windows. On the
        training rows --long-text auto is resolved (and stored in `settings`) from how many are long."""
        from tunelab.tasks.texts import cut, encode_frame, report, resolve

        pairs = "text_pair" in frame
        mode = settings.option(LONG_TEXT_OPTION)
        if mode == "auto" and not training:  # a checkpoint that never resolved it (no tunelab.json) cuts
            mode = "truncate"
        encoded = encode_frame(tokenizer, frame, settings.max_length, settings.stride,
                               windows=mode == "windows" or (mode == "auto" and not pairs))
        if mode == "auto":
            settings.info["long_text"] = mode = resolve(mode, encoded.long, pairs)
            encoded = cut(encoded) if mode == "truncate" else encoded
        report(encoded.long, "training rows" if training else "validation rows")
        return encoded

    def describe_reading(self, settings: Settings) -> str:
        return f" ({settings.option(LONG_TEXT_OPTION)} for longer texts)"

    # ------------------------------------------------------------ evaluation
    def outputs(self, outputs, batch: dict) -> tuple:
        return outputs["logits"].float(), batch["labels"]

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        from tunelab.metrics import classification_metrics, report

        logits, labels = self.by_document(rows, encoded)
        metrics = classification_metrics(logits.argmax(-1), labels, len(data.label_names))
        details = report(logits.argmax(-1), labels, data.label_names)
        return Scores(metrics, {**details, "confusion_labels": data.label_names, **long_details(encoded)})

    def by_document(self, rows: list[tuple], encoded: "Encoded") -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels per document, in row order: windows combined (`combine`) when rows are windows."""
        from tunelab.tasks.texts import first_rows

        logits, labels = stacked(rows, 0), stacked(rows, 1)
        if encoded.documents is None:
            return logits, labels
        return self.combine(logits, encoded.documents), labels[first_rows(encoded.documents)]

    def combine(self, logits: np.ndarray, documents) -> np.ndarray:
        """A document's logits from its windows': the log of their mean probabilities (so that softmax gives
        that mean)."""
        from tunelab.tasks.texts import window_mean

        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return np.log(np.maximum(window_mean(exp / exp.sum(-1, keepdims=True), documents), 1e-12))

    def default_metric(self, data: TaskData) -> str:
        return "accuracy"

    # ------------------------------------------------------------ prediction
    def encode_items(self, predictor, items: list) -> "Encoded":
        """Texts (or pairs) as model rows; long texts in windows when the checkpoint reads windows."""
        from tunelab.tasks.texts import encode, report

        texts, pairs = [item["text"] for item in items], None
        if items and "text_pair" in items[0]:
            pairs = [item["text_pair"] for item in items]
        windows = predictor.settings.option(LONG_TEXT_OPTION) == "windows" and pairs is None
        encoded = encode(predictor.tokenizer, texts, pairs, predictor.max_length, stride=predictor.settings.stride,
                         windows=windows)
        report(encoded.long, "inputs")
        return encoded

    def logits(self, predictor, texts, text_pairs=None) -> np.ndarray:
        """Raw logits in input order (a long document's: from its windows when the checkpoint reads windows)."""
        from tunelab.tasks.texts import text_items

        groups = group_items(text_items(texts, text_pairs))
        out = np.zeros((sum(len(g) for g in groups.values()), predictor.model.config.num_labels), dtype=np.float32)
        for positions, items in ((list(g), list(g.values())) for g in groups.values() if g):
            encoded = self.encode_items(predictor, items)
            logits = np.stack([row["logits"] for row in predictor.run(encoded)])
            out[positions] = self.combine(logits, encoded.documents) if encoded.documents is not None else logits
        return out

    def predict(self, predictor, inputs, pairs=None) -> list[Prediction]:
        """Label name, its probability and all probabilities, for each text (or pair)."""
        import torch

        probabilities = torch.softmax(torch.from_numpy(self.logits(predictor, inputs, pairs)), dim=-1).numpy()
        names = predictor.label_names
        return [Prediction(names[int(p.argmax())], float(p.max()), {n: float(x) for n, x in zip(names, p)})
                for p in probabilities]

    def describe(self, predictor) -> dict:
        return {"labels": predictor.label_names}

    def render(self, items: list, predictions: list, output_format: str, predictor) -> str:
        from tunelab.tasks.texts import render_rows

        names = predictor.label_names
        rows = [{**item, **p.as_dict()} for item, p in zip(items, predictions)]
        columns = ["label", "score"]
        probabilities = [(f"p_{n}", n) for n in names]
        return render_rows(rows, output_format, columns, probabilities, label=lambda r: str(r["label"]),
                           score=lambda r: f"{r['score']:>6.3f}")


class RegressionTask(ClassificationTask):
    """Texts (or pairs) to a score: numeric labels that are not all whole numbers, or --task regression."""

    name = "regression"
    summary = "a score per text or pair: numeric labels with fractions"
    problem_type = "regression"
    data_noun = "numeric labels (regression)"
    metrics = REGRESSION_METRICS
    label_smoothing = False
    kind = "float"

    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        """Labels that are numbers, some of them fractions (decided over every split together)."""
        if splits.builtin is not None:
            return False
        column = LABEL_COLUMN.value(spec.options)
        frames = [f for f in (splits.train, splits.validation) if f is not None]
        if not all(column in f for f in frames):
            return False
        labels = pd.concat([f[column] for f in frames])
        labels = labels[~pd.isna(labels) & (labels.astype(str).str.strip() != "")]
        return not labels.empty and label_kind(labels, "auto") == "float"

    def label_kind(self, labels: pd.Series, named: str) -> str:
        return label_kind(labels, "regression")

    def labeled(self, train: pd.DataFrame, validation: pd.DataFrame | None, spec: "DataSpec",
                splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows, split_validation

        if validation is None:
            train = limit_rows(train, spec.limit, spec.seed)
            train, validation = split_validation(train, spec)
        train = train.assign(label=train["label"].astype("float32"))
        validation = validation.assign(label=validation["label"].astype("float32"))
        return TaskData(train.reset_index(drop=True), validation.reset_index(drop=True), self, splits.name)

    def label_ids(self, checkpoint: Checkpoint, raw_labels) -> np.ndarray:
        try:
            return pd.Series(raw_labels).astype(float).to_numpy(dtype=np.float32)
        except ValueError:
            raise TunelabError("this checkpoint predicts scores, but the labels are not numbers") from None

    def label_counts(self, data: TaskData) -> dict[str, int]:
        return {}

    def model_kwargs(self, data: TaskData) -> dict:
        return {"num_labels": 1, "problem_type": "regression"}

    def class_weights(self, data: TaskData, how: str) -> dict[str, float] | None:
        self.loss_weights = None
        if how != "none":
            raise TunelabError("--class-weights weighs labels, but this data has numeric scores (regression); "
                               "drop --class-weights")
        return None

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        from tunelab.metrics import regression_metrics

        logits, labels = self.by_document(rows, encoded)
        return Scores(regression_metrics(logits.reshape(-1), labels), long_details(encoded))

    def combine(self, logits: np.ndarray, documents) -> np.ndarray:
        """A document's score: the mean of its windows' scores."""
        from tunelab.tasks.texts import window_mean

        return window_mean(logits, documents)

    def default_metric(self, data: TaskData) -> str:
        return "pearson"

    def predict(self, predictor, inputs, pairs=None) -> list[Prediction]:
        return [Prediction(None, float(v[0]), {}) for v in self.logits(predictor, inputs, pairs)]

    def describe(self, predictor) -> dict:
        return {"labels": None}

    def render(self, items: list, predictions: list, output_format: str, predictor) -> str:
        from tunelab.tasks.texts import render_rows

        rows = [{**item, **p.as_dict()} for item, p in zip(items, predictions)]
        return render_rows(rows, output_format, ["label", "score"], [], label=lambda r: str(r["label"]),
                           score=lambda r: f"{r['score']:>6.3f}")


# ---------------------------------------------------------------- labels


def long_details(encoded: "Encoded") -> dict:
    """How many rows were longer than the window (for `tunelab evaluate`)."""
    return {"long": encoded.long.as_dict()} if encoded.long is not None else {}


def group_items(items: list[dict]) -> dict[bool, dict[int, dict]]:
    """Single texts and pairs apart (each runs as its own forward passes), by input position."""
    groups: dict[bool, dict[int, dict]] = {False: {}, True: {}}
    for position, item in enumerate(items):
        groups["text_pair" in item][position] = item
    return groups


def check_unseen(labels: pd.Series, known: set, spec: "DataSpec") -> None:
    """Refuse validation labels the training rows never show (and say when they look like label sets)."""
    unseen = sorted(set(labels) - known, key=str)
    if not unseen:
        return
    counts = labels.value_counts()
    listed = ", ".join(f"'{v}' ({counts[v]} rows)" for v in unseen[:5])
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    separator = spec.options.get("label_separator") or ","
    if sum(separator in str(v) for v in unseen) > len(unseen) / 2:
        raise TunelabError(
            f"validation labels {listed}{more} never appear in the training data, and they look like "
            f"sets of labels separated by '{separator}': use --task multi-label"
        )
    raise TunelabError(
        f"validation label {listed}{more} never appears in the training data; "
        "remove those rows from the validation data or add training examples with that label"
    )


def weight_file(path: str, names: list[str]) -> list[float]:
    """Per-label weights from a JSON object of label: weight (labels not named weigh 1)."""
    import json
    from pathlib import Path

    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TunelabError(f"--class-weights {path}: not a readable JSON file ({str(exc).splitlines()[0]}); "
                           "give none, balanced, or a JSON object of label: weight") from None
    if not isinstance(given, dict):
        raise TunelabError(f"--class-weights {path}: expected a JSON object of label: weight")
    unknown = [k for k in given if str(k) not in names]
    if unknown:
        shown = ", ".join(f"'{k}'" for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise TunelabError(f"--class-weights {path}: label {shown} is not in the data (labels: "
                           f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
    bad = [k for k, v in given.items() if not isinstance(v, (int, float)) or v <= 0]
    if bad:
        raise TunelabError(f"--class-weights {path}: the weight of '{bad[0]}' must be a positive number, "
                           f"got {given[bad[0]]!r}")
    return [float(given.get(n, 1.0)) for n in names]


def label_kind(labels: pd.Series, task: str) -> str:
    """'int', 'float' or 'str': how the raw labels should be read."""
    numeric = pd.to_numeric(labels.astype(str).str.strip(), errors="coerce")
    if numeric.isna().any() or labels.map(lambda v: isinstance(v, bool)).any():
        if task == "regression":
            example = labels[numeric.isna()].iloc[0] if numeric.isna().any() else labels.iloc[0]
            raise TunelabError(f"--task regression needs numeric labels, found '{example}'")
        return "str"
    if task == "regression":
        return "float"
    fractional = np.mod(numeric.to_numpy(dtype=float), 1) != 0
    whole = numeric[~fractional]
    if task == "auto" and fractional.any() and fractional.mean() < 0.05 and whole.nunique() <= 20:
        # A few stray fractions among a handful of integer classes are typos more often than scores.
        rows = np.flatnonzero(fractional)
        shown = ", ".join(f"row {i + 1}: '{labels.iloc[i]}'" for i in rows[:3]) + (
            f" and {len(rows) - 3} more" if len(rows) > 3 else "")
        raise TunelabError(f"the labels are integer classes ({', '.join(str(int(v)) for v in sorted(whole.unique())[:8])}) "
                           f"except {len(rows)} rows ({shown}, counting training rows first); fix those rows, or pass --task regression if the "
                           "labels are scores (--task classification reads every value as a class name)")
    if task == "classification" or not fractional.any():
        return "int" if not fractional.any() else "str"
    return "float"


def canonical(value, kind: str):
    if kind == "int":
        return int(float(str(value).strip()))
    if kind == "float":
        return float(str(value).strip())
    return str(value).strip()


def label_ids(checkpoint: Checkpoint, raw_labels) -> np.ndarray:
    """Map the data's labels to the checkpoint's ids by name (or by the raw values it was trained on)."""
    values = checkpoint.label_values or checkpoint.label_names
    index = {str(v): i for i, v in enumerate(values)}
    ids, unknown = [], {}
    for value in raw_labels:
        key = str(value).strip()
        if key not in index:
            # Integer labels written as floats by some tools ("1.0").
            try:
                key = str(int(float(key))) if float(key).is_integer() else key
            except ValueError:
                pass
        if key in index:
            ids.append(index[key])
        else:
            unknown[key] = unknown.get(key, 0) + 1
    if unknown:
        listed = ", ".join(f"'{k}' ({n} rows)" for k, n in sorted(unknown.items()))
        raise TunelabError(
            f"label {listed} is not one the checkpoint knows ({', '.join(values)}); check --label-column "
            "or evaluate on data with the same labels"
        )
    return np.array(ids)
