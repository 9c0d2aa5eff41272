"""`tunelab predict`: what a checkpoint predicts for inputs given as arguments, in a file or on standard
input. The checkpoint's task reads them (its input flags, its columns) and prints the predictions."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tunelab.cli import app, option_parameters
from tunelab.errors import TunelabError
from tunelab.precision import INFERENCE_HELP


def predict(checkpoint: str, texts: Optional[List[str]], input_file: Optional[str], output_format: str,
            batch_size: int, backend: str, precision: str, progress: bool, **options) -> None:
    """Print each input's prediction: label and probability, tagged entities, an answer, a choice."""
    from tunelab.predict import load
    from tunelab.tasks import task_options

    inputs = {o.name: options.pop(o.name) for o in input_options()}
    columns = {o.name for o in task_options("predict") if o.stored == "columns"}
    decisions = {k: options.pop(k) for k in list(options) if k not in columns}
    predictor = load(checkpoint, batch_size=batch_size, backend=backend, precision=precision,
                     progress=progress and input_file is not None, **decisions)
    task = predictor.task
    if output_format not in task.formats:
        raise TunelabError(f"--format must be one of {', '.join(task.formats)} for a {task.name} checkpoint, got "
                           f"'{output_format}'")
    columns = {**predictor.settings.columns, **{k: v for k, v in options.items() if v is not None}}
    items = read_items(task, texts or [], inputs, input_file, columns)
    typer.echo(task.render(items, predictor.predict(items), output_format, predictor), nl=False)


def input_options() -> list:
    """The flags the tasks declare for an input's parts (--pair, --context, ...)."""
    from tunelab.options import unique
    from tunelab.tasks import registry

    return unique(i for task in registry().values() for i in task.inputs)


def read_items(task, arguments: list[str], inputs: dict, input_file: Optional[str], columns: dict) -> list:
    """The inputs from the arguments (with the task's input flags), a file (a table the task's columns name,
    a file of lines, or a CoNLL file) or standard input (lines)."""
    from tunelab.data import read_file

    given = {k: v for k, v in inputs.items() if v}
    if arguments or given:
        return task.items_from_arguments(arguments, given)
    if input_file and Path(input_file).suffix.lower() not in (".txt", ""):
        return task.items_from_frame(read_file(Path(input_file)), columns, input_file)
    if input_file:
        if not Path(input_file).exists():
            raise TunelabError(f"file not found: {input_file}; check the path")
        try:
            lines = Path(input_file).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise TunelabError(f"{input_file} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                               "re-save it as UTF-8") from None
    elif not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
    else:
        raise TunelabError("no input: give texts as arguments, --input FILE, or pipe lines on standard input")
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise TunelabError("the input holds no text lines; give one text per line")
    return task.items_from_lines(lines)


def _parameters() -> list[inspect.Parameter]:
    def opt(name, annotation, default, *flags, help):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(default, *flags, help=help))

    return [
        inspect.Parameter("checkpoint", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                          default=typer.Argument(..., help="A run's best/ or last/ folder (or the run folder).")),
        inspect.Parameter("texts", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[List[str]],
                          default=typer.Argument(None, help="Inputs to predict for (texts; questions for "
                                                 "question answering).")),
        opt("input_file", Optional[str], None, "--input", "-i",
            help="A .txt file (one input per line; TAB between a pair), .csv/.tsv/.jsonl/.json/.parquet (the "
                 "columns the checkpoint was trained with, or the column options), or a CoNLL .conll/.iob file."),
        *option_parameters("predict", "the checkpoint's"),
        opt("output_format", str, "table", "--format", "-f", help="table, jsonl or csv; conll for token "
            "classification."),
        opt("batch_size", int, 64, "--batch-size", help="Batch size."),
        opt("backend", str, "auto", "--backend", help="auto (ONNX int8 when `tunelab export` wrote it, else torch), "
            "torch, or onnx (exported on first use)."),
        opt("precision", str, "auto", "--precision", help=INFERENCE_HELP),
        opt("progress", bool, True, "--progress/--no-progress",
            help="With --input: rows done, rows/s and time left on stderr (terminals only)."),
    ]


predict.__signature__ = inspect.Signature(_parameters())
app.command()(predict)
