"""Evaluate a saved checkpoint on labeled data, read the way its training data was read and scored by the
same function that scored it during training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data import DataSpec
from tunelab.errors import collect


@dataclass
class Evaluation:
    """The figures of one evaluation, and the details the task reports beside them."""

    rows: int
    metrics: dict[str, float]
    details: dict = field(default_factory=dict)  # per_class, confusion_matrix, confusion_labels, long, ...

    @property
    def per_class(self) -> dict:
        return self.details.get("per_class") or {}

    @property
    def confusion_matrix(self) -> list | None:
        return self.details.get("confusion_matrix")

    @property
    def confusion_labels(self) -> list[str] | None:
        return self.details.get("confusion_labels")

    @property
    def long(self) -> dict | None:
        return self.details.get("long")

    def as_dict(self) -> dict:
        return {"rows": self.rows, "metrics": self.metrics, **self.details}


def spec_for(predictor, source: str, limit: int | None = None, **given) -> DataSpec:
    """A DataSpec for `source` with the columns the checkpoint was trained with, unless `given` says
    otherwise (None means: not given)."""
    chosen = {k: v for k, v in given.items() if v is not None}
    return DataSpec(source, limit=limit, **{**predictor.settings.columns, **chosen})


def evaluate_checkpoint(predictor, spec: DataSpec, split: str = "validation") -> Evaluation:
    """Run the checkpoint over the data's rows and score them as training scored its validation rows, with
    what the checkpoint stored of that evaluation's tuning (or the decision options given)."""
    from tunelab.data import read_split
    from tunelab.tasks import option_problems

    task = predictor.task
    collect(spec.problems() + option_problems(spec.options, task.name))
    data = task.read_labeled(spec, read_split(spec, split), predictor.checkpoint())
    settings = dataclasses.replace(predictor.settings, max_length=predictor.max_length,
                                   info=dict(predictor.settings.info))
    encoded = task.encode(predictor.tokenizer, data.validation, settings, training=False)
    scores = task.score(predictor.outputs(encoded), encoded, data,
                        task.decisions(predictor.model.config, {**settings.info, **predictor.options}))
    return Evaluation(len(data.validation), scores.metrics, scores.details)


def confusion_plot_path(checkpoint: str | Path, data: str, split: str) -> Path | None:
    """Where `tunelab evaluate` puts a confusion matrix when not told: the run's plots/ folder, when the
    checkpoint is in a tunelab run."""
    folder = Path(checkpoint)
    run = folder if (folder / "config.yaml").exists() else folder.parent
    if not (run / "config.yaml").exists():
        return None
    name = Path(data).name.split(".")[0] or "data"
    return run / "plots" / f"confusion_{name}_{split}.png"
