"""`tunelab evaluate`: score a checkpoint on labeled data, read as its training data was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tunelab.cli import app


@app.command()
def evaluate(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    data: str = typer.Argument(..., help="A file, a CoNLL file, a save_to_disk folder, a hub id or a built-in."),
    text_column: Optional[str] = typer.Option(None, help="Column with the text (default: the checkpoint's)."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with the second text of a pair (default: the checkpoint's)."),
    label_column: Optional[str] = typer.Option(None, help="Column with the label (default: the checkpoint's)."),
    tokens_column: Optional[str] = typer.Option(None, help="Token classification: column of word lists (default: the checkpoint's)."),
    tags_column: Optional[str] = typer.Option(None, help="Token classification: column of tag lists (default: the checkpoint's)."),
    tag_column: Optional[int] = typer.Option(None, help="Token classification: a CoNLL file's tag column (default: the checkpoint's)."),
    label_separator: Optional[str] = typer.Option(None, help="Multi-label: what separates a row's labels (default: the checkpoint's)."),
    label_columns: Optional[str] = typer.Option(None, help="Multi-label: 0/1 columns, one per label, comma-separated (default: the checkpoint's)."),
    max_length: Optional[int] = typer.Option(None, help="Longest input in pieces (default: what the checkpoint was trained with)."),
    split: str = typer.Option("validation", help="Split of a multi-split source."),
    limit: Optional[int] = typer.Option(None, help="Evaluate at most N rows."),
    batch_size: int = typer.Option(64, help="Batch size."),
    backend: str = typer.Option("auto", help="auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    plot: Optional[str] = typer.Option(None, help="Write the confusion matrix PNG here (default: RUN/plots/ for a tunelab run)."),
    threshold: Optional[float] = typer.Option(None, help="Multi-label: one decision threshold for every label, in (0, 1) (default: the tuned ones stored in the checkpoint)."),
    progress: bool = typer.Option(True, help="Show rows done, rows/s and time left on stderr (terminals only)."),
) -> None:
    """Metrics, a per-class report and the confusion matrix."""
    from tunelab.evaluation import confusion_plot_path, evaluate_checkpoint, spec_for
    from tunelab.predict import load

    predictor = load(checkpoint, batch_size=batch_size, max_length=max_length, backend=backend, progress=progress, threshold=threshold)
    spec = spec_for(predictor, data, limit=limit, text_column=text_column, text_pair_column=text_pair_column,
                    label_column=label_column, tokens_column=tokens_column, tags_column=tags_column,
                    tag_column=tag_column, label_separator=label_separator, label_columns=label_columns)
    spec.check()
    result = evaluate_checkpoint(predictor, spec, split)
    labels = result.confusion_labels
    picture = (Path(plot) if plot else confusion_plot_path(checkpoint, data, split)) if labels else None
    if picture is not None:
        from tunelab.plots import plot_confusion

        plot_confusion(result.confusion_matrix, labels, picture, title=f"{Path(data).name} ({split})")
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(f"{result.rows} rows")
    long = getattr(result, "long", None)
    if long and long["long_rows"]:
        how = "read in windows" if long["long_text"] == "windows" else "cut (the checkpoint truncates)"
        typer.echo(f"{long['long_rows']} rows longer than {long['max_length']} pieces (longest {long['longest']}): "
                   f"{how}")
    if picture is not None:
        typer.echo(f"confusion matrix plot: {picture}")
    for name, value in result.metrics.items():
        typer.echo(f"{name:>10}: {value:.4f}")
    if result.per_class:
        width = max(12, *(len(n) + 2 for n in result.per_class))
        typer.echo("")
        typer.echo(f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
        for name, row in result.per_class.items():
            typer.echo(f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                       f"{row['f1-score']:>10.4f}{int(row['support']):>10}")
    if labels:
        width = max(12, *(len(n) + 2 for n in labels))
        typer.echo("")
        typer.echo("confusion matrix (rows: true, columns: predicted)")
        typer.echo(" " * width + "".join(f"{n[:10]:>12}" for n in labels))
        for name, row in zip(labels, result.confusion_matrix):
            typer.echo(f"{name:<{width}}" + "".join(f"{v:>12}" for v in row))
