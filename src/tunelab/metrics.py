"""Metrics for classification and regression, computed with scikit-learn and scipy."""

from __future__ import annotations

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "mse")
LOWER_IS_BETTER = {"loss", "mse", "perplexity"}


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, F1 (binary for two labels, macro otherwise), macro F1 (every class weighs the same, so a
    model that always answers the majority class cannot look good) and Matthews correlation."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    average = "binary" if num_labels == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(f1_score(labels, predictions, average=average, zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, labels=list(range(num_labels)), average="macro",
                                   zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation, mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    predictions = np.asarray(predictions, dtype=float).reshape(-1)
    labels = np.asarray(labels, dtype=float).reshape(-1)
    constant = np.ptp(predictions) == 0 or np.ptp(labels) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(predictions, labels)[0]),
        "spearman": 0.0 if constant else float(spearmanr(predictions, labels)[0]),
        "mse": float(np.mean((predictions - labels) ** 2)),
    }


def compute_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Metrics from raw logits: argmax for classes, the single output for regression."""
    if num_labels == 1:
        return regression_metrics(logits.reshape(-1), labels)
    return classification_metrics(logits.argmax(-1), labels, num_labels)


def is_better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best


def report(predictions: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Per-class precision, recall, F1 and support, and the confusion matrix (rows: true, columns: predicted)."""
    from sklearn.metrics import classification_report, confusion_matrix

    ids = list(range(len(label_names)))
    per_class = classification_report(
        labels, predictions, labels=ids, target_names=label_names, output_dict=True, zero_division=0
    )
    return {
        "per_class": {name: per_class[name] for name in label_names},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
    }
