"""Multi-label classification: each text (or pair) has a set of labels, one sigmoid per label trained with
binary cross-entropy. Per-label decision thresholds are tuned on the validation data at every evaluation and
stored in the saved checkpoint's config (`label_thresholds`); prediction and evaluation use them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Checkpoint, Scores, TaskData, stacked
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.texts import LABEL_COLUMN, LONG_TEXT_OPTION, TEXT_COLUMN, TEXT_PAIR_COLUMN

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

BASE_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")
MULTI_LABEL_METRICS = BASE_METRICS + tuple(f"{m}_tuned" for m in BASE_METRICS)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
THRESHOLD_FLOOR = 0.1  # a label whose best F1 needs a lower threshold would be on for nearly every text
SHOWN = 5  # values a refusal lists before counting the rest

LABEL_SEPARATOR = Option("label_separator", str, ",", "Multi-label: what separates a row's labels in the label column.",
                         commands=("train", "evaluate"))
LABEL_COLUMNS = Option("label_columns", str | None, None, "Multi-label: columns that mark each label with 1 (and 0), "
                       "comma-separated, instead of one label column.", commands=("train", "evaluate"),
                       misplaced="--label-columns marks multi-label data; drop it or use --task multi-label, not "
                                 "{task}")
THRESHOLD = Option("threshold", float | None, None, "Multi-label: one decision threshold for every label, in (0, 1) "
                   "(default: the tuned ones stored in the checkpoint).", commands=("predict", "evaluate", "serve"),
                   stored=None)


def few(values, shown: int = SHOWN, quote: bool = True) -> str:
    """'a', 'b', 'c' and 12 more."""
    values = [f"'{v}'" if quote else str(v) for v in values]
    return ", ".join(values[:shown]) + (f" and {len(values) - shown} more" if len(values) > shown else "")


@dataclass
class LabelSet:
    """One input's labels (those at or above their threshold) and every label's probability."""

    labels: list[str]
    scores: dict[str, float]  # the chosen labels' probabilities
    probabilities: dict[str, float]

    def as_dict(self) -> dict:
        return {"labels": self.labels, "scores": self.scores, "probabilities": self.probabilities}


class MultiLabelTask(ClassificationTask):
    """Texts (or pairs) to a set of labels."""

    name = "multi-label"
    summary = "a set of labels per text: label lists, delimited labels, or 0/1 columns"
    metrics = MULTI_LABEL_METRICS
    problem_type = "multi_label_classification"
    formats = ("table", "jsonl", "csv")
    options = (TEXT_COLUMN, TEXT_PAIR_COLUMN, LABEL_COLUMN, LABEL_SEPARATOR, LABEL_COLUMNS, LONG_TEXT_OPTION,
               THRESHOLD)
    label_smoothing = False
    warmup_ratio = 0.0

    # ------------------------------------------------------------ data
    def columns(self, spec: "DataSpec", splits: "Splits") -> list[tuple[str, str, str]]:
        wanted = super().columns(spec, splits)
        if not LABEL_COLUMNS.value(spec.options):
            return wanted
        return wanted[:-1] + [("--label-columns", c, f"label:{c}") for c in label_column_names(spec)]

    def frame(self, frame: pd.DataFrame, wanted, where: str, spec: "DataSpec") -> pd.DataFrame:
        """The text columns and one `label` column holding each row's list of label names."""
        from tunelab.data import drop_blank, select_columns

        selected = select_columns(frame, wanted, where)
        flags = [name for _, _, name in wanted if name.startswith("label:")]
        inputs = [name for _, _, name in wanted if name != "label" and not name.startswith("label:")]
        if flags:
            sets = zero_one_sets(selected, flags, where)
            selected = selected.drop(columns=flags).assign(label=sets)
            return drop_blank(selected, where, inputs, None)
        selected = drop_blank(selected, where, inputs, None)
        separator = LABEL_SEPARATOR.value(spec.options)
        return selected.assign(label=parse_label_sets(selected["label"], separator, where))

    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        """Label lists, JSON lists, or strings that hold the separator in at least 1% of the rows."""
        options = spec.options
        if LABEL_COLUMNS.value(options):
            return True
        column = LABEL_COLUMN.value(options)
        if splits.builtin is not None or column not in splits.train.columns:
            return False
        values = splits.train[column].dropna()
        if values.empty:
            return False
        if values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            return True
        text = values.astype(str).str.strip()
        joined = text.str.contains(LABEL_SEPARATOR.value(options), regex=False) | text.str.startswith("[")
        return bool(joined.mean() >= 0.01)

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows, split_validation

        wanted = self.columns(spec, splits)
        train = self.frame(splits.train, wanted, splits.train_where, spec)
        validation = None
        if splits.validation is not None:
            validation = self.frame(splits.validation, wanted, splits.validation_where, spec)
        train = limit_rows(train, spec.limit, spec.seed)
        if validation is None:
            train, validation = split_validation(train, spec)
        names = label_order({label for labels in train["label"] for label in labels})
        if len(names) < 2:
            raise TunelabError(f"multi-label data needs at least two labels; found {few(names) or 'none'} in "
                               f"{splits.train_where}: check --label-column or --label-columns")
        unseen = sorted({label for labels in validation["label"] for label in labels} - set(names))
        if unseen:
            raise TunelabError(f"validation label {few(unseen)} never appears in the training data; remove it "
                               "from the validation data or add training examples with it")
        train = train.assign(label=[multi_hot(labels, names) for labels in train["label"]])
        validation = validation.assign(label=[multi_hot(labels, names) for labels in validation["label"]])
        return TaskData(train.reset_index(drop=True), validation.reset_index(drop=True), self, splits.name,
                        label_names=names, label_values=list(names))

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: Checkpoint) -> TaskData:
        from tunelab.data import limit_rows

        frame = self.frame(splits.train, self.columns(spec, splits), splits.train_where, spec)
        frame = limit_rows(frame, spec.limit, spec.seed)
        names = checkpoint.label_names
        unknown = sorted({label for labels in frame["label"] for label in labels} - set(names))
        if unknown:
            raise TunelabError(f"label {few(unknown)} is not one the checkpoint knows ({few(names)}); check "
                               "--label-column or evaluate on data with the same labels")
        frame = frame.assign(label=[multi_hot(labels, names) for labels in frame["label"]])
        return TaskData(frame.iloc[:0], frame, self, splits.name, label_names=names,
                        info=dict(checkpoint.settings.info))

    def label_counts(self, data: TaskData) -> dict[str, int]:
        counts = np.sum(np.array(data.train["label"].tolist()), axis=0)
        return {name: int(c) for name, c in zip(data.label_names, counts)}

    def default_metric(self, data: TaskData) -> str:
        # Checkpoints decide with their tuned thresholds, so best/ is picked by the F1 they give. At 0.5, early
        # evaluations often score 0 on every rare label, and the first of several zeros would stay best/.
        return "macro_f1_tuned"

    # ------------------------------------------------------------ model
    def model_kwargs(self, data: TaskData) -> dict:
        names = data.label_names
        return {"num_labels": len(names), "problem_type": self.problem_type,
                "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

    def class_weights(self, data: TaskData, how: str) -> dict[str, float] | None:
        """BCE pos_weight per label: balanced gives each label its negatives / positives."""
        import torch

        from tunelab.tasks.classification import weight_file

        self.loss_weights = None
        if how == "none":
            return None
        names = data.label_names
        if how == "balanced":
            positives = np.sum(np.array(data.train["label"].tolist()), axis=0)
            weights = [(len(data.train) - p) / p for p in positives]
        else:
            weights = weight_file(how, names)
        self.loss_weights = torch.tensor(weights, dtype=torch.float32)
        return dict(zip(names, map(float, weights)))

    def loss(self, model, batch: dict, label_smoothing: float = 0.0):
        """Binary cross-entropy with logits (the head's own for this problem type), with pos_weight when
        --class-weights gave one."""
        import torch

        from tunelab.collate import model_inputs

        weights = getattr(self, "loss_weights", None)
        if weights is None:
            return model(**model_inputs(batch)).loss
        logits = model(**model_inputs(batch, leave=self.label_keys)).logits.float()
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"],
                                                                   pos_weight=weights.to(logits.device))

    # ------------------------------------------------------------ evaluation
    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        """Metrics at 0.5 and at thresholds tuned on these rows (training), or at the checkpoint's stored ones
        or one given (evaluate)."""
        from tunelab.tasks.classification import long_details

        logits, labels = self.by_document(rows, encoded)
        probabilities, truth = sigmoid(logits), labels.astype(int)
        if decisions is None:
            scores = score_sets(probabilities, truth, data.label_names)
        else:
            scores = score_at(probabilities, truth, data.label_names, decisions["thresholds"], decisions["suffix"])
        scores.details.update(long_details(encoded))
        return scores

    def decisions(self, config, options: dict) -> dict:
        given = THRESHOLD.value(options)
        names = [config.id2label[i] for i in range(config.num_labels)]
        return {"thresholds": self.thresholds(names, config, options),
                "suffix": "_tuned" if given is None else f"_at_{given:g}"}

    def combine(self, logits: np.ndarray, documents) -> np.ndarray:
        """A document's logits from its windows': the logit of their mean probability per label (so that the
        sigmoid gives that mean)."""
        from tunelab.tasks.texts import window_mean

        mean = np.clip(window_mean(sigmoid(logits), documents), 1e-7, 1 - 1e-7)
        return np.log(mean) - np.log1p(-mean)

    def checkpoint_config(self, scores: Scores) -> dict:
        return {"label_thresholds": scores.details["thresholds"]}

    def option_problems(self, values: dict) -> list[str]:
        empty = ["--label-separator must not be empty"] if not LABEL_SEPARATOR.value(values) else []
        return super().option_problems(values) + empty

    # ------------------------------------------------------------ prediction
    def check_given(self, options: dict) -> None:
        given = THRESHOLD.value(options)
        if given is not None and not 0 < given < 1:
            raise TunelabError(f"--threshold must be between 0 and 1 (exclusive), got {given:g}")

    def thresholds(self, names: list[str], config, options: dict) -> np.ndarray:
        """--threshold when given, else the tuned ones stored in the checkpoint, else 0.5."""
        given = THRESHOLD.value(options)
        if given is not None:
            return np.full(len(names), given)
        stored = getattr(config, "label_thresholds", None) or {}
        return np.array([float(stored.get(n, 0.5)) for n in names])

    def predict(self, predictor, inputs, pairs=None) -> list[LabelSet]:
        probabilities = sigmoid(self.logits(predictor, inputs, pairs))
        names = predictor.label_names
        cut = self.thresholds(names, predictor.model.config, predictor.options)
        out = []
        for p in probabilities:
            chosen = [i for i in np.argsort(-p) if p[i] >= cut[i]]
            out.append(LabelSet([names[i] for i in chosen], {names[i]: float(p[i]) for i in chosen},
                                {n: float(x) for n, x in zip(names, p)}))
        return out

    def render(self, items: list, predictions: list[LabelSet], output_format: str, predictor) -> str:
        from tunelab.tasks.texts import render_rows

        rows = [{**item, **p.as_dict()} for item, p in zip(items, predictions)]
        shown = {id(r): ", ".join(f"{label} {p.scores[label]:.2f}" for label in p.labels) or "(none)"
                 for r, p in zip(rows, predictions)}
        return render_rows(rows, output_format, ["labels"], [(f"p_{n}", n) for n in predictor.label_names],
                           label=lambda r: shown[id(r)])


