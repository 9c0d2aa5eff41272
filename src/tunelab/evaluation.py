"""Evaluate a saved checkpoint on labeled data, read the way its training data was read."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from tunelab.data import DataSpec


def spec_for(predictor, source: str, limit: int | None = None, **given) -> DataSpec:
    """A DataSpec for `source` with the columns the checkpoint was trained with, unless `given` says
    otherwise (None means: not given)."""
    known = {f.name for f in fields(DataSpec)}
    stored = {k: v for k, v in predictor.settings.columns.items() if k in known}
    chosen = {k: v for k, v in given.items() if v is not None}
    return DataSpec(source=source, limit=limit, **{**stored, **chosen})


def evaluate_checkpoint(predictor, spec: DataSpec, split: str = "validation"):
    """Run the checkpoint over the data's rows and score it with its task's metrics."""
    return predictor.task.evaluate(predictor, spec, split)


def confusion_plot_path(checkpoint: str | Path, data: str, split: str) -> Path | None:
    """Where `tunelab evaluate` puts a confusion matrix when not told: the run's plots/ folder, when the
    checkpoint is in a tunelab run."""
    folder = Path(checkpoint)
    run = folder if (folder / "config.yaml").exists() else folder.parent
    if not (run / "config.yaml").exists():
        return None
    name = Path(data).name.split(".")[0] or "data"
    return run / "plots" / f"confusion_{name}_{split}.png"
