"""`tunelab evaluate`: score a checkpoint on labeled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tunelab.cli import app


def confusion_png(plot: Optional[str], checkpoint: str, data: str, split: str) -> Optional[Path]:
    """Where the confusion matrix goes: --plot, else the run's plots/ folder when the checkpoint is in a run."""
    if plot:
        return Path(plot)
    folder = Path(checkpoint)
    run = folder if (folder / "config.yaml").exists() else folder.parent
    if not (run / "config.yaml").exists():
        return None
    name = Path(data).name.split(".")[0] or "data"
    return run / "plots" / f"confusion_{name}_{split}.png"


@app.command()
def evaluate(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    data: str = typer.Argument(..., help="A file, a save_to_disk folder, a hub id or a built-in."),
    text_column: str = typer.Option("text", help="Column with the text."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with the second text of a pair."),
    label_column: str = typer.Option("label", help="Column with the label."),
    split: str = typer.Option("validation", help="Split of a multi-split source."),
    limit: Optional[int] = typer.Option(None, help="Evaluate at most N rows."),
    batch_size: int = typer.Option(64, help="Batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    plot: Optional[str] = typer.Option(None, help="Write the confusion matrix PNG here (default: RUN/plots/ for a tunelab run)."),
) -> None:
    """Metrics, a per-class report and the confusion matrix."""
    from tunelab.data import DataSpec
    from tunelab.evaluation import evaluate_checkpoint
    from tunelab.predict import load

    spec = DataSpec(source=data, text_column=text_column, text_pair_column=text_pair_column,
                    label_column=label_column, limit=limit)
    spec.check()
    predictor = load(checkpoint, batch_size=batch_size)
    result = evaluate_checkpoint(predictor, spec, split)
    picture = confusion_png(plot, checkpoint, data, split) if result.label_names else None
    if picture is not None:
        from tunelab.plots import plot_confusion

        plot_confusion(result.confusion_matrix, result.label_names, picture, title=f"{Path(data).name} ({split})")
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(f"{result.rows} rows")
    if picture is not None:
        typer.echo(f"confusion matrix plot: {picture}")
    for name, value in result.metrics.items():
        typer.echo(f"{name:>10}: {value:.4f}")
    if result.label_names:
        width = max(12, *(len(n) + 2 for n in result.label_names))
        typer.echo("")
        typer.echo(f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
        for name, row in result.per_class.items():
            typer.echo(f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                       f"{row['f1-score']:>10.4f}{int(row['support']):>10}")
        typer.echo("")
        typer.echo("confusion matrix (rows: true, columns: predicted)")
        typer.echo(" " * width + "".join(f"{n[:10]:>12}" for n in result.label_names))
        for name, row in zip(result.label_names, result.confusion_matrix):
            typer.echo(f"{name:<{width}}" + "".join(f"{v:>12}" for v in row))
