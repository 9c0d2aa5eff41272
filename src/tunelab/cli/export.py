"""`tunelab export`: write the ONNX (int8) fast path next to a checkpoint."""

from __future__ import annotations

import typer

from tunelab.cli import app


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    quantize: bool = typer.Option(True, help="Also write the dynamic int8 model (the fast path)."),
    progress: bool = typer.Option(True, help="Show the export's stages on stderr (terminals only)."),
) -> None:
    """Export to ONNX in CHECKPOINT/onnx/, used by `predict --backend onnx` and `serve`."""
    from tunelab.export import export_onnx

    typer.echo(f"wrote {export_onnx(checkpoint, quantize=quantize, progress=progress)}")
