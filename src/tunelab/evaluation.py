"""Evaluate a saved checkpoint on labeled data: metrics, per-class report, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunelab.data import DataSpec, read_eval_frame
from tunelab.errors import TunelabError
from tunelab.metrics import compute_metrics, report
from tunelab.predict import Predictor


@dataclass
class Evaluation:
    metrics: dict[str, float]
    rows: int
    label_names: list[str] | None
    per_class: dict = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rows": self.rows, "metrics": self.metrics, "label_names": self.label_names,
                "per_class": self.per_class, "confusion_matrix": self.confusion_matrix}


def label_ids(predictor: Predictor, raw_labels) -> np.ndarray:
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


def evaluate_checkpoint(predictor: Predictor, spec: DataSpec, split: str = "validation") -> Evaluation:
    """Run the checkpoint over the data's rows and score it."""
    frame = read_eval_frame(spec, split)
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
    logits = predictor.logits(frame["text"].astype(str).tolist(), pairs)
    num_labels = predictor.model.config.num_labels
    if predictor.is_regression:
        try:
            labels = frame["label"].astype(float).to_numpy()
        except ValueError:
            raise TunelabError("this checkpoint predicts scores, but the labels are not numbers") from None
        return Evaluation(compute_metrics(logits, labels, 1), len(frame), None)
    labels = label_ids(predictor, frame["label"])
    details = report(logits.argmax(-1), labels, predictor.label_names)
    return Evaluation(compute_metrics(logits, labels, num_labels), len(frame), predictor.label_names, **details)
