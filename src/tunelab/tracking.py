"""Experiment trackers (TensorBoard, MLflow, Weights & Biases and the others accelerate supports): the one
module that knows them. Only the main process logs (accelerate's trackers see to that)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

# --report-to name -> (the module accelerate imports for it, the package to install)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
    "comet_ml": ("comet_ml", "comet_ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}
PROJECT = "tunelab"  # the TensorBoard folder, MLflow experiment and W&B project (their env variables win)


def parse_report_to(value: str | None) -> list[str]:
    """The trackers named by --report-to ('none', or names separated by commas)."""
    names = [n.strip().lower() for n in (value or "none").split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or "none" in names:
        raise TunelabError(f"--report-to {value}: unknown tracker {', '.join(unknown) or 'none among others'}; "
                           f"use none or any of {', '.join(TRACKERS)}, separated by commas")
    return list(dict.fromkeys(names))


def check_installed(names: list[str]) -> None:
    """One line naming the pip install for each tracker whose package is missing."""
    missing = [TRACKERS[n][1] for n in names if importlib.util.find_spec(TRACKERS[n][0]) is None]
    if missing:
        raise TunelabError(f"--report-to: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                           f"installed; pip install {' '.join(missing)}")


def hyperparameters(values: dict) -> dict:
    """Flat values every tracker takes: numbers, strings and booleans; anything else as text."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(hyperparameters({f"{key}/{k}": v for k, v in value.items()}))
        else:
            out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def build(names: list[str], run_name: str, run_dir: Path) -> list:
    """accelerate trackers for `names`, each naming the run `run_name`: TensorBoard writes under RUN/logs/,
    W&B under RUN/wandb/, MLflow where MLFLOW_TRACKING_URI says (its own default otherwise)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    check_installed(names)
    trackers = []
    for name in names:
        cls = LOGGER_TYPE_TO_CLASS[name]
        if name == "tensorboard":
            trackers.append(cls(run_name, str(run_dir / "logs")))
        elif name == "mlflow":
            trackers.append(cls(experiment_name=PROJECT, run_name=run_name))
        elif name == "wandb":
            trackers.append(cls(PROJECT, name=run_name, dir=str(run_dir)))
        elif cls.requires_logging_directory:
            trackers.append(cls(run_name, str(run_dir / "logs")))
        else:
            trackers.append(cls(run_name))
    return trackers


def start(accelerator, config: dict) -> None:
    """Open the runs and record the resolved configuration as hyperparameters; a tracker that refuses (a
    server not reachable, a store it will not use) is one line."""
    if not accelerator.log_with:
        return
    try:
        accelerator.init_trackers(PROJECT, config=hyperparameters(config))
    except Exception as exc:  # noqa: BLE001 - each tracker raises its own kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        names = ", ".join(t.name for t in accelerator.log_with)
        raise TunelabError(f"--report-to {names}: a tracker could not start: {first}; fix its setting (or drop "
                           f"--report-to) and run again with --overwrite") from None


def log(accelerator, record: dict) -> None:
    """One metrics.jsonl record (a training log or an evaluation) at its step."""
    if accelerator.trackers:
        values = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        accelerator.log(values, step=record["step"])


def finish(accelerator, summary: dict, step: int, plots: list[Path]) -> None:
    """The final summary as metrics at the last step, and the run's plots as images where a tracker takes them."""
    if not accelerator.trackers or not accelerator.is_main_process:
        return
    accelerator.log({k: v for k, v in summary.items() if isinstance(v, (int, float))}, step=step)
    for tracker in accelerator.trackers:
        try:
            log_plots(tracker, plots, step)
        except Exception as exc:  # noqa: BLE001 - a tracker's image upload must not cost a finished run
            logger.warning("could not send the plots to %s: %s", tracker.name, exc)


def log_plots(tracker, plots: list[Path], step: int) -> None:
    if tracker.name == "mlflow":
        for path in plots:
            tracker.log_artifact(str(path), "plots")
        return
    if not hasattr(tracker, "log_images"):
        return
    import numpy as np
    from PIL import Image

    images = {f"plots/{p.stem}": np.asarray(Image.open(p).convert("RGB")) for p in plots}
    if tracker.name == "tensorboard":
        tracker.log_images({k: v[None] for k, v in images.items()}, step=step, dataformats="NHWC")
    else:
        tracker.log_images({k: [v] for k, v in images.items()}, step=step)