# ---------------------------------------------------------------- labels


def label_column_names(spec: "DataSpec") -> list[str]:
    return [c.strip() for c in (LABEL_COLUMNS.value(spec.options) or "").split(",") if c.strip()]


def parse_label_sets(values: pd.Series, separator: str, where: str) -> list[list[str]]:
    """Each row's label names: from a list, a JSON list (`[]` is a row with none of the labels), or a string
    split on `separator`. An empty string is refused: it could mean no label or a missing one."""
    out, empty, inside = [], [], []
    for position, value in enumerate(values):
        if isinstance(value, (list, tuple, np.ndarray)):
            labels = [str(v).strip() for v in value]
        elif value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
            empty.append(position + 1)
            labels = []
        elif str(value).strip().startswith("["):
            text = str(value).strip()
            try:
                labels = [str(v).strip() for v in json.loads(text)]
            except (json.JSONDecodeError, TypeError):
                raise TunelabError(f"{where}, row {position + 1}: label {text[:60]!r} starts like a JSON list "
                                   "but is not one; write [\"a\", \"b\"] or a, b") from None
        else:
            labels = str(value).split(separator)
        inside += [(label, position + 1) for label in labels if separator in label]
        out.append(sorted({label.strip() for label in labels if label.strip()}))
    if empty:
        raise TunelabError(f"{where}: {len(empty)} rows have an empty label (rows {few(empty, quote=False)}); multi-label "
                           "data needs each row's labels: write [] for a row with none of the labels, or drop "
                           "the rows whose labels are missing")
    if inside:
        label, row = inside[0]
        raise TunelabError(f"{where}, row {row}: label '{label}' contains the separator '{separator}'; choose "
                           "another --label-separator")
    return out


