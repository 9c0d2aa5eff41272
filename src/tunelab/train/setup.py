"""Setting a run up for its task: data, model, batches, optimizer and schedule, prepared by accelerate."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.checkpoint import atomic_write_text, clear_run_dir
from tunelab.errors import TunelabError
from tunelab.tasks.base import Settings

logger = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything the loop needs, built once (and again, identically, on resume)."""

    config: Any
    accelerator: Any
    task: Any
    data: Any
    settings: Settings
    model_name: str
    tokenizer: Any
    model: Any
    optimizer: Any
    scheduler: Any
    train_loader: Any
    val_loader: Any
    sampler: Any  # the training batch order, a function of (seed, epoch): resumable
    val_encoded: Any
    metric: str
    steps_per_epoch: int
    total_steps: int
    epochs: int
    warmup: int
    batching: str  # packed, grouped or random: what --batching resolved to
    learning_rate: float  # the encoder's peak rate: --learning-rate, or the default for the model's width
    head_learning_rate: float
    batch_size: int = 32  # --batch-size, or the task's
    label_counts: dict | None = None  # training rows (entities) per label, for model cards
    train_lengths: Any = None  # each training row's length in tokens (a tensor indexed by row), for tokens/s
    precision: Any = None  # tunelab.precision.Precision: what the run computes in


def requested_model(config, task) -> str:
    """The model as the user named it, or the task's default: what setup resolves and run records name."""
    return config.model or task.default_model


def resolve_metric(task, data, requested: str) -> str:
    """The metric that picks best/: the one asked for, or the task's default."""
    if requested == "auto":
        return task.default_metric(data)
    allowed = ("loss",) + tuple(task.reported_metrics(data))
    if requested not in allowed:
        extra = task.metric_hint(requested)
        raise TunelabError(f"--metric {requested} is not reported for {task.name}{extra}; use one of "
                           f"{', '.join(allowed)}")
    return requested


def setup(config, accelerator, data=None, precision=None) -> Setup:
    """Data, model, batches, optimizer and schedule for the data's task, prepared by accelerate."""
    from tunelab.tasks import load_task_data
    from tunelab.train.optim import build_optimizer, learning_rates, make_scheduler

    data = data or load_task_data(config.data_spec())
    task = data.task
    check_for_task(config, task, data)
    metric = resolve_metric(task, data, config.metric)
    weights = task.class_weights(data, config.class_weights)
    if weights:
        data.info["class_weights"] = weights  # recorded in config.yaml with what else was resolved
        logger.info("class weights: %s", ", ".join(f"{k} {v:.3g}" for k, v in list(weights.items())[:10]))
    model_name, tokenizer, model = build_model(config, task, data)
    max_length = block_length(config, task, tokenizer, model, model_name)
    stride = config.stride if config.stride is not None else task.stride
    settings = task.settings(config.task_values(), max_length, min(stride, max_length // 2), data)
    batch_size = config.batch_size or task.batch_size
    batches = build_batches(config, task, data, settings, tokenizer, model, accelerator, batch_size)
    plan = plan_steps(config, task, batches.train_loader, accelerator.num_processes)
    learning_rate, head_learning_rate = learning_rates(config, model.config, task)
    optimizer = build_optimizer(model, config, learning_rate, head_learning_rate, task.head_prefixes)
    # accelerate steps a prepared scheduler once per process at every optimizer step.
    processes = accelerator.num_processes
    scheduler = make_scheduler(optimizer, config.lr_scheduler, plan.warmup * processes, plan.total_steps * processes)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, batches.train_loader, batches.val_loader, scheduler)
    return Setup(config, accelerator, task, data, settings, model_name, tokenizer, model, optimizer, scheduler,
                 train_loader, val_loader, batches.sampler, batches.val_encoded, metric, plan.steps_per_epoch,
                 plan.total_steps, plan.epochs, plan.warmup, batches.batching, learning_rate, head_learning_rate,
                 batch_size, train_lengths=batches.train_lengths, precision=precision)


def check_for_task(config, task, data) -> None:
    """Refuse options the data's task does not read, and task options that do not fit the data."""
    if config.label_smoothing and not task.label_smoothing:
        what = task.data_noun or f"{task.name} data"
        raise TunelabError(f"--label-smoothing applies to classification, but {config.data} has {what}; "
                           "drop --label-smoothing")
    check_task_options(config, task)
    # The task's switches travel in its settings (stored with checkpoints) and in config.yaml.
    data.info.update({o.name: getattr(config, o.name) for o in task.options
                      if o.stored == "info" and "train" in o.commands})
    task.check_options(data)


def build_model(config, task, data) -> tuple[str, Any, Any]:
    """The model named (or the task's default) with the task's head, its tokenizer, and LoRA when asked."""
    from tunelab.modeling import load_model, load_tokenizer, resolve_model

    model_name = resolve_model(requested_model(config, task))
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, task, data, from_scratch=config.from_scratch,
                       freeze_encoder=config.freeze_encoder, freeze_embeddings=config.freeze_embeddings)
    if config.lora:
        from tunelab.lora import LoraOptions, apply_lora

        model = apply_lora(model, task.lora_task_type, LoraOptions(config.lora_r, config.lora_alpha,
                                                                   config.lora_dropout, config.lora_target_modules))
    return model_name, tokenizer, model


