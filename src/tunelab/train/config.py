"""Every training option, declared once: its default, its help and its rules.

`RunConfig` holds the options of every run; each task declares its own (its
columns and switches) in its module, and `TrainConfig` is the two together.
The `tunelab train` command line, config files and the sweep's list of
sweepable options are built from these fields, so an option added in either
place appears everywhere with no other edit.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, collect
from tunelab.options import option
from tunelab.precision import LEGACY, check_name

# After the warm-up: linear decay to zero (the Trainer's default), half a cosine to zero (more steps near the
# peak and more at a low rate at the end), or constant.
LR_SCHEDULERS = ("linear", "cosine", "constant")
BATCHING = ("auto", "packed", "grouped", "random")


@dataclass
class RunConfig:
    """The options of every run (TrainConfig adds the tasks' own); `check` reports all bad values at once."""

    data: str | None = option(None, "A file (.csv .tsv .json .jsonl .parquet, or a CoNLL .conll/.iob/.txt), a "
                              "save_to_disk folder, a hub dataset id, or a built-in: rotten-tomatoes, stsb. Language "
                              "models also read plain .txt files and folders of them.", flags=("-d",))
    output: str | None = option(None, "Run folder (default runs/DATA-TIME).", flags=("-o",))
    model: str | None = option(None, "A hub id, a local folder, 'minilm' (the bundled all-MiniLM-L6-v2) or "
                               "'smollm2' (the bundled SmolLM2-135M-Instruct). Default: minilm; smollm2 for "
                               "causal-lm.", flags=("-m",))
    block_size: int | None = option(None, "Language models, plain text: tokens per training block (documents are "
                                    "joined with the end-of-text token and cut into blocks). Default: --max-length.")
    lora: bool = option(False, "Causal LM: train LoRA adapters (peft) instead of every weight; best/ holds the "
                        "merged model and best/adapter/ the adapter alone.")
    lora_r: int = option(16, "LoRA rank.", sweep="lora-rs")
    lora_alpha: int = option(32, "LoRA alpha (the adapters' scale is alpha / r).")
    lora_dropout: float = option(0.05, "Dropout on the LoRA adapters' input.")
    lora_target_modules: str | None = option(None, "LoRA: the linear layers to adapt, comma-separated (default: "
                                             "peft's list for the architecture, e.g. q_proj,v_proj).")
    validation: str | None = option(None, "Validation file, or split name of the source.")
    validation_fraction: float = option(0.1, "Share split off (stratified) when there is no validation data.")
    limit: int | None = option(None, "Use at most N training rows (quick runs).")
    max_length: int | None = option(None, "Longest input in tokenizer pieces (clamped to the model's limit). "
                                    "Default: the task's (128; question answering 384).")
    stride: int | None = option(None, "Pieces shared by consecutive windows of a text longer than --max-length (token "
                                "classification, question answering; classification with --long-text windows), at "
                                "most half a window. Default: the task's (32; question answering 128).")
    epochs: int = option(3, "Training epochs.", sweep="epochs")
    max_steps: int | None = option(None, "Stop after N optimizer steps.")
    batch_size: int | None = option(None, "Training batch size per process (default: the task's: 32 rows; multiple "
                                    "choice 8, each row several choices).", sweep="batch-sizes")
    eval_batch_size: int | None = option(None, "Evaluation batch size (default 128 rows; language models: as many "
                                         "as keep a batch's vocabulary logits under 512 MiB).")
    learning_rate: float | None = option(None, "Peak learning rate of the encoder (AdamW). Default: 5e-5 x 768 / "
                                         "the model's hidden size (MiniLM: 1e-4; base models: 5e-5).",
                                         flags=("--lr",), sweep="learning-rates")
    head_learning_rate: float | None = option(None, "Peak learning rate of the head and pooler (default 1e-3: "
                                              "they start from random weights).")
    layer_decay: float = option(1.0, "Layer-wise learning-rate decay: each layer below the top trains at this "
                                "times the rate of the one above (0.8 is common; 1 disables).")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorm).", sweep="weight-decays")
    warmup_steps: int | None = option(None, "Linear warm-up steps (overrides --warmup-ratio).", sweep="warmup-steps")
    warmup_ratio: float | None = option(None, "Warm-up as a share of all steps (default: the task's; none for "
                                        "sequence classification, 0.1 for the others).")
    lr_scheduler: str = option("linear", "After the warm-up: linear (decay to 0), cosine (half a cosine to 0) "
                               "or constant.", sweep="lr-schedulers")
    grad_accum: int = option(1, "Gradient accumulation steps.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 disables).")
    class_weights: str = option("none", "Weigh the loss by label: none, balanced (single-label: n / (classes x "
                                "count); multi-label: each label's negatives / positives as BCE pos_weight), or a "
                                "JSON file of label: weight.", sweep="class-weights-list")
    label_smoothing: float = option(0.0, "Classification: train against labels smoothed by this share (0.1 is "
                                    "common; 0 disables).", sweep="label-smoothings")
    seed: int = option(42, "Random seed.")
    eval_every: int | None = option(None, "Evaluate every N steps (default: every epoch).")
    eval_before: bool = option(False, "Evaluate once before the first step too: the pretrained model's validation "
                               "figures (perplexity before fine-tuning) in metrics.jsonl at step 0.")
    logging_steps: int = option(50, "Log the training loss every N steps.", on_resume=True)
    patience: int | None = option(None, "Stop after N evaluations without improvement.")
    from_scratch: bool = option(False, "Random weights from the model's config.")
    freeze_encoder: bool = option(False, "Train only the head.")
    freeze_embeddings: bool = option(False, "Keep the token-embedding matrix pretrained (faster steps).")
    batching: str = option("auto", "How training rows form batches: packed (random batches laid end to end, no "
                           "padding; tasks labeled per token, models that take position ids and a 4-D attention "
                           "mask), grouped (batches of similar length, little padding) or random (padded random "
                           "batches). auto: packed where the task and model allow it, else grouped.")

    report_to: str = option("none", "Experiment trackers, separated by commas: tensorboard, mlflow, wandb, comet_ml, "
                            "aim, clearml, dvclive, swanlab, trackio (through accelerate), or none.", on_resume=True)
    run_name: str | None = option(None, "The run's name in the trackers (default: the run folder's name).",
                                  on_resume=True)
    threads: int | None = option(None, "torch threads (default: torch's choice).", on_resume=True)
    overwrite: bool = option(False, "Replace an existing run folder.")
    progress: bool = option(True, "Show a progress bar.", on_resume=True)
    save_every: int | None = option(None, "Write a training state every N steps (always at each epoch end).")
    keep_states: int = option(2, "Training states kept.", on_resume=True)
    precision: str = option("auto", "auto: bf16 autocast with fp32 weights where the CPU (AMX, AVX512-BF16) or GPU "
                            "computes bf16 natively, fp32 elsewhere; fp32 or bf16 force it; fp16 on CUDA GPUs. "
                            "Checkpoints are always fp32.", flags=("--mixed-precision",))

    def check(self) -> None:
        collect(self.problems())

    def problems(self) -> list[str]:
        """Every bad value, and every option the named task does not read, found before any file is read."""
        from tunelab.tasks import option_problems, registry, task_names

        problems = [] if self.data else ["--data is required (or give data: in --config)"]
        problems += self.range_problems() + self.combination_problems()
        problems += [f"--{k.replace('_', '-')} must be one of {', '.join(v)}, got '{getattr(self, k)}'"
                     for k, v in (("lr_scheduler", LR_SCHEDULERS),
                                  ("batching", BATCHING), ("task", task_names()), ("metric", metric_names()))
                     if getattr(self, k) not in v]
        problems += [p for p in [check_name(self.precision)] if p]
        problems += self.data_spec().problems() + option_problems(self.task_values(), self.task)
        if self.label_smoothing and self.task in registry() and not registry()[self.task].label_smoothing:
            problems.append(f"--label-smoothing applies to classification; drop it for --task {self.task}")
        try:
            from tunelab.tracking import check_installed, parse_report_to

            check_installed(parse_report_to(self.report_to))
        except TunelabError as exc:
            problems.append(str(exc))
        return problems

    def range_problems(self) -> list[str]:
        at_least = {**dict.fromkeys(("max_length", "epochs", "batch_size", "eval_batch_size", "grad_accum",
                                     "logging_steps", "keep_states", "lora_r", "lora_alpha", "max_steps",
                                     "eval_every", "patience", "threads", "save_every"), 1), "block_size": 2}
        problems = [f"--{k.replace('_', '-')} must be at least {least}, got {getattr(self, k)}"
                    for k, least in at_least.items() if getattr(self, k) is not None and getattr(self, k) < least]
        not_negative = ("stride", "weight_decay", "warmup_steps", "max_grad_norm")
        problems += [f"--{k.replace('_', '-')} must not be negative, got {getattr(self, k)}" for k in not_negative
                     if getattr(self, k) is not None and getattr(self, k) < 0]
        positive = ("head_learning_rate", "learning_rate")
        problems += [f"--{k.replace('_', '-')} must be positive, got {getattr(self, k)}" for k in positive
                     if getattr(self, k) is not None and getattr(self, k) <= 0]
        within = {"lora_dropout": ("[0, 1)", 0 <= self.lora_dropout < 1),
                  "layer_decay": ("(0, 1]", 0 < self.layer_decay <= 1),
                  "warmup_ratio": ("[0, 1)", self.warmup_ratio is None or 0 <= self.warmup_ratio < 1),
                  "label_smoothing": ("[0, 1)", 0 <= self.label_smoothing < 1)}
        return problems + [f"--{k.replace('_', '-')} must be in {span}, got {getattr(self, k)}"
                           for k, (span, ok) in within.items() if not ok]

    def combination_problems(self) -> list[str]:
        problems = []
        if self.class_weights not in ("none", "balanced") and not Path(self.class_weights).expanduser().is_file():
            problems.append(f"--class-weights must be none, balanced or a JSON file of label: weight; "
                            f"{self.class_weights} is not a file")
        if self.from_scratch and self.freeze_encoder:
            problems.append("--from-scratch and --freeze-encoder together would train a head on random features")
        if self.from_scratch and self.freeze_embeddings:
            problems.append("--from-scratch and --freeze-embeddings together would keep random token embeddings")
        return problems

    def task_values(self) -> dict:
        """The values of the options the tasks declare."""
        from tunelab.tasks import task_options

        return {o.name: getattr(self, o.name) for o in task_options("train")}

    def data_spec(self):
        from tunelab.data import DataSpec

        return DataSpec(self.data, validation=self.validation, validation_fraction=self.validation_fraction,
                        seed=self.seed, limit=self.limit, task=self.task, **self.task_values())

    def run_dir(self) -> Path:
        if self.output:
            return Path(self.output).expanduser()
        name = Path(self.data).name.split(".")[0] or "run"
        return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def metric_names() -> tuple[str, ...]:
    """What --metric takes: auto, loss, or a metric some task reports."""
    from tunelab.tasks import registry

    return ("auto", "loss") + tuple(dict.fromkeys(m for t in registry().values() for m in t.metrics))


