"""tunelab: fine-tune, evaluate, predict with and inspect Hugging Face transformers."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "__version__"]


def load(path, **kwargs):
    """Load a checkpoint for prediction: `tunelab.load("runs/x/best").predict(["text"])`."""
    from tunelab.predict import load as _load  # heavy imports only when used

    return _load(path, **kwargs)