@dataclass
class Batches:
    """The encoded rows and their loaders."""

    train_loader: Any
    val_loader: Any
    sampler: Any
    val_encoded: Any
    batching: str
    train_lengths: Any


def build_batches(config, task, data, settings: Settings, tokenizer, model, accelerator, batch_size: int) -> Batches:
    """Training and validation rows encoded once, and their loaders (packed, grouped or random batches)."""
    from tunelab.collate import make_loader

    collator = task.collator(tokenizer, settings)
    train_encoded = task.encode(tokenizer, data.train, settings, training=True)
    val_encoded = task.encode(tokenizer, data.validation, settings, training=False)
    task.prepare(train_encoded, batch_size)
    task.before_training(model, [train_encoded, val_encoded], collator, settings, accelerator)
    packer = choose_packing(config.batching, task, model, tokenizer, train_encoded)
    batching = "packed" if packer else "grouped" if config.batching == "auto" else config.batching
    train_loader = make_loader(train_encoded, batch_size, packer or collator, config.seed,
                               group_by_length=batching == "grouped")
    eval_batch_size = config.eval_batch_size or task.eval_batch_size(model.config, settings.max_length)
    val_loader = make_loader(val_encoded, eval_batch_size, collator, shuffle=False)
    return Batches(train_loader, val_loader, train_loader.batch_sampler, val_encoded, batching,
                   torch.tensor(train_encoded.lengths))


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int
    epochs: int
    warmup: int


def plan_steps(config, task, train_loader, processes: int) -> Plan:
    """Optimizer steps per epoch and in all, epochs, warm-up steps (the task's default ratio)."""
    # Each process gets every n-th batch; its optimizer steps are what the loop counts.
    steps_per_epoch = math.ceil(math.ceil(len(train_loader) / processes) / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    ratio = task.warmup_ratio if config.warmup_ratio is None else config.warmup_ratio
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(ratio * total_steps)
    return Plan(steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch), warmup)


def check_task_options(config, task) -> None:
    """Refuse an option set away from its default for a task that does not read it."""
    from tunelab.tasks import registry, task_options

    mine = {o.name for o in task.options}
    owners: dict[str, list[str]] = {}
    for other in registry().values():
        for item in other.options:
            owners.setdefault(item.name, []).append(other.name)
    given = [o for o in task_options("train") if o.name not in mine and getattr(config, o.name) != o.default]
    special = [o.misplaced.format(task=task.name) for o in given if o.misplaced]
    if special:
        raise TunelabError(special[0])
    problems = [f"{o.flag} applies to {names(owners[o.name])}" for o in given]
    if config.block_size is not None and not task.reads_plain_text:
        problems.append("--block-size applies to causal-lm and masked-lm (use --max-length)")
    if problems:
        raise TunelabError(f"{'; '.join(problems)}: drop {'it' if len(problems) == 1 else 'them'} for {task.name}")


