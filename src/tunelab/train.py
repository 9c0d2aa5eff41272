"""Fine-tune a sequence classifier: a short training loop on accelerate."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from tunelab.checkpoint import (
    append_jsonl, atomic_write_text, clear_run_dir, latest_state, load_rng, prepare_run_dir, prune_states,
    save_checkpoint, save_rng,
)
from tunelab.collate import Collator, encode_frame, effective_max_length, make_loader
from tunelab.data import DataSpec, TaskData, load_task_data
from tunelab.errors import TunelabError, collect
from tunelab.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metrics, is_better, report
from tunelab.modeling import DEFAULT_MODEL, load_classifier, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")
# After the warm-up: linear decay to zero (the Trainer's default), half a cosine to zero (more steps near the
# peak and more at a low rate at the end), or constant.
LR_SCHEDULERS = ("linear", "cosine", "constant")
STATE_DIR = "state"


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
    head_learning_rate: float | None = None  # None: the same as learning_rate
    layer_decay: float = 1.0  # layer-wise learning-rate decay; 1.0: every layer at the same rate
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0  # classification only; the model's own loss when 0
    seed: int = 42
    eval_every: int | None = None  # steps; None evaluates at the end of every epoch
    logging_steps: int = 50
    metric: str = "auto"
    patience: int | None = None
    from_scratch: bool = False
    freeze_encoder: bool = False
    freeze_embeddings: bool = False
    group_by_length: bool = True
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True
    save_every: int | None = None  # training-state checkpoints every N steps (and always at each epoch end)
    keep_states: int = 2
    mixed_precision: str = "no"

    def check(self) -> None:
        problems = []
        positive = ["max_length", "epochs", "batch_size", "eval_batch_size", "grad_accum", "logging_steps", "keep_states"]
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got '{self.mixed_precision}'")
        for name in ("max_steps", "eval_every", "patience", "threads", "save_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            problems.append(f"--head-learning-rate must be positive, got {self.head_learning_rate}")
        if not 0 < self.layer_decay <= 1:
            problems.append(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if self.learning_rate <= 0:
            problems.append(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            problems.append(f"--warmup-steps must not be negative, got {self.warmup_steps}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            problems.append(f"--lr-scheduler must be one of {', '.join(LR_SCHEDULERS)}, got '{self.lr_scheduler}'")
        if self.max_grad_norm < 0:
            problems.append(f"--max-grad-norm must not be negative, got {self.max_grad_norm}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        elif self.label_smoothing and self.task == "regression":
            problems.append("--label-smoothing applies to classification; drop it for --task regression")
        known = ("auto", "loss") + CLASSIFICATION_METRICS + REGRESSION_METRICS
        if self.metric not in known:
            problems.append(f"--metric must be one of {', '.join(known)}, got '{self.metric}'")
        if self.from_scratch and self.freeze_encoder:
            problems.append("--from-scratch and --freeze-encoder together would train a head on random features")
        if self.from_scratch and self.freeze_embeddings:
            problems.append("--from-scratch and --freeze-embeddings together would keep random token embeddings")
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


@dataclass
class TrainState:
    """Where training stands; stored in each training-state checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed (per process)
    seen: int = 0
    best_value: float | None = None
    best_metrics: dict = field(default_factory=dict)
    best_step: int = 0
    evals_since_best: int = 0
    best_confusion: list | None = None
    running_loss: float = 0.0
    running_count: int = 0
    window_seen: int = 0
    window_clipped: int = 0  # optimizer steps since the last log whose gradients clipping rescaled


