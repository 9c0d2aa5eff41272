"""`tunelab evaluate`: score a checkpoint on labeled data."""

from __future__ import annotations

import json
from typing import Optional

import typer

from tunelab.cli import app


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
) -> None:
    """Metrics, a per-class report and the confusion matrix."""
    from tunelab.data import DataSpec
    from tunelab.evaluation import evaluate_checkpoint
    from tunelab.predict import load

    spec = DataSpec(source=data, text_column=text_column, text_pair_column=text_pair_column,
                    label_column=label_column, limit=limit)
    spec.check()
    result = evaluate_checkpoint(load(checkpoint, batch_size=batch_size), spec, split)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(f"{result.rows} rows")
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