def names(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def block_length(config, task, tokenizer, model, model_name: str) -> int:
    """The longest row in pieces: --max-length clamped to the model; for language models on plain text
    --block-size when given, which must fit the model's context (a block is never cut)."""
    from tunelab.collate import effective_max_length

    if config.block_size is None:
        return effective_max_length(tokenizer, model.config, config.max_length or task.max_length)
    context = effective_max_length(tokenizer, model.config, None)
    if config.block_size > context:
        raise TunelabError(f"--block-size {config.block_size} is more than {model_name} takes ({context} positions); "
                           f"use --block-size {context} or less")
    return config.block_size


def choose_packing(requested: str, task, model, tokenizer, encoded):
    """The collator that packs training rows, or None for padded batches. Packing needs a task labeled per
    token and a model that gives packed rows the outputs it gives them padded: checked here on a few
    training rows, with positions from 0 and, for RoBERTa-style embeddings, from the padding id + 1."""
    from tunelab.collate import PackingCollator, packing_matches

    if requested in ("grouped", "random"):
        return None
    if not task.packs:
        if requested == "packed":
            raise TunelabError(f"--batching packed needs a task labeled per token; {task.name} is labeled per row: "
                               "use --batching grouped or random")
        return None
    lengths = encoded.lengths
    # The shortest rows and the longest: they pack into one model row beside it when they fit.
    probe = sorted(range(len(lengths)), key=lengths.__getitem__)
    rows = [encoded[i] for i in dict.fromkeys(probe[:3] + probe[-1:])]
    pad = tokenizer.pad_token_id or 0
    for offset in dict.fromkeys((0, pad + 1)):
        packer = PackingCollator(pad, position_offset=offset, causal=task.causal)
        if packing_matches(model, rows, packer, task.output_names):
            return packer
    what = f"{type(model).__name__} does not give packed rows the outputs it gives padded ones"
    if requested == "packed":
        raise TunelabError(f"--batching packed: {what}; use --batching grouped")
    logger.info("%s: training batches are length-grouped instead", what)
    return None


def run_record(s: Setup, run_dir: Path) -> dict:
    """The options and what was resolved from them: config.yaml, and the trackers' hyperparameters."""
    resolved = {"task": s.task.name, "model": requested_model(s.config, s.task), "model_path": s.model_name,
                "max_length": s.settings.max_length, "stride": s.settings.stride, "batch_size": s.batch_size,
                "metric": s.metric, "label_names": s.data.label_names, "train_rows": len(s.data.train),
                "validation_rows": len(s.data.validation), "total_steps": s.total_steps, "warmup_steps": s.warmup,
                "num_processes": s.accelerator.num_processes, "batching": s.batching,
                "learning_rate": s.learning_rate, "head_learning_rate": s.head_learning_rate,
                "precision": s.precision.name if s.precision else "fp32", **s.data.info, **s.settings.info}
    return {**dataclasses.asdict(s.config), "output": str(run_dir), "resolved": resolved}


def start_run_folder(s: Setup, run_dir: Path) -> None:
    """A new run: empty the folder when --overwrite said so, write config.yaml with what was resolved."""
    import yaml

    if s.config.overwrite:
        clear_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(run_record(s, run_dir), sort_keys=False)
    atomic_write_text(run_dir / "config.yaml", text)


def checkpoint_info(s: Setup, **extra) -> dict:
    """What a checkpoint's tunelab.json records: how its data was read and cut, and `extra`."""
    # The precision it was trained in; its weights are fp32 whatever that was.
    return {**extra, "precision": s.precision.name if s.precision else "fp32",
            "settings": dataclasses.asdict(s.settings)}


def model_card(s: Setup, run_dir: Path, metrics: dict, step: int, per_class: dict | None = None,
               curves: list[Path] = ()) -> str:
    """The README.md of a checkpoint saved at `step` with these validation `metrics`."""
    from tunelab.card import CardInfo, render

    if s.label_counts is None:  # counted once per run
        s.label_counts = s.task.label_counts(s.data)
    options = {**dataclasses.asdict(s.config), "max_length": s.settings.max_length, "stride": s.settings.stride,
               "batch_size": s.batch_size,
               "batching": s.batching, "warmup_steps": s.warmup, **s.settings.info,
               "learning_rate": s.learning_rate, "head_learning_rate": s.head_learning_rate}
    info = CardInfo(model=requested_model(s.config, s.task), data=s.config.data, task=s.task.name,
                    pipeline_tag=s.task.pipeline_tag, usage=s.task.card_usage(), command=s.task.card_command(),
                    train_rows=len(s.data.train), validation_rows=len(s.data.validation),
                    label_counts=s.label_counts, options=options, metrics=metrics, step=step,
                    epoch=round(step / s.steps_per_epoch, 2), per_class=per_class or {},
                    curves=tuple(p.name for p in curves))
    return render(info, run_dir.name)


def describe(s: Setup) -> str:
    """The hyperparameters a run trains with, defaults resolved: logged at its start."""
    from tunelab.train.optim import is_head

    c = s.config
    model = s.accelerator.unwrap_model(s.model)  # a DDP-wrapped model has no config of its own
    config = model.config
    default = "LoRA" if c.lora else f"hidden size {getattr(config, 'hidden_size', '?')}"
    rate = f"{s.learning_rate:g}" + ("" if c.learning_rate else f" (default for {default})")
    head = any(is_head(name, s.task.head_prefixes) for name, _ in model.named_parameters())  # LMs: no new head
    parts = [f"learning rate {rate}" + (f", head {s.head_learning_rate:g}" if head else ""),
             f"{c.lr_scheduler} schedule" + (f" after {s.warmup} warm-up step{'s' if s.warmup != 1 else ''}"
                                              if s.warmup else ", no warm-up"), f"batch {s.batch_size}"
             + (f" x {c.grad_accum} accumulated" if c.grad_accum > 1 else ""),
             f"{s.epochs} epoch{'s' if s.epochs != 1 else ''} ({s.total_steps} steps)",
             f"weight decay {c.weight_decay:g}", f"clipping {c.max_grad_norm:g}" if c.max_grad_norm else "no clipping",
             f"layer decay {c.layer_decay:g}" if c.layer_decay != 1 else "",
             f"evaluation every {c.eval_every} steps" if c.eval_every else "evaluation every epoch",
             f"{s.batching} batches", f"max length {s.settings.max_length}" + s.task.describe_reading(s.settings),
             "frozen embeddings" if c.freeze_embeddings else "",
             s.precision.describe() if s.precision else ""]
    return ", ".join(p for p in parts if p)


def configure_threads(config) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
    # Adam's moments of embedding rows that no batch touches decay towards zero and, after several
    # hundred steps, into subnormal floats, which x86 CPUs compute 10-100x slower. Flushing them to
    # zero changes nothing measurable (they are below 1e-38) and keeps long runs at full speed.
    torch.set_flush_denormal(True)
