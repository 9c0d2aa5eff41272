"""Sequence classification: one label per text or text pair (single-label), or a score (regression)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.tasks.base import Scores, Settings, Task, check_texts, in_row_order

if TYPE_CHECKING:
    from tunelab.data import DataSpec, Splits, TaskData
    from tunelab.long_text import Lengths

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


@dataclass
class Evaluation:
    metrics: dict[str, float]
    rows: int
    label_names: list[str] | None
    per_class: dict
    confusion_matrix: list[list[int]]
    long: dict | None = None  # how many rows were longer than the window (long_text.Lengths.as_dict)

    @property
    def confusion_labels(self) -> list[str] | None:
        return self.label_names

    def as_dict(self) -> dict:
        return {"rows": self.rows, "metrics": self.metrics, "label_names": self.label_names,
                "per_class": self.per_class, "confusion_matrix": self.confusion_matrix, "long": self.long}


class ClassificationTask(Task):
    """Texts (or pairs) to one label; with numeric labels (or regression=True), to one score."""

    pipeline_tag = "text-classification"
    architecture_suffix = "ForSequenceClassification"
    metrics = CLASSIFICATION_METRICS + REGRESSION_METRICS
    endpoint = "/v1/classify"
    formats = ("table", "jsonl", "csv")
    column_options = ("text_column", "text_pair_column", "label_column")

    action = "Classify"
    long_text = True
    # No warm-up (the Trainer's default too): measured against 10% on the untuned-defaults tables, BENCHMARKS.md.
    warmup_ratio = 0.0

    def __init__(self, regression: bool = False):
        self.regression = regression
        self.name = "regression" if regression else "classification"
        self.label_smoothing = not regression

    # ------------------------------------------------------------ data
    def columns(self, spec: "DataSpec", splits: "Splits") -> list[tuple[str, str, str]]:
        if splits.builtin is not None:  # a built-in corpus names its own columns
            pair = splits.builtin.text_pair_column
            return [("--text-column", "text", "text")] + ([("--text-pair-column", pair, "text_pair")] if pair else []) \
                + [("--label-column", "label", "label")]
        wanted = [("--text-column", spec.text_column, "text")]
        if spec.text_pair_column:
            wanted.append(("--text-pair-column", spec.text_pair_column, "text_pair"))
        return wanted + [("--label-column", spec.label_column, "label")]

    def frame(self, frame: pd.DataFrame, wanted, where: str) -> pd.DataFrame:
        from tunelab.data import drop_blank, select_columns

        selected = select_columns(frame, wanted, where)
        inputs = [name for _, _, name in wanted if name != "label"]
        return drop_blank(selected, where, inputs, "label")

    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        return True

    def read(self, spec: "DataSpec", splits: "Splits") -> "TaskData":
        from tunelab.data import TaskData, limit_rows, split_validation

        wanted = self.columns(spec, splits)
        train = self.frame(splits.train, wanted, splits.train_where)
        validation = None  # split off below by fraction, once the labels are known
        if splits.validation is not None:
            validation = self.frame(splits.validation, wanted, splits.validation_where)
            train = limit_rows(train, spec.limit, spec.seed)
        # Label kind and set are decided over every split together.
        everything = train["label"] if validation is None else pd.concat([train["label"], validation["label"]])
        task = "regression" if self.regression else spec.task
        kind = label_kind(everything, task)
        train = train.assign(label=[canonical(v, kind) for v in train["label"]])
        if validation is not None:
            validation = validation.assign(label=[canonical(v, kind) for v in validation["label"]])
        if kind == "float":
            label_names, label_values = None, []
            if validation is None:
                train = limit_rows(train, spec.limit, spec.seed)
                train, validation = split_validation(train, spec)
            train = train.assign(label=train["label"].astype("float32"))
            validation = validation.assign(label=validation["label"].astype("float32"))
        else:
            values = sorted(set(train["label"]) | (set(validation["label"]) if validation is not None else set()))
            if len(values) < 2:
                raise TunelabError(
                    f"only one label found in column '{spec.label_column}' ('{values[0]}', {len(train)} rows); "
                    f"classification needs at least two: check --label-column, or pass --task regression for scores"
                )
            if validation is None:
                train = limit_rows(train, spec.limit, spec.seed)
                train, validation = split_validation(train, spec, stratify_by=train["label"])
            unseen = sorted(set(validation["label"]) - set(train["label"]), key=str)
            if unseen:
                counts = validation["label"].value_counts()
                listed = ", ".join(f"'{v}' ({counts[v]} rows)" for v in unseen[:5])
                more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
                if sum(spec.label_separator in str(v) for v in unseen) > len(unseen) / 2:
                    raise TunelabError(
                        f"validation labels {listed}{more} never appear in the training data, and they look like "
                        f"sets of labels separated by '{spec.label_separator}': use --task multi-label"
                    )
                raise TunelabError(
                    f"validation label {listed}{more} never appears in the training data; "
                    "remove those rows from the validation data or add training examples with that label"
                )
            ids = {value: i for i, value in enumerate(values)}
            train = train.assign(label=train["label"].map(ids).astype("int64"))
            validation = validation.assign(label=validation["label"].map(ids).astype("int64"))
            label_names = [str(v) for v in values]
            label_values = list(label_names)
        return TaskData(train=train.reset_index(drop=True), validation=validation.reset_index(drop=True),
                        label_names=label_names, has_pairs="text_pair" in train, name=splits.name,
                        label_values=label_values, task="regression" if kind == "float" else "classification")

    def label_counts(self, data: "TaskData") -> dict[str, int]:
        if data.is_regression:
            return {}
        counts = data.train["label"].value_counts()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(data.label_names)}

    def default_metric(self, data: "TaskData") -> str:
        return "pearson" if data.is_regression else "accuracy"

    def class_weights(self, data: "TaskData", how: str) -> dict[str, float] | None:
        """Cross-entropy weights: balanced gives class c the weight n / (classes x count of c)."""
        import torch

        self.loss_weights = None
        if how == "none":
            return None
        if data.is_regression:
            raise TunelabError("--class-weights weighs labels, but this data has numeric scores (regression); "
                               "drop --class-weights")
        names = data.label_names
        if how == "balanced":
            counts = np.bincount(data.train["label"].to_numpy(), minlength=len(names))
            weights = [len(data.train) / (len(names) * c) for c in counts]
        else:
            weights = weight_file(how, names)
        self.loss_weights = torch.tensor(weights, dtype=torch.float32)
        return dict(zip(names, map(float, weights)))

    # ------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self, data: "TaskData") -> dict:
        if data.label_names is None:
            return {"num_labels": 1, "problem_type": "regression"}
        names = data.label_names
        return {"num_labels": len(names), "problem_type": "single_label_classification",
                "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool, label_names=None):
        """Tokenized rows; documents longer than settings.max_length are cut or read in windows. On the
        training rows --long-text auto is resolved (and stored in `settings`) from how many are long."""
        from tunelab.collate import encode_frame
        from tunelab.long_text import report, resolve

        pairs = "text_pair" in frame
        mode = settings.long_text
        encoded = encode_frame(tokenizer, frame, settings.max_length, settings.stride,
                               windows=mode == "windows" or (mode == "auto" and not pairs))
        if mode == "auto":
            settings.long_text = mode = resolve(mode, encoded.long, pairs)
            encoded = encoded.cut() if mode == "truncate" else encoded
        report(encoded.long, "training rows" if training else "validation rows")
        return encoded

    def collator(self, tokenizer, data: "TaskData | None" = None):
        from tunelab.collate import Collator

        return Collator(tokenizer.pad_token_id or 0, regression=bool(data is not None and data.is_regression))

    def loss(self, model, batch: dict, label_smoothing: float = 0.0):
        """The model's own loss, or cross-entropy against smoothed labels (computed here: transformers'
        classification heads take no smoothing argument). Evaluation always reports the plain loss."""
        import torch

        from tunelab.collate import model_inputs

        inputs = model_inputs(batch)
        weights = getattr(self, "loss_weights", None)
        if not label_smoothing and weights is None:
            return model(**inputs).loss
        inputs.pop("labels")
        logits = model(**inputs).logits.float()
        if weights is not None:
            weights = weights.to(logits.device)
        return torch.nn.functional.cross_entropy(logits, batch["labels"], weight=weights,
                                                 label_smoothing=label_smoothing)

    # ------------------------------------------------------------ evaluation
    def outputs(self, logits, batch: dict, accelerator) -> tuple:
        from tunelab.collate import ROW_INDEX

        return accelerator.gather_for_metrics((logits.float(), batch["labels"], batch[ROW_INDEX]))

    def score(self, gathered, encoded, data: "TaskData") -> Scores:
        from tunelab.metrics import compute_metrics, report

        logits, labels = self.by_document(gathered, encoded)
        metrics = compute_metrics(logits, labels, data.num_labels)
        details = {} if data.is_regression else report(logits.argmax(-1), labels, data.label_names)
        if details:
            details["confusion_labels"] = data.label_names
        return Scores(metrics, details)

    def by_document(self, gathered, encoded) -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels per document, in row order: windows combined (`combine`) when rows are windows."""
        from tunelab.long_text import first_rows

        logits, labels = in_row_order(gathered)
        if encoded.documents is None:
            return logits, labels
        return self.combine(logits, encoded.documents), labels[first_rows(encoded.documents)]

    def combine(self, logits: np.ndarray, documents) -> np.ndarray:
        """A document's logits from its windows': the log of their mean probabilities (so that softmax gives
        that mean), or for regression their mean score."""
        from tunelab.long_text import window_mean

        if logits.shape[-1] == 1:
            return window_mean(logits, documents)
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return np.log(np.maximum(window_mean(exp / exp.sum(-1, keepdims=True), documents), 1e-12))

    # ------------------------------------------------------------ prediction
    def logits(self, predictor, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> np.ndarray:
        """Raw logits in input order (a long document's: from its windows when the checkpoint reads windows)."""
        return self.document_logits(predictor, texts, text_pairs)[0]

    def document_logits(self, predictor, texts: Sequence[str],
                        text_pairs: Sequence[str] | None = None) -> tuple[np.ndarray, "Lengths"]:
        """Logits in input order, and how many inputs were longer than the window (reported in the log)."""
        from tunelab.collate import encode
        from tunelab.long_text import Lengths, report

        texts = list(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise TunelabError(f"{len(texts)} texts but {len(text_pairs)} pair texts; give one pair text per text")
        check_texts(texts)
        if not texts:
            return np.zeros((0, predictor.model.config.num_labels), dtype=np.float32), Lengths(0, predictor.max_length)
        settings = predictor.settings
        windows = settings.long_text == "windows" and text_pairs is None
        encoded = encode(predictor.tokenizer, texts, text_pairs, predictor.max_length, stride=settings.stride,
                         windows=windows)
        report(encoded.long, "inputs")
        logits = np.stack(predictor.run(encoded))
        if windows:
            logits = self.combine(logits, encoded.documents)
        return logits, encoded.long

    def predict(self, predictor, inputs, pairs=None) -> list[Prediction]:
        """Label name, its probability and all probabilities, for each text (or pair)."""
        import torch

        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(pairs, str):
            pairs = [pairs]
        logits = self.logits(predictor, inputs, pairs)
        if predictor.model.config.num_labels == 1:
            return [Prediction(None, float(v[0]), {}) for v in logits]
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        names = predictor.label_names
        return [Prediction(names[int(p.argmax())], float(p.max()), {n: float(x) for n, x in zip(names, p)})
                for p in probabilities]

    def evaluate(self, predictor, spec: "DataSpec", split: str) -> Evaluation:
        """Run the checkpoint over the data's rows and score it."""
        from tunelab.data import Splits, limit_rows, read_split
        from tunelab.metrics import compute_metrics, report

        frame, where, builtin = read_split(spec, split)
        wanted = self.columns(spec, Splits("", frame, where, None, None, builtin))
        frame = limit_rows(self.frame(frame, wanted, where), spec.limit, spec.seed)
        pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
        logits, lengths = self.document_logits(predictor, frame["text"].astype(str).tolist(), pairs)
        num_labels = predictor.model.config.num_labels
        if num_labels == 1:
            try:
                labels = frame["label"].astype(float).to_numpy()
            except ValueError:
                raise TunelabError("this checkpoint predicts scores, but the labels are not numbers") from None
            return Evaluation(compute_metrics(logits, labels, 1), len(frame), None, {}, [], lengths.as_dict())
        labels = label_ids(predictor, frame["label"])
        details = report(logits.argmax(-1), labels, predictor.label_names)
        return Evaluation(compute_metrics(logits, labels, num_labels), len(frame), predictor.label_names, **details,
                          long=lengths.as_dict())


    def render(self, predictor, inputs, predictions, output_format: str) -> str:
        import csv
        import io
        import json

        pairs = inputs.pairs
        rows = []
        for i, (text, p) in enumerate(zip(inputs.items, predictions)):
            row = {"text": text}
            if pairs:
                row["text_pair"] = pairs[i]
            rows.append({**row, **p.as_dict()})
        if output_format == "jsonl":
            return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if output_format == "csv":
            buffer = io.StringIO()
            names = predictor.label_names if not predictor.is_regression else []
            fields = ["text"] + (["text_pair"] if pairs else []) + ["label", "score"] + [f"p_{n}" for n in names]
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(fields)
            for row in rows:
                writer.writerow([row["text"]] + ([row["text_pair"]] if pairs else []) + [row["label"], f"{row['score']:.6f}"]
                                + [f"{row['probabilities'][n]:.6f}" for n in names])
            return buffer.getvalue()
        width = max(5, *(len(str(r["label"])) for r in rows))
        lines = [f"{'label':<{width}}  {'score':>6}  text"]
        for row in rows:
            shown = row["text"] if not pairs else f"{row['text']} || {row['text_pair']}"
            shown = shown if len(shown) <= 100 else shown[:97] + "..."
            lines.append(f"{str(row['label']):<{width}}  {row['score']:>6.3f}  {shown}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- labels


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
    integral = not fractional.any()
    whole = numeric[~fractional]
    if task == "auto" and fractional.any() and fractional.mean() < 0.05 and whole.nunique() <= 20:
        # A few stray fractions among a handful of integer classes are typos more often than scores.
        rows = np.flatnonzero(fractional)
        shown = ", ".join(f"row {i + 1}: '{labels.iloc[i]}'" for i in rows[:3]) + (
            f" and {len(rows) - 3} more" if len(rows) > 3 else "")
        raise TunelabError(f"the labels are integer classes ({', '.join(str(int(v)) for v in sorted(whole.unique())[:8])}) "
                           f"except {len(rows)} rows ({shown}, counting training rows first); fix those rows, or pass --task regression if the "
                           "labels are scores (--task classification reads every value as a class name)")
    if task == "classification" or integral:
        return "int" if integral else "str"
    return "float"


def canonical(value, kind: str):
    if kind == "int":
        return int(float(str(value).strip()))
    if kind == "float":
        return float(str(value).strip())
    return str(value).strip()


def label_ids(predictor, raw_labels) -> np.ndarray:
    """Map the data's labels to the checkpoint's ids by name (or by the raw values it was trained on)."""
    config = predictor.model.config
    values = getattr(config, "tunelab_label_values", None) or predictor.label_names
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
