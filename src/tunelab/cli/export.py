"""`tunelab export`: write the ONNX (int8) fast path, or a GGUF file for llama.cpp, next to a checkpoint."""

from __future__ import annotations

from typing import Optional

import typer

from tunelab.cli import app
from tunelab.errors import TunelabError
from tunelab.gguf_export import QUANTS

FORMATS = ("onnx", "gguf")


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    format: str = typer.Option("onnx", "--format", help="onnx: the fast path of predict --backend onnx and serve "
                               "(CHECKPOINT/onnx/). gguf: one file for llama.cpp, Ollama and LM Studio "
                               "(CHECKPOINT/gguf/model-QUANT.gguf; causal LMs of the Llama family)."),
    quantize: Optional[bool] = typer.Option(None, "--quantize/--no-quantize",
                                            help="ONNX: also write the dynamic int8 model (the fast path; default on)."),
    quant: Optional[str] = typer.Option(None, "--quant", help=f"GGUF: the tensors' type, one of {', '.join(QUANTS)} "
                                        "(default f16; q8_0 is half the size and close to it)."),
    progress: bool = typer.Option(True, help="Show the export's stages on stderr (terminals only)."),
) -> None:
    """Export a checkpoint: ONNX in CHECKPOINT/onnx/ (used by `predict --backend onnx` and `serve`), or GGUF."""
    if format not in FORMATS:
        raise TunelabError(f"--format {format}: choose onnx (the fast prediction path) or gguf (llama.cpp, Ollama)")
    if format == "gguf":
        if quantize is not None:
            raise TunelabError("--quantize/--no-quantize is for --format onnx; a GGUF file's type is set by "
                               f"--quant ({', '.join(QUANTS)})")
        from tunelab.gguf_export import export_gguf

        typer.echo(f"wrote {export_gguf(checkpoint, quant=quant or 'f16', progress=progress)}")
        return
    if quant is not None:
        raise TunelabError(f"--quant {quant} is for --format gguf; ONNX writes fp32 and, with --quantize (the "
                           "default), int8")
    from tunelab.export import export_onnx

    typer.echo(f"wrote {export_onnx(checkpoint, quantize=quantize is not False, progress=progress)}")
