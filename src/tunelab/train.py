"""Fine-tune a sequence classifier: a short training loop on accelerate."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from tunelab.checkpoint import append_jsonl, atomic_write_text, clear_run_dir, prepare_run_dir, save_checkpoint
from tunelab.collate import Collator, encode_frame, effective_max_length, make_loader
from tunelab.data import DataSpec, TaskData, load_task_data
from tunelab.errors import collect
from tunelab.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metrics, is_better, report
from tunelab.modeling import DEFAULT_MODEL, load_classifier, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every option of a training run; `check` reports all bad values at once."""

    data: str
    output: str | None = None
    model: str = DEFAULT_MODEL
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    validation: str | None = None
    validation_fraction: float = 0.1
    limit: int | None = None
    task: str = "auto"
    max_length: int = 128
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_every: int | None = None  # steps; None evaluates at the end of every epoch
    logging_steps: int = 50
    metric: str = "auto"
    patience: int | None = None
    from_scratch: bool = False
    freeze_encoder: bool = False
    group_by_length: bool = True
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        problems = []
        positive = ["max_length", "epochs", "batch_size", "eval_batch_size", "grad_accum", "logging_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "patience", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.learning_rate <= 0:
            problems.append(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            problems.append(f"--warmup-steps must not be negative, got {self.warmup_steps}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_grad_norm < 0:
            problems.append(f"--max-grad-norm must not be negative, got {self.max_grad_norm}")
        known = ("auto", "loss") + CLASSIFICATION_METRICS + REGRESSION_METRICS
        if self.metric not in known:
            problems.append(f"--metric must be one of {', '.join(known)}, got '{self.metric}'")
        if self.from_scratch and self.freeze_encoder:
            problems.append("--from-scratch and --freeze-encoder together would train a head on random features")
        try:
            self.data_spec().check()
        except Exception as exc:  # noqa: BLE001 - merged into one message below
            problems.append(str(exc))
        collect(problems)

    def data_spec(self) -> DataSpec:
        return DataSpec(
            source=self.data, text_column=self.text_column, text_pair_column=self.text_pair_column,
            label_column=self.label_column, validation=self.validation,
            validation_fraction=self.validation_fraction, seed=self.seed, limit=self.limit, task=self.task,
        )

    def run_dir(self) -> Path:
        if self.output:
            return Path(self.output).expanduser()
        name = Path(self.data).name.split(".")[0] or "run"
        return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


@dataclass
class TrainResult:
    run_dir: Path
    best_dir: Path
    last_dir: Path
    metric: str
    best_metrics: dict[str, float]
    best_step: int
    steps: int
    train_seconds: float  # wall time of the loop, evaluations included
    samples_per_second: float  # training rows per second, evaluations excluded
    history: list[dict] = field(default_factory=list)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalization weights (all 1-D tensors)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.inference_mode()
def evaluate_loader(model, loader, accelerator, num_labels: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Loss and metrics over a whole loader, gathered across processes; also the logits and labels."""
    model.eval()
    all_logits, all_labels, losses, count = [], [], 0.0, 0
    for batch in loader:
        outputs = model(**batch)
        logits, labels = accelerator.gather_for_metrics((outputs.logits, batch["labels"]))
        losses += float(outputs.loss) * len(batch["labels"])
        count += len(batch["labels"])
        all_logits.append(logits.float().cpu().numpy())
        all_labels.append(labels.cpu().numpy())
    model.train()
    loss = accelerator.reduce(torch.tensor([losses, count], dtype=torch.float64), reduction="sum")
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    metrics = compute_metrics(logits, labels, num_labels)
    return {"loss": float(loss[0] / max(loss[1], 1)), **metrics}, logits, labels


def train(config: TrainConfig, data: TaskData | None = None) -> TrainResult:
    """Fine-tune `config.model` on `config.data`; write the run folder; return the best metrics."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    config.check()
    run_dir = config.run_dir()
    prepare_run_dir(run_dir, config.overwrite)  # fail before any slow work
    if config.threads:
        torch.set_num_threads(config.threads)

    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum)
    set_seed(config.seed)
    data = data or load_task_data(config.data_spec())
    model_name = resolve_model(config.model)
    tokenizer = load_tokenizer(model_name)
    model = load_classifier(
        model_name, data.label_names, from_scratch=config.from_scratch,
        freeze_encoder=config.freeze_encoder, label_values=data.label_values,
    )
    max_length = effective_max_length(tokenizer, model.config, config.max_length)
    metric = config.metric if config.metric != "auto" else ("pearson" if data.is_regression else "accuracy")

    collator = Collator(tokenizer.pad_token_id or 0, regression=data.is_regression)
    train_set = encode_frame(tokenizer, data.train, max_length)
    val_set = encode_frame(tokenizer, data.validation, max_length)
    train_loader = make_loader(train_set, config.batch_size, collator, config.seed,
                               group_by_length=config.group_by_length)
    val_loader = make_loader(val_set, config.eval_batch_size, collator, shuffle=False)
    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * total_steps)

    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )

    if accelerator.is_main_process:
        if config.overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**dataclasses.asdict(config), "output": str(run_dir), "resolved_model": model_name,
                    "max_length": max_length, "metric": metric, "label_names": data.label_names,
                    "train_rows": len(data.train), "validation_rows": len(data.validation),
                    "total_steps": total_steps, "warmup_steps": warmup, "num_processes": accelerator.num_processes}
        import yaml

        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    logger.info("training %s on %d rows: %d epochs, %d steps, %d warm-up", model_name, len(data.train),
                epochs, total_steps, warmup)

    best_value, best_metrics, best_step, evals_since_best = None, {}, 0, 0
    best_confusion: list[list[int]] | None = None
    history: list[dict] = []
    step, seen, running_loss, running_count = 0, 0, 0.0, 0
    started = time.perf_counter()
    window_start, window_seen, eval_seconds = started, 0, 0.0
    progress = tqdm(total=total_steps, disable=not (config.progress and accelerator.is_local_main_process),
                    desc="train", dynamic_ncols=True, mininterval=1.0)

    def log(record: dict) -> None:
        history.append(record)
        if accelerator.is_main_process:
            append_jsonl(run_dir / "metrics.jsonl", record)

    def evaluate_and_keep(epoch: float) -> bool:
        """Evaluate, save `best/` on improvement; return True when patience ran out."""
        nonlocal best_value, best_metrics, best_step, evals_since_best, eval_seconds, window_start, best_confusion
        eval_started = time.perf_counter()
        metrics, logits, labels = evaluate_loader(model, val_loader, accelerator, data.num_labels)
        log({"step": step, "epoch": round(epoch, 4), **{f"eval_{k}": v for k, v in metrics.items()}})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        if accelerator.is_main_process:
            message = f"step {step} (epoch {epoch:.2f}): {shown}"
            progress.write(message, file=sys.stderr) if not progress.disable else logger.info(message)
        improved = is_better(metric, metrics[metric], best_value)
        if improved:
            best_value, best_metrics, best_step, evals_since_best = metrics[metric], metrics, step, 0
            if not data.is_regression:
                best_confusion = report(logits.argmax(-1), labels, data.label_names)["confusion_matrix"]
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(accelerator.unwrap_model(model), tokenizer, run_dir / "best",
                                {"step": step, "epoch": epoch, "metrics": metrics, "metric": metric})
        else:
            evals_since_best += 1
        # Training speed excludes evaluation and checkpoint time.
        spent = time.perf_counter() - eval_started
        eval_seconds += spent
        window_start += spent
        return not improved and config.patience is not None and evals_since_best >= config.patience

    model.train()
    stop = False
    for epoch in range(epochs):
        if hasattr(train_loader.batch_sampler, "set_epoch"):
            train_loader.batch_sampler.set_epoch(epoch)
        if hasattr(getattr(train_loader.batch_sampler, "batch_sampler", None), "set_epoch"):
            train_loader.batch_sampler.batch_sampler.set_epoch(epoch)
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            rows = len(batch["labels"]) * accelerator.num_processes
            seen += rows
            window_seen += rows
            running_loss += float(loss.detach())
            running_count += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.update(1)
            if step % config.logging_steps == 0 or step == total_steps:
                now = time.perf_counter()
                speed = window_seen / max(now - window_start, 1e-9)
                mean_loss = running_loss / running_count
                log({"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": mean_loss,
                     "learning_rate": scheduler.get_last_lr()[0], "samples_per_s": speed})
                progress.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{speed:.1f}")
                running_loss, running_count, window_start, window_seen = 0.0, 0, now, 0
            if config.eval_every and step % config.eval_every == 0:
                stop = evaluate_and_keep(step / steps_per_epoch)
            if stop or step >= total_steps:
                break
        if not stop and not config.eval_every:
            stop = evaluate_and_keep(step / steps_per_epoch)
        if stop or step >= total_steps:
            break
    if config.eval_every and step % config.eval_every != 0 and not stop:
        evaluate_and_keep(step / steps_per_epoch)
    progress.close()
    elapsed = time.perf_counter() - started

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(accelerator.unwrap_model(model), tokenizer, run_dir / "last", {"step": step})
    result = TrainResult(
        run_dir=run_dir, best_dir=run_dir / "best", last_dir=run_dir / "last", metric=metric,
        best_metrics=best_metrics, best_step=best_step, steps=step, train_seconds=elapsed,
        samples_per_second=seen / max(elapsed - eval_seconds, 1e-9), history=history,
    )
    if accelerator.is_main_process:
        summary = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()
                   if k != "history"}
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_plots(run_dir, history, best_confusion, data.label_names, best_step)
    return result


def write_plots(run_dir: Path, history: list[dict], confusion, label_names, best_step: int) -> None:
    """plots/loss.png, plots/metrics.png and plots/confusion_matrix.png (of the best checkpoint)."""
    from tunelab.plots import plot_confusion, plot_training

    try:
        plot_training(history, run_dir / "plots")
        if confusion is not None:
            plot_confusion(confusion, label_names, run_dir / "plots" / "confusion_matrix.png",
                           title=f"Validation, best checkpoint (step {best_step})")
    except Exception as exc:  # noqa: BLE001 - plots must never cost a finished run
        logger.warning("could not write plots: %s", exc)