def compose() -> type:
    """TrainConfig: RunConfig's options, --task and --metric (their help names the registered tasks), and
    the options every task declares."""
    from tunelab.tasks import registry, task_options

    tasks = registry().values()
    task_help = "auto (from the data) or a task: " + "; ".join(f"{t.name} ({t.summary})" for t in tasks) + "."
    metric_help = ("Metric that picks best/ (auto: the task's: " + "; ".join(
        dict.fromkeys(f"{t.name} {t.default_metric(None)}" for t in tasks)) + "): " + ", ".join(metric_names()[1:]) + ".")
    own = [("task", str, option("auto", task_help)), ("metric", str, option("auto", metric_help))]
    fields = own + [o.field() for o in task_options("train")]
    return dataclasses.make_dataclass("TrainConfig", fields, bases=(RunConfig,), namespace={
        "__doc__": "Every option of a training run: RunConfig's and the tasks' own.", "__module__": __name__})


TrainConfig = compose()


def config_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def field_types() -> dict[str, Any]:
    """Each field's type (the annotations are strings under `from __future__ import annotations`)."""
    return typing.get_type_hints(TrainConfig)


def sweepable() -> dict[str, str]:
    """Field name -> the plural flag `tunelab sweep` takes for it."""
    return {f.name: f.metadata["sweep"] for f in dataclasses.fields(TrainConfig) if f.metadata.get("sweep")}


def changeable_on_resume() -> set[str]:
    """Options that do not change what a run computes, so --resume may change them."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("on_resume")}


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
    legacy = values.pop("mixed_precision", None)  # runs from before --precision
    if legacy is not None:
        values.setdefault("precision", LEGACY.get(legacy, legacy))
    unknown = sorted(set(values) - set(config_fields()))
    if unknown:
        raise TunelabError(f"unknown option(s) in {path}: {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(config_fields()))}")
    return values


def resume_config(run_dir: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The config a run was started with, to continue it in place; only options that do not change what
    the run computes may be overridden."""
    run_dir = Path(run_dir)
    changed = sorted(set(overrides or {}) - changeable_on_resume())
    if changed:
        raise TunelabError("--resume continues a run as it was configured; drop "
                           + ", ".join("--" + c.replace("_", "-") for c in changed))
    if not (run_dir / "config.yaml").exists():
        raise TunelabError(f"{run_dir} is not a tunelab run (no config.yaml); pass the folder given to --output")
    values = {**read_config_file(run_dir / "config.yaml"), **(overrides or {})}
    return TrainConfig(**{**values, "output": str(run_dir), "overwrite": False})
