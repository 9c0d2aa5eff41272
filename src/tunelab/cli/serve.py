"""`tunelab serve`: an HTTP API and a browser playground for a checkpoint. Its options are ServeConfig's
fields, declared once there and in the tasks."""

from __future__ import annotations

import inspect
import os

import typer

from tunelab.cli import app, dataclass_parameters


def serve(checkpoint: str, **options) -> None:
    """Serve the checkpoint's task route with dynamic batching, /v1/generate, /healthz, /metrics, /docs and a
    playground at /."""
    from tunelab import serve as serving

    options["api_key"] = options.get("api_key") or os.environ.get("TUNELAB_API_KEY") or None
    serving.serve(serving.ServeConfig(checkpoint=checkpoint, **options))


def _parameters() -> list[inspect.Parameter]:
    from tunelab.serve import ServeConfig

    return [inspect.Parameter("checkpoint", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                              default=typer.Argument(..., help="A run's best/ or last/ folder (or the run folder).")),
            *dataclass_parameters(ServeConfig)]


serve.__signature__ = inspect.Signature(_parameters())
app.command()(serve)
