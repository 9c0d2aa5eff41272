"""`tunelab runs` and `tunelab compare`: what a folder of runs holds, and several runs side by side."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from tunelab.cli import app


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


@app.command()
def runs(
    folder: str = typer.Argument("runs", help="The folder the run folders are in (or one run folder)."),
    sort: str = typer.Option("name", help="Sort by this column (numbers highest first): name, task, data, model, "
                             "metric, best, best_step, steps, seconds, samples_per_s, status."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """A table of the runs under FOLDER: task, data, model, best metric and step, time, speed and status."""
    from tunelab.runs import COLUMNS, list_runs

    found = list_runs(folder, sort=sort)
    if as_json:
        typer.echo(json.dumps([r.row() for r in found], indent=2))
        return
    if not found:
        typer.echo(f"no runs in {folder}")
        return
    typer.echo(_table(list(COLUMNS), [[r.row()[c] for c in COLUMNS] for r in found]))


@app.command()
def compare(
    run_folders: List[str] = typer.Argument(..., help="Two or more run folders."),
    output: str = typer.Option("compare.png", "--output", "-o", help="Where to write the PNG."),
    metric: Optional[str] = typer.Option(None, help="Validation metric to plot (default: the first run's)."),
) -> None:
    """Plot the runs' validation curves and losses on shared axes; list the options that differ."""
    from tunelab.runs import compare as compare_runs

    path, found, differing = compare_runs(run_folders, output, metric)
    header = ["option"] + [r.name for r in found]
    rows = [[k.replace("_", "-")] + [str(v) for v in values] for k, values in differing.items()]  # as given
    rows.append([f"best {found[0].metric if metric is None else metric}"] + [r.best for r in found])
    rows.append(["best step"] + [r.best_step for r in found])
    rows.append(["status"] + [r.status for r in found])
    typer.echo(_table(header, rows))
    typer.echo(f"wrote {path}")
