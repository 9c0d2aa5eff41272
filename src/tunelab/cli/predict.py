"""`tunelab predict`: label names and probabilities for texts or pairs."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tunelab.cli import app
from tunelab.errors import TunelabError

FORMATS = ("table", "jsonl", "csv")


def read_inputs(texts: list[str], pairs: list[str], input_file: Optional[str], text_column: str,
                text_pair_column: Optional[str]) -> tuple[list[str], list[str] | None]:
    """Texts (and pair texts) from arguments, a file, or standard input (one per line, TAB between a pair)."""
    if texts:
        if pairs and len(pairs) != len(texts):
            raise TunelabError(f"{len(texts)} texts but {len(pairs)} --pair values; give one --pair per text")
        return texts, pairs or None
    if input_file and Path(input_file).suffix.lower() not in (".txt", ""):
        from tunelab.data import read_file

        frame = read_file(Path(input_file))
        missing = [c for c in (text_column, text_pair_column) if c and c not in frame.columns]
        if missing:
            raise TunelabError(f"column '{missing[0]}' not found in {input_file}; columns found: "
                               f"{', '.join(frame.columns)} (set --text-column / --text-pair-column)")
        pair_values = _texts(frame, text_pair_column) if text_pair_column else None
        return _texts(frame, text_column), pair_values
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
        return [p[0] for p in split], [p[1] for p in split]
    return lines, None


def _texts(frame, column: str) -> list[str]:
    # A null (JSON null, parquet None) becomes "", which prediction refuses, not the text "None".
    return frame[column].where(frame[column].notna(), "").astype(str).tolist()


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify."),
    pair: Optional[List[str]] = typer.Option(None, "--pair", help="Second text of a pair, once per text."),
    input_file: Optional[str] = typer.Option(None, "--input", "-i", help="A .txt file (one text per line, TAB between a pair), or .csv/.tsv/.jsonl/.json/.parquet."),
    text_column: str = typer.Option("text", help="Text column of a table --input."),
    text_pair_column: Optional[str] = typer.Option(None, help="Pair column of a table --input."),
    output_format: str = typer.Option("table", "--format", "-f", help="table, jsonl or csv."),
    batch_size: int = typer.Option(64, help="Batch size."),
    backend: str = typer.Option("auto", help="auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx (exported on first use)."),
) -> None:
    """Print the label name and its probability for each input."""
    if output_format not in FORMATS:
        raise TunelabError(f"--format must be one of {', '.join(FORMATS)}, got '{output_format}'")
    from tunelab.predict import load

    inputs, pairs = read_inputs(texts or [], pair or [], input_file, text_column, text_pair_column)
    predictor = load(checkpoint, batch_size=batch_size, backend=backend)
    predictions = predictor.predict(inputs, pairs)
    rows = []
    for i, (text, p) in enumerate(zip(inputs, predictions)):
        row = {"text": text}
        if pairs:
            row["text_pair"] = pairs[i]
        rows.append({**row, **p.as_dict()})
    if output_format == "jsonl":
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    elif output_format == "csv":
        buffer = io.StringIO()
        names = predictor.label_names if not predictor.is_regression else []
        fields = ["text"] + (["text_pair"] if pairs else []) + ["label", "score"] + [f"p_{n}" for n in names]
        writer = csv.writer(buffer)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([row["text"]] + ([row["text_pair"]] if pairs else []) + [row["label"], f"{row['score']:.6f}"]
                            + [f"{row['probabilities'][n]:.6f}" for n in names])
        typer.echo(buffer.getvalue(), nl=False)
    else:
        width = max(5, *(len(str(r["label"])) for r in rows))
        typer.echo(f"{'label':<{width}}  {'score':>6}  text")
        for row in rows:
            shown = row["text"] if not pairs else f"{row['text']} || {row['text_pair']}"
            shown = shown if len(shown) <= 100 else shown[:97] + "..."
            typer.echo(f"{str(row['label']):<{width}}  {row['score']:>6.3f}  {shown}")
