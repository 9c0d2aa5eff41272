"""`tunelab serve`: an HTTP API and a browser playground for a checkpoint."""

from __future__ import annotations

import os
from typing import Optional

import typer

from tunelab.cli import app


@app.command()
def serve(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder)."),
    generator: Optional[str] = typer.Option(None, help="Also serve /v1/generate with this causal LM ('smollm2' is bundled)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, help="Require this key in X-API-Key (default: $TUNELAB_API_KEY)."),
    max_batch_size: int = typer.Option(32, help="Rows gathered into one forward pass."),
    max_wait_ms: float = typer.Option(5.0, help="How long the first request of a batch waits for company."),
    max_queue: int = typer.Option(1024, help="Queued requests before answering 503."),
    max_texts: int = typer.Option(64, help="Texts per request (413 above)."),
    max_chars: int = typer.Option(5000, help="Characters per text (422 above)."),
    timeout: float = typer.Option(30.0, help="Seconds before a request gets 504."),
    backend: str = typer.Option("auto", help="auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx."),
    threshold: Optional[float] = typer.Option(None, help="Multi-label: one decision threshold for every label, in (0, 1) (default: the tuned ones stored in the checkpoint)."),
) -> None:
    """Serve /v1/classify with dynamic batching, /v1/generate, /healthz, /metrics, /docs and a playground at /."""
    from tunelab.serve import ServeConfig, serve as run

    run(ServeConfig(checkpoint=checkpoint, generator=generator, host=host, port=port,
                    api_key=api_key or os.environ.get("TUNELAB_API_KEY") or None, max_batch_size=max_batch_size,
                    max_wait_ms=max_wait_ms, max_queue=max_queue, max_texts=max_texts, max_chars=max_chars,
                    timeout_s=timeout, backend=backend, threshold=threshold))