# ---------------------------------------------------------------- config files


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict:
    """The TrainConfig fields of a YAML file (a run's config.yaml works: its `resolved` part is skipped)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise TunelabError(f"config file not found: {path}; check the path")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TunelabError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise TunelabError(f"{path} must hold a mapping of option: value")
    values = {k.replace("-", "_"): v for k, v in values.items() if k != "resolved"}
    unknown = sorted(set(values) - config_fields())
    if unknown:
        raise TunelabError(f"unknown option(s) in {path}: {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(config_fields()))}")
    return values


def resume_config(run_dir: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The config a run was started with, to continue it in place."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise TunelabError(f"{run_dir} is not a tunelab run (no config.yaml); pass the folder given to --output")
    values = {**read_config_file(run_dir / "config.yaml"), **(overrides or {})}
    return TrainConfig(**{**values, "output": str(run_dir), "overwrite": False})


def check_mixed_precision(mode: str) -> None:
    """Refuse precisions the device cannot run well, with what to do instead."""
    if mode == "no":
        return
    if torch.cuda.is_available():
        if mode == "bf16" and not torch.cuda.is_bf16_supported():
            raise TunelabError("--mixed-precision bf16: this GPU has no bf16 support; use --mixed-precision fp16")
        return
    if mode == "fp16":
        raise TunelabError("--mixed-precision fp16 needs a CUDA GPU and none is available; "
                           "use --mixed-precision no on the CPU")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        raise TunelabError("--mixed-precision bf16: this CPU has no native bf16 (no AVX512_BF16 or AMX), where "
                           "bf16 runs several times slower than fp32; use --mixed-precision no")


# ---------------------------------------------------------------- training


HEAD_PREFIXES = ("classifier", "score", "pre_classifier")
# Where a transformer layer's index sits in parameter names: BERT "encoder.layer.3.", Llama "layers.3.",
# GPT-2 "h.3.", T5 "block.3.".
LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING_PARTS = {"embeddings", "embed_tokens", "embed_positions", "wte", "wpe"}


def _layer_scale(name: str, num_layers: int | None, layer_decay: float) -> float:
    """Layer-wise learning-rate decay: the top layer and everything above it (pooler, head) get the full
    rate, each layer below `layer_decay` times the rate of the one above, the embeddings the least."""
    if layer_decay == 1.0 or not num_layers:
        return 1.0
    match = LAYER_INDEX.search(f".{name}")
    if match:
        depth = int(match.group(1)) + 1
    elif EMBEDDING_PARTS.intersection(name.split(".")):
        depth = 0
    else:
        return 1.0
    return layer_decay ** (num_layers - depth)


def _param_groups(model: torch.nn.Module, weight_decay: float, head_learning_rate: float | None = None,
                  learning_rate: float | None = None, layer_decay: float = 1.0) -> list[dict]:
    """No weight decay on biases and normalization weights (all 1-D tensors); optionally a separate head
    rate (the randomly initialized classifier plus the pooler that feeds it) and layer-wise decay.

    Groups without "lr" take the optimizer's default rate.
    """
    config = getattr(model, "config", None)
    num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    groups: dict[tuple[bool, bool, float], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        head = head_learning_rate is not None and (name.startswith(HEAD_PREFIXES) or ".pooler." in f".{name}")
        decays = not (parameter.ndim < 2 or "norm" in name.lower())
        scale = _layer_scale(name, num_layers, layer_decay)
        groups.setdefault((head, decays, scale), []).append(parameter)
    out = []
    for (head, decays, scale), params in groups.items():
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if head:
            group["lr"] = head_learning_rate * scale
        elif scale != 1.0:
            group["lr"] = learning_rate * scale
        out.append(group)
    return out


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, total_steps: int):
    """A linear warm-up to the peak rate, then `name` (one of LR_SCHEDULERS) over the remaining steps."""
    from transformers import get_scheduler

    kind = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[name]
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def rate_now(optimizer: torch.optim.Optimizer, peak: float) -> float:
    """The scheduled --learning-rate now. Param groups may run at other rates (the head, layer decay), so
    the first group's rate is read as a fraction of its own peak (set by the scheduler as initial_lr)."""
    group = optimizer.param_groups[0]
    return peak * group["lr"] / group["initial_lr"]


