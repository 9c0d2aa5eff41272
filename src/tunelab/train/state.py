"""Training states: everything a killed run needs to continue exactly, written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunelab.checkpoint import atomic_write_text, load_rng, prune_states, save_rng
from tunelab.errors import TunelabError

STATE_DIR = "state"


@dataclass
class TrainState:
    """Where training stands; stored in each training-state checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed (per process)
    seen: int = 0
    tokens: int = 0  # training tokens consumed (padding excluded), over all processes
    best_value: float | None = None
    best_metrics: dict = field(default_factory=dict)
    best_step: int = 0
    evals_since_best: int = 0
    best_confusion: list | None = None
    best_confusion_labels: list | None = None
    best_per_class: dict | None = None
    running_loss: float = 0.0
    running_count: int = 0
    window_seen: int = 0
    window_clipped: int = 0  # optimizer steps since the last log whose gradients clipping rescaled


def save_state(run_dir: Path, state: TrainState, accelerator, model, optimizer, scheduler, keep: int) -> None:
    """model (safetensors), optimizer, scheduler, every process's RNG and the position; renamed into place whole."""
    from safetensors.torch import save_model

    folder = run_dir / STATE_DIR
    name = f"step-{state.step:08d}"
    staging = folder / f".{name}.tmp"
    if accelerator.is_main_process:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        save_rng(staging / f"rng-{accelerator.process_index}.pt")
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(model), str(staging / "model.safetensors"))
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
            record = dataclasses.asdict(state)
            record["num_processes"] = accelerator.num_processes
            (staging / "trainer_state.json").write_text(json.dumps(record), encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a half-written state never stays
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if (folder / name).exists():  # the same step saved again after a resume
            shutil.rmtree(folder / name)
        os.replace(staging, folder / name)
        prune_states(folder, keep)
    accelerator.wait_for_everyone()


def check_state_processes(path: Path, num_processes: int) -> None:
    """A training state holds one RNG state and one data position per process: refuse another count."""
    record = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved_by = record.get("num_processes", 1)
    if saved_by != num_processes:
        raise TunelabError(f"{path} was saved by {saved_by} processes, but this run has {num_processes}; "
                           "resume with the same number of processes")


def restore(path: Path, run_dir: Path, accelerator, model, optimizer, scheduler) -> tuple[TrainState, list[dict]]:
    """Load a training state; cut metrics.jsonl back to what had happened by then."""
    from safetensors.torch import load_model

    record = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    state = TrainState(**{k: v for k, v in record.items() if k in {f.name for f in dataclasses.fields(TrainState)}})
    load_model(accelerator.unwrap_model(model), str(path / "model.safetensors"))
    # These files were written by this run itself; weights_only refuses anything but tensors and plain data.
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    load_rng(path / f"rng-{accelerator.process_index}.pt")
    history = []
    metrics_file = run_dir / "metrics.jsonl"
    if metrics_file.exists():
        history = [r for r in (json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip())
                   if r["step"] <= state.step]
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_text(metrics_file, "".join(json.dumps(r) + "\n" for r in history))
    return state, history