def zero_one_sets(frame: pd.DataFrame, flags: list[str], where: str) -> list[list[str]]:
    """Label sets from several 0/1 columns (named by --label-columns)."""
    values = {}
    for flag in flags:
        column = pd.to_numeric(frame[flag], errors="coerce")
        bad = ~column.isin([0, 1])
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise TunelabError(f"--label-columns {flag[6:]} holds values other than 0 and 1 in {where} (row "
                               f"{row + 1}: '{frame[flag].iloc[row]}', {int(bad.sum())} rows in all); name only "
                               "columns that mark each label with 1 and its absence with 0")
        values[flag[6:]] = column.astype(int).to_numpy()
    names = list(values)
    return [[n for n in names if values[n][i]] for i in range(len(frame))]


def label_order(labels: set[str]) -> list[str]:
    """Numbers in numeric order, names alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def multi_hot(labels: list[str], names: list[str]) -> list[float]:
    index = {n: i for i, n in enumerate(names)}
    out = [0.0] * len(names)
    for label in labels:
        out[index[label]] = 1.0
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


# ---------------------------------------------------------------- metrics


def set_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 over labels, and subset accuracy (every label of the row right)."""
    from sklearn.metrics import f1_score

    return {"micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "subset_accuracy": float(np.mean(np.all(predicted == truth, axis=1)))}


def per_label(predicted: np.ndarray, truth: np.ndarray, names: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return {n: {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(s)}
            for n, p, r, f, s in zip(names, precision, recall, f1, support)}


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per label, the threshold on a 0.05 grid that maximizes its F1 on these rows (ties: the one nearest
    0.5), never below THRESHOLD_FLOOR; 0.5 for a label with no positive row."""
    from sklearn.metrics import f1_score

    chosen = np.full(truth.shape[1], 0.5)
    for j in range(truth.shape[1]):
        if truth[:, j].sum() == 0:
            continue
        best = None
        for t in sorted(THRESHOLD_GRID[THRESHOLD_GRID >= THRESHOLD_FLOOR], key=lambda t: abs(t - 0.5)):
            f1 = f1_score(truth[:, j], probabilities[:, j] >= t, zero_division=0)
            if best is None or f1 > best + 1e-12:
                best, chosen[j] = f1, t
    return chosen


def score_sets(probabilities: np.ndarray, truth: np.ndarray, names: list[str]) -> Scores:
    """Metrics at 0.5 and at thresholds tuned on these rows; the per-label report at the tuned ones."""
    thresholds = tune_thresholds(probabilities, truth)
    metrics = set_metrics(probabilities >= 0.5, truth)
    metrics.update({f"{k}_tuned": v for k, v in set_metrics(probabilities >= thresholds, truth).items()})
    return Scores(metrics, {"per_class": per_label(probabilities >= thresholds, truth, names),
                            "thresholds": dict(zip(names, map(float, thresholds)))})


def score_at(probabilities: np.ndarray, truth: np.ndarray, names: list[str], thresholds: np.ndarray,
             suffix: str) -> Scores:
    """Metrics at 0.5 and at `thresholds` (stored or given), named with `suffix`; the per-label report at them."""
    metrics = set_metrics(probabilities >= 0.5, truth)
    metrics.update({f"{k}{suffix}": v for k, v in set_metrics(probabilities >= thresholds, truth).items()})
    return Scores(metrics, {"per_class": per_label(probabilities >= thresholds, truth, names),
                            "thresholds": dict(zip(names, map(float, thresholds))), "label_names": names})