def clip_gradients(accelerator, model: torch.nn.Module, max_norm: float, measure: bool = True) -> float | None:
    """Scale the gradients down to a total norm of `max_norm` (0: never) and return the norm before
    clipping; None when there is nothing to clip and `measure` is False (or the engine reports no norm).

    Measuring costs a pass over the gradients and clipping another (about 10 ms of a 140 ms MiniLM step
    on this CPU, bench/clip_cost.py), so without clipping the loop measures only the steps it logs.
    """
    if not max_norm and not measure:
        return None
    # accelerate unscales fp16 gradients first and knows how FSDP and DeepSpeed shards combine.
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    return None if norm is None else float(norm)


def training_loss(model, batch: dict, label_smoothing: float = 0.0) -> torch.Tensor:
    """The model's own loss, or cross-entropy against smoothed labels (computed here: transformers'
    classification heads take no smoothing argument). Evaluation always reports the plain loss."""
    if not label_smoothing:
        return model(**batch).loss
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"], label_smoothing=label_smoothing)


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


def train(config: TrainConfig, data: TaskData | None = None, resume: bool = False) -> TrainResult:
    """Fine-tune `config.model` on `config.data`; write the run folder; return the best metrics.

    With `resume`, continue the run in `config.output` from its newest training state:
    the same batches in the same order, the same random numbers, the same result.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config.check()
    check_mixed_precision(config.mixed_precision)
    run_dir = config.run_dir()
    state_path = latest_state(run_dir / STATE_DIR) if resume else None
    if resume and state_path is None:
        raise TunelabError(f"{run_dir} has no training state to resume from (no {STATE_DIR}/step-*); "
                           "start it again with --overwrite")
    if not resume:
        prepare_run_dir(run_dir, config.overwrite)  # fail before any slow work
    if config.threads:
        torch.set_num_threads(config.threads)
    # Adam's moments of embedding rows that no batch touches decay towards zero and, after several
    # hundred steps, into subnormal floats, which x86 CPUs compute 10-100x slower. Flushing them to
    # zero changes nothing measurable (they are below 1e-38) and keeps long runs at full speed.
    torch.set_flush_denormal(True)

    # cpu=True without a GPU: under torchrun-style launchers (`accelerate launch --multi_gpu`, torchrun) or
    # MPI (`accelerate launch --cpu --num_processes N --mpirun_hostfile ...`) the processes then join a gloo group.
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=config.mixed_precision,
                              cpu=not torch.cuda.is_available())
    accelerator.wait_for_everyone()  # every process has checked the run folder before the main one writes
    if resume:
        _check_state_processes(state_path, accelerator.num_processes)  # before the slow loading
    set_seed(config.seed)
    data = data or load_task_data(config.data_spec())
    if config.label_smoothing and data.is_regression:
        raise TunelabError(f"--label-smoothing applies to classification, but {config.data} has numeric labels "
                           "(regression); drop --label-smoothing")
    model_name = resolve_model(config.model)
    tokenizer = load_tokenizer(model_name)
    model = load_classifier(
        model_name, data.label_names, from_scratch=config.from_scratch,
        freeze_encoder=config.freeze_encoder, freeze_embeddings=config.freeze_embeddings,
        label_values=data.label_values,
    )
    max_length = effective_max_length(tokenizer, model.config, config.max_length)
    metric = config.metric if config.metric != "auto" else ("pearson" if data.is_regression else "accuracy")

    collator = Collator(tokenizer.pad_token_id or 0, regression=data.is_regression)
    train_loader = make_loader(encode_frame(tokenizer, data.train, max_length), config.batch_size, collator,
                               config.seed, group_by_length=config.group_by_length)
    val_loader = make_loader(encode_frame(tokenizer, data.validation, max_length), config.eval_batch_size,
                             collator, shuffle=False)
    sampler = train_loader.batch_sampler  # orders batches from (seed, epoch) alone: resumable
    # Each process gets every n-th batch; its optimizer steps are what the loop counts.
    processes = accelerator.num_processes
    steps_per_epoch = math.ceil(math.ceil(len(train_loader) / processes) / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * total_steps)

    # The fused kernel (CPU and CUDA) does the same update in one pass; on this class of CPU the
    # default multi-tensor AdamW step costs as much as a MiniLM forward and backward pass.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    groups = _param_groups(model, config.weight_decay, config.head_learning_rate, config.learning_rate,
                           config.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused)
    # accelerate steps a prepared scheduler once per process at every optimizer step.
    scheduler = make_scheduler(optimizer, config.lr_scheduler, warmup * processes, total_steps * processes)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )

    state = TrainState()
    history: list[dict] = []
    if resume:
        state, history = _restore(state_path, run_dir, accelerator, model, optimizer, scheduler)
        logger.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, state.step, state.epoch,
                    state.batch_in_epoch)
    elif accelerator.is_main_process:
        if config.overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {"model_path": model_name, "max_length": max_length, "metric": metric,
                    "label_names": data.label_names, "train_rows": len(data.train),
                    "validation_rows": len(data.validation), "total_steps": total_steps, "warmup_steps": warmup,
                    "num_processes": accelerator.num_processes}
        import yaml

        text = yaml.safe_dump({**dataclasses.asdict(config), "output": str(run_dir), "resolved": resolved},
                              sort_keys=False)
        atomic_write_text(run_dir / "config.yaml", text)
    logger.info("training %s on %d rows: %d epochs, %d steps, %d warm-up", model_name, len(data.train),
                epochs, total_steps, warmup)

    started = time.perf_counter()
    window_start, eval_seconds = started, 0.0
    progress = tqdm(total=total_steps, initial=state.step, desc="train", dynamic_ncols=True, mininterval=1.0,
                    disable=not (config.progress and accelerator.is_local_main_process))

    def log(record: dict) -> None:
        history.append(record)
        if accelerator.is_main_process:
            append_jsonl(run_dir / "metrics.jsonl", record)

    def evaluate_and_keep() -> bool:
        """Evaluate, save `best/` on improvement; return True when patience ran out."""
        nonlocal eval_seconds, window_start
        eval_started = time.perf_counter()
        epoch = state.step / steps_per_epoch
        metrics, logits, labels = evaluate_loader(model, val_loader, accelerator, data.num_labels)
        log({"step": state.step, "epoch": round(epoch, 4), **{f"eval_{k}": v for k, v in metrics.items()}})
        if accelerator.is_main_process:
            message = f"step {state.step} (epoch {epoch:.2f}): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            progress.write(message, file=sys.stderr) if not progress.disable else logger.info(message)
        improved = is_better(metric, metrics[metric], state.best_value)
        if improved:
            state.best_value, state.best_metrics, state.best_step = metrics[metric], metrics, state.step
            state.evals_since_best = 0
            if not data.is_regression:
                state.best_confusion = report(logits.argmax(-1), labels, data.label_names)["confusion_matrix"]
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(accelerator.unwrap_model(model), tokenizer, run_dir / "best",
                                {"step": state.step, "epoch": epoch, "metrics": metrics, "metric": metric})
        else:
            state.evals_since_best += 1
        spent = time.perf_counter() - eval_started  # training speed excludes evaluation time
        eval_seconds += spent
        window_start += spent
        return not improved and config.patience is not None and state.evals_since_best >= config.patience

    def logs_at(step: int) -> bool:
        return step % config.logging_steps == 0 or step == total_steps

    grad_norm = None
    seen_before = state.seen  # rows trained before a resume do not count towards this process's speed
    model.train()
    stop = False
    for epoch in range(state.epoch, epochs):
        # accelerate's loader re-sets its sampler's epoch from its own iteration count on every pass,
        # so set that count too: a resumed run has not iterated this loader before.
        train_loader.set_epoch(epoch)
        batches = train_loader
        if state.batch_in_epoch:
            batches = accelerator.skip_first_batches(train_loader, state.batch_in_epoch)
            batches.set_epoch(epoch)
        sampler.set_epoch(epoch)
        epoch_done = False
        for batch in batches:
            with accelerator.accumulate(model):
                loss = training_loss(model, batch, config.label_smoothing)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    # The norm is measured every step only when clipping needs it; otherwise on logged steps.
                    grad_norm = clip_gradients(accelerator, model, config.max_grad_norm,
                                               measure=logs_at(state.step + 1))
                    if config.max_grad_norm:
                        state.window_clipped += grad_norm is not None and grad_norm > config.max_grad_norm
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            rows = len(batch["labels"]) * accelerator.num_processes
            state.batch_in_epoch += 1
            state.seen += rows
            state.window_seen += rows
            state.running_loss += float(loss.detach())
            state.running_count += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            progress.update(1)
            if logs_at(state.step):
                now = time.perf_counter()
                speed = state.window_seen / max(now - window_start, 1e-9)
                mean_loss = state.running_loss / state.running_count
                record = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 4), "loss": mean_loss,
                          "learning_rate": rate_now(optimizer, config.learning_rate), "samples_per_s": speed}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm  # before clipping, at this step (as the Trainer logs it)
                if config.max_grad_norm:
                    # How often --max-grad-norm bound in this window: near 1, it rescales nearly every step.
                    # The window began after the previous log, at a multiple of --logging-steps.
                    window_steps = state.step - (state.step - 1) // config.logging_steps * config.logging_steps
                    record["clipped"] = round(state.window_clipped / window_steps, 4)
                log(record)
                progress.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{speed:.1f}")
                state.running_loss, state.running_count, state.window_seen, window_start = 0.0, 0, 0, now
                state.window_clipped = 0
            if config.eval_every and state.step % config.eval_every == 0:
                stop = evaluate_and_keep()
            mid_epoch = state.batch_in_epoch < len(train_loader)  # the epoch's end saves its own state
            if config.save_every and state.step % config.save_every == 0 and state.step < total_steps and mid_epoch:
                _save_state(run_dir, state, accelerator, model, optimizer, scheduler, config.keep_states)
            if stop or state.step >= total_steps:
                break
        else:
            epoch_done = True
        epoch_done = epoch_done or state.batch_in_epoch >= len(train_loader)
        if epoch_done:
            state.epoch, state.batch_in_epoch = epoch + 1, 0
        if not stop and not config.eval_every and (epoch_done or state.step >= total_steps):
            stop = evaluate_and_keep()
        if stop or state.step >= total_steps:
            break
        _save_state(run_dir, state, accelerator, model, optimizer, scheduler, config.keep_states)
    if config.eval_every and state.step % config.eval_every != 0 and not stop:
        evaluate_and_keep()
    progress.close()
    elapsed = time.perf_counter() - started

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(accelerator.unwrap_model(model), tokenizer, run_dir / "last", {"step": state.step})
    result = TrainResult(
        run_dir=run_dir, best_dir=run_dir / "best", last_dir=run_dir / "last", metric=metric,
        best_metrics=state.best_metrics, best_step=state.best_step, steps=state.step, train_seconds=elapsed,
        samples_per_second=(state.seen - seen_before) / max(elapsed - eval_seconds, 1e-9), history=history,
    )
    if accelerator.is_main_process:
        summary = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()
                   if k != "history"}
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_plots(run_dir, history, state.best_confusion, data.label_names, state.best_step)
    accelerator.end_training()
    return result


# ---------------------------------------------------------------- training state


def _save_state(run_dir: Path, state: TrainState, accelerator, model, optimizer, scheduler, keep: int) -> None:
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
    save_rng(staging / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(staging / "model.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        record = {k: v for k, v in dataclasses.asdict(state).items()}
        record["num_processes"] = accelerator.num_processes
        (staging / "trainer_state.json").write_text(json.dumps(record), encoding="utf-8")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if (folder / name).exists():  # the same step saved again after a resume
            shutil.rmtree(folder / name)
        os.replace(staging, folder / name)
        prune_states(folder, keep)
    accelerator.wait_for_everyone()


def _check_state_processes(path: Path, num_processes: int) -> None:
    """A training state holds one RNG state and one data position per process: refuse another count."""
    record = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved_by = record.get("num_processes", 1)
    if saved_by != num_processes:
        raise TunelabError(f"{path} was saved by {saved_by} processes, but this run has {num_processes}; "
                           "resume with the same number of processes")


def _restore(path: Path, run_dir: Path, accelerator, model, optimizer, scheduler) -> tuple[TrainState, list[dict]]:
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
