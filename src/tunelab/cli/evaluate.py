"""`tunelab evaluate`: score a checkpoint on labeled data, read as its training data was."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Optional

import typer

from tunelab.cli import app, option_parameters
from tunelab.precision import INFERENCE_HELP


def evaluate(checkpoint: str, data: str, max_length: Optional[int], split: str, limit: Optional[int],
             batch_size: int, backend: str, precision: str, as_json: bool, plot: Optional[str], progress: bool,
             **options) -> None:
    """Metrics, a per-class report and the confusion matrix."""
    from tunelab.evaluation import evaluate_checkpoint, spec_for
    from tunelab.predict import load
    from tunelab.tasks import task_options

    decisions = {o.name: options.pop(o.name) for o in task_options("evaluate") if o.stored != "columns"}
    predictor = load(checkpoint, batch_size=batch_size, max_length=max_length, backend=backend, precision=precision,
                     progress=progress, **decisions)
    result = evaluate_checkpoint(predictor, spec_for(predictor, data, limit=limit, **options), split)
    picture = plot_confusion(result, checkpoint, data, split, plot)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(report(result, picture))


def plot_confusion(result, checkpoint: str, data: str, split: str, plot: Optional[str]) -> Path | None:
    """The confusion matrix as a PNG (where asked, or in the run's plots/), when the task reports one."""
    from tunelab.evaluation import confusion_plot_path

    labels = result.confusion_labels
    picture = (Path(plot) if plot else confusion_plot_path(checkpoint, data, split)) if labels else None
    if picture is not None:
        from tunelab.plots import plot_confusion as draw

        draw(result.confusion_matrix, labels, picture, title=f"{Path(data).name} ({split})")
    return picture


def report(result, picture: Path | None) -> str:
    """The evaluation for a terminal: rows, long rows, metrics, the per-class report, the confusion matrix."""
    lines = [f"{result.rows} rows"]
    long = result.long
    if long and long["long_rows"]:
        how = "read in windows" if long["long_text"] == "windows" else "cut (the checkpoint truncates)"
        lines.append(f"{long['long_rows']} rows longer than {long['max_length']} pieces (longest {long['longest']}): "
                     f"{how}")
    if picture is not None:
        lines.append(f"confusion matrix plot: {picture}")
    lines += [f"{name:>10}: {value:.4f}" for name, value in result.metrics.items()]
    if result.per_class:
        width = max(12, *(len(n) + 2 for n in result.per_class))
        lines += ["", f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        lines += [f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1-score']:>10.4f}"
                  f"{int(row['support']):>10}" for name, row in result.per_class.items()]
    lines += table(result.details.get("table"))
    labels = result.confusion_labels
    if labels:
        width = max(12, *(len(n) + 2 for n in labels))
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * width + "".join(f"{n[:10]:>12}" for n in labels)]
        lines += [f"{name:<{width}}" + "".join(f"{v:>12}" for v in row)
                  for name, row in zip(labels, result.confusion_matrix)]
    return "\n".join(lines)


def table(found: dict | None) -> list[str]:
    """A task's own table of an evaluation ({"title", "columns", "rows"}), aligned for a terminal."""
    if not found:
        return []
    cells = [[str(c) for c in found["columns"]]] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
                                                    for row in found["rows"]]
    widths = [max(len(row[i]) for row in cells) + 2 for i in range(len(cells[0]))]
    return ["", found["title"]] + ["".join(f"{v:>{w}}" for v, w in zip(row, widths)) for row in cells]


def _parameters() -> list[inspect.Parameter]:
    def opt(name, annotation, default, *flags, help):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(default, *flags, help=help))

    def argument(name, help):
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                 default=typer.Argument(..., help=help))

    return [
        argument("checkpoint", "A run's best/ or last/ folder (or the run folder)."),
        argument("data", "A file, a CoNLL file, a SQuAD file, a save_to_disk folder, a hub id or a built-in."),
        *option_parameters("evaluate", "the checkpoint's"),
        opt("max_length", Optional[int], None, "--max-length",
            help="Longest input in pieces (default: what the checkpoint was trained with)."),
        opt("split", str, "validation", "--split", help="Split of a multi-split source."),
        opt("limit", Optional[int], None, "--limit", help="Evaluate at most N rows."),
        opt("batch_size", int, 64, "--batch-size", help="Batch size."),
        opt("backend", str, "auto", "--backend",
            help="auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx."),
        opt("precision", str, "auto", "--precision", help=INFERENCE_HELP),
        opt("as_json", bool, False, "--json", help="Print JSON for machines."),
        opt("plot", Optional[str], None, "--plot",
            help="Write the confusion matrix PNG here (default: RUN/plots/ for a tunelab run)."),
        opt("progress", bool, True, "--progress/--no-progress",
            help="Show rows done, rows/s and time left on stderr (terminals only)."),
    ]


evaluate.__signature__ = inspect.Signature(_parameters())
app.command()(evaluate)
