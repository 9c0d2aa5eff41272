"""Metrics on hand-made examples, with their exact values (the mutation run found these untested)."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.metrics import classification_metrics, compute_metrics, is_better, regression_metrics, report


def test_regression_metrics_exact():
    predictions = np.array([1.0, 2.0, 3.0, 5.0])
    labels = np.array([1.0, 3.0, 2.0, 4.0])
    metrics = regression_metrics(predictions, labels)
    # Pearson by hand: deviations (-1.75, -0.75, 0.25, 2.25) and (-1.5, 0.5, -0.5, 1.5): 5.5 / sqrt(8.75 * 5)
    assert metrics["pearson"] == pytest.approx(5.5 / np.sqrt(8.75 * 5))
    assert metrics["spearman"] == pytest.approx(0.8)  # ranks 1,2,3,4 against 1,3,2,4
    assert metrics["mse"] == pytest.approx((0 + 1 + 1 + 1) / 4)
    flat = regression_metrics(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert flat == {"pearson": 0.0, "spearman": 0.0, "mse": pytest.approx(2 / 3)}
    # Column vectors (a regression head's [n, 1] logits) are read as one value per row.
    assert compute_metrics(predictions.reshape(-1, 1), labels, 1) == pytest.approx(metrics)
    assert regression_metrics(predictions.reshape(-1, 1), labels.reshape(-1, 1)) == pytest.approx(metrics)
    # Labels one apart are not constant: [1, 2, 1, 2] against [1, 2, 2, 2] correlate by 1 / sqrt(3).
    narrow = regression_metrics(np.array([1.0, 2.0, 2.0, 2.0]), np.array([1.0, 2.0, 1.0, 2.0]))
    assert narrow["pearson"] == pytest.approx(1 / np.sqrt(3)) and narrow["spearman"] == pytest.approx(1 / np.sqrt(3))


def test_classification_metrics_binary_and_macro():
    labels = np.array([0, 0, 1, 1, 1])
    predictions = np.array([0, 1, 1, 1, 0])
    binary = classification_metrics(predictions, labels, 2)
    assert binary["accuracy"] == pytest.approx(3 / 5)
    assert binary["f1"] == pytest.approx(2 / 3)  # positive class: precision 2/3, recall 2/3
    assert binary["mcc"] == pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 2 * 2 * 3))
    assert binary["macro_f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 0: precision 1/2, recall 1/2
    majority = classification_metrics(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 0]), 2)
    assert majority["accuracy"] == 0.75 and majority["macro_f1"] == pytest.approx((0 + 6 / 7) / 2)
    three = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), 3)
    # Per class F1: 1, 2/3, 2/3 -> macro 7/9.
    assert three["f1"] == pytest.approx(7 / 9) and three["accuracy"] == pytest.approx(0.75)
    # A class no row has and no prediction names still counts in macro F1, as 0 (a label set of three with one
    # never seen cannot score like a label set of two); binary F1 with no positives at all is 0, not 1.
    absent = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    assert absent["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert classification_metrics(np.array([0, 0]), np.array([0, 0]), 2)["f1"] == 0.0
    logits = np.array([[2.0, 0.1], [0.0, 1.0], [0.3, 0.2]])
    assert compute_metrics(logits, np.array([0, 1, 1]), 2)["accuracy"] == pytest.approx(2 / 3)


def test_report_and_direction():
    details = report(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ["a", "b"])
    assert details["confusion_matrix"] == [[2, 1], [0, 1]]
    assert details["per_class"]["a"]["recall"] == pytest.approx(2 / 3) and details["per_class"]["b"]["support"] == 1
    # Every named class is reported, also one with no rows and no predictions (support 0, scores 0).
    unseen = report(np.array([0, 0]), np.array([0, 0]), ["a", "b"])
    assert unseen["confusion_matrix"] == [[2, 0], [0, 0]]
    assert unseen["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}
    assert is_better("accuracy", 0.8, 0.7) and not is_better("accuracy", 0.7, 0.7)
    assert is_better("loss", 0.2, 0.3) and is_better("mse", 0.1, 0.2) and not is_better("mse", 0.3, 0.2)
    assert not is_better("loss", 0.2, 0.2)  # a tie keeps the earlier checkpoint, whichever the direction
    assert is_better("f1", 0.0, None)
