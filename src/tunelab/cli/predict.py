"""`tunelab predict`: what a checkpoint predicts for texts, pairs, token lists or a CoNLL file."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import typer

from tunelab.cli import app
from tunelab.errors import TunelabError


@dataclass
class Inputs:
    """What to predict: texts (or token lists) and pair texts, and a CoNLL file's own lines."""

    items: list
    pairs: list[str] | None = None
    conll: list[list[list[str]]] | None = field(default=None)  # each sentence's token lines, to write back


def read_inputs(texts: list[str], pairs: list[str], input_file: Optional[str], text_column: str,
                text_pair_column: Optional[str], tokens_column: str) -> Inputs:
    """Texts from arguments, a file or standard input (one per line, TAB between a pair); token lists
    from a CoNLL file or a table's list column."""
    from tunelab.data import read_file

    if texts:
        if pairs and len(pairs) != len(texts):
            raise TunelabError(f"{len(texts)} texts but {len(pairs)} --pair values; give one --pair per text")
        return Inputs(texts, pairs or None)
    if input_file and Path(input_file).suffix.lower() in (".conll", ".iob"):
        frame = read_file(Path(input_file))
        return Inputs(frame["tokens"].tolist(), None, frame["columns"].tolist())
    if input_file and Path(input_file).suffix.lower() not in (".txt", ""):
        frame = read_file(Path(input_file))
        if tokens_column in frame and len(frame) and isinstance(frame[tokens_column].iloc[0], (list, tuple)):
            return Inputs([list(v) for v in frame[tokens_column]])
        missing = [c for c in (text_column, text_pair_column) if c and c not in frame.columns]
        if missing:
            raise TunelabError(f"column '{missing[0]}' not found in {input_file}; columns found: "
                               f"{', '.join(frame.columns)} (set --text-column / --text-pair-column)")
        pair_values = _texts(frame, text_pair_column) if text_pair_column else None
        return Inputs(_texts(frame, text_column), pair_values)
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
    split = [line.split("\t", 1) for line in lines]
    if all(len(parts) == 2 for parts in split):
        return Inputs([p[0] for p in split], [p[1] for p in split])
    return Inputs(lines)


def _texts(frame, column: str) -> list[str]:
    # A null (JSON null, parquet None) becomes "", which prediction refuses, not the text "None".
    return frame[column].where(frame[column].notna(), "").astype(str).tolist()


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to predict for."),
    pair: Optional[List[str]] = typer.Option(None, "--pair", help="Second text of a pair, once per text."),
    input_file: Optional[str] = typer.Option(None, "--input", "-i", help="A .txt file (one text per line, TAB between a pair), .csv/.tsv/.jsonl/.json/.parquet, or a CoNLL .conll/.iob file."),
    text_column: str = typer.Option("text", help="Text column of a table --input."),
    text_pair_column: Optional[str] = typer.Option(None, help="Pair column of a table --input."),
    tokens_column: str = typer.Option("tokens", help="Column of word lists in a table --input (token classification)."),
    output_format: str = typer.Option("table", "--format", "-f", help="table, jsonl or csv; conll for token classification."),
    batch_size: int = typer.Option(64, help="Batch size."),
    backend: str = typer.Option("auto", help="auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx (exported on first use)."),
    threshold: Optional[float] = typer.Option(None, help="Multi-label: one decision threshold for every label, in (0, 1) (default: the tuned ones stored in the checkpoint)."),
    progress: bool = typer.Option(True, help="With --input: rows done, rows/s and time left on stderr (terminals only)."),
) -> None:
    """Print each input's prediction: label and probability, or tagged entities."""
    from tunelab.predict import load

    inputs = read_inputs(texts or [], pair or [], input_file, text_column, text_pair_column, tokens_column)
    predictor = load(checkpoint, batch_size=batch_size, backend=backend, progress=progress and input_file is not None,
                     threshold=threshold)
    if output_format not in predictor.task.formats:
        raise TunelabError(f"--format must be one of {', '.join(predictor.task.formats)} for a "
                           f"{predictor.task.name} checkpoint, got '{output_format}'")
    predictions = predictor.predict(inputs.items, inputs.pairs)
    typer.echo(predictor.task.render(predictor, inputs, predictions, output_format), nl=False)
