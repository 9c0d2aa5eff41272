"""Training curves and confusion matrices as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save through a temporary file so a reader never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_training(records: list[dict], folder: Path) -> list[Path]:
    """loss.png (training and validation loss) and metrics.png (validation metrics) against steps."""
    plt = _pyplot()
    written = []
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="training loss", marker=".")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], label="validation loss", marker="o")
    ax.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save(fig, folder / "loss.png"))

    names = [k for k in (evals[0] if evals else {}) if k.startswith("eval_") and k != "eval_loss"]
    if names:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in names:
            ax.plot([r["step"] for r in evals], [r[name] for r in evals], marker="o", label=name[5:])
        ax.set(xlabel="optimizer step", ylabel="score", title="Validation metrics")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, folder / "metrics.png"))
    return written


def plot_confusion(matrix: list[list[int]], label_names: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    """Counts with row-normalized colors (rows: true label, columns: predicted)."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4, 0.6 * len(label_names) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true label")
    return _save(fig, path)
