"""Every training option, declared once: its default, its help and its rules.

The `tunelab train` command line and the sweep's list of sweepable options are
built from these fields, so an option added here appears everywhere with no
other edit.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, collect
from tunelab.long_text import LONG_TEXT

MIXED_PRECISION = ("no", "fp16", "bf16")
# After the warm-up: linear decay to zero (the Trainer's default), half a cosine to zero (more steps near the
# peak and more at a low rate at the end), or constant.
LR_SCHEDULERS = ("linear", "cosine", "constant")
BATCHING = ("auto", "packed", "grouped", "random")


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), sweep: str | None = None,
           on_resume: bool = False, cli: bool = True):
    """A TrainConfig field with what the command line needs: its help, extra flags (a short form),
    the plural flag `tunelab sweep` takes for it, and whether --resume may change it."""
    return field(default=default, metadata={"help": help, "flags": flags, "sweep": sweep, "on_resume": on_resume,
                                            "cli": cli})


@dataclass
class TrainConfig:
    """Every option of a training run; `check` reports all bad values at once."""

    data: str | None = option(None, "A file (.csv .tsv .json .jsonl .parquet, or a CoNLL .conll/.iob/.txt), a "
                              "save_to_disk folder, a hub dataset id, or a built-in: rotten-tomatoes, stsb. Language "
                              "models also read plain .txt files and folders of them.", flags=("-d",))
    output: str | None = option(None, "Run folder (default runs/DATA-TIME).", flags=("-o",))
    model: str | None = option(None, "A hub id, a local folder, 'minilm' (the bundled all-MiniLM-L6-v2) or "
                               "'smollm2' (the bundled SmolLM2-135M-Instruct). Default: minilm; smollm2 for "
                               "causal-lm.", flags=("-m",))
    task: str = option("auto", "auto (from the data), classification, multi-label, regression, "
                       "token-classification, causal-lm (chat or plain text) or masked-lm (plain text).")
    text_column: str = option("text", "Column with the text.")
    text_pair_column: str | None = option(None, "Column with the second text of a pair.")
    label_column: str = option("label", "Column with the label.")
    tokens_column: str = option("tokens", "Token classification: the column of word lists.")
    tags_column: str = option("tags", "Token classification: the column of tag lists.")
    tag_column: int = option(-1, "Token classification, CoNLL files: the tag column, 0-based (-1: the last).")
    label_separator: str = option(",", "Multi-label: what separates a row's labels in the label column.")
    label_columns: str | None = option(None, "Multi-label: columns that mark each label with 1 (and 0), "
                                       "comma-separated, instead of one label column.")
    messages_column: str = option("messages", "Causal LM: the column of chat turns (a list of {role, content}).")
    prompt_column: str = option("prompt", "Causal LM: the prompt column of prompt / completion data.")
    completion_column: str = option("completion", "Causal LM: the completion column of prompt / completion data.")
    train_on_prompt: bool = option(False, "Causal LM, chat data: compute the loss on every token, not only on the "
                                   "assistant's answers.")
    eval_generate: int = option(0, "Causal LM, chat data: at each evaluation also answer the first N validation "
                                "prompts greedily: exact match and token F1 against the references (--metric "
                                "exact_match picks best/ by them), samples in samples.jsonl.")
    line_per_document: bool = option(False, "Language models, .txt files: each line is a document (default: "
                                     "blocks separated by blank lines).")
    block_size: int | None = option(None, "Language models, plain text: tokens per training block (documents are "
                                    "joined with the end-of-text token and cut into blocks). Default: --max-length.")
    mlm_probability: float = option(0.15, "Masked LM: the share of pieces (or words) masked as targets.")
    whole_word_mask: bool = option(False, "Masked LM: mask whole words (all their pieces or none).")
    lora: bool = option(False, "Causal LM: train LoRA adapters (peft) instead of every weight; best/ holds the "
                        "merged model and best/adapter/ the adapter alone.")
    lora_r: int = option(16, "LoRA rank.", sweep="lora-rs")
    lora_alpha: int = option(32, "LoRA alpha (the adapters' scale is alpha / r).")
    lora_dropout: float = option(0.05, "Dropout on the LoRA adapters' input.")
    lora_target_modules: str | None = option(None, "LoRA: the linear layers to adapt, comma-separated (default: "
                                             "peft's list for the architecture, e.g. q_proj,v_proj).")
    label_all_tokens: bool = option(False, "Token classification: label every piece of a word (B- becomes I- "
                                    "after the first), not only the first.")
    validation: str | None = option(None, "Validation file, or split name of the source.")
    validation_fraction: float = option(0.1, "Share split off (stratified) when there is no validation data.")
    limit: int | None = option(None, "Use at most N training rows (quick runs).")
    max_length: int = option(128, "Longest input in tokenizer pieces (clamped to the model's limit).")
    stride: int = option(32, "Pieces shared by consecutive windows of a text longer than --max-length (token "
                         "classification; classification with --long-text windows), at most half a window.")
    long_text: str = option("auto", "Classification: texts longer than --max-length are read whole in overlapping "
                            "windows (each with the text's label; a text's probabilities are its windows' mean) or "
                            "cut (truncate). auto: windows when more than 3% of the training texts are long. "
                            "Stored with the checkpoint.", sweep="long-texts")
    epochs: int = option(3, "Training epochs.", sweep="epochs")
    max_steps: int | None = option(None, "Stop after N optimizer steps.")
    batch_size: int = option(32, "Training batch size per process.", sweep="batch-sizes")
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
    metric: str = option("auto", "Metric that picks best/: accuracy, f1, mcc, precision, recall, loss, pearson, "
                         "spearman, mse, micro_f1, macro_f1, subset_accuracy (and their _tuned forms) (auto: "
                         "accuracy; pearson for regression; f1 for token classification; macro_f1_tuned for multi-label; loss for language models).")
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
    mixed_precision: str = option("no", "no, fp16 or bf16 (GPUs; refused where the device cannot).")

    def check(self) -> None:
        from tunelab.tasks import registry

        tasks = registry()
        problems = []
        if not self.data:
            problems.append("--data is required (or give data: in --config)")
        positive = ["max_length", "epochs", "batch_size", "eval_batch_size", "grad_accum", "logging_steps", "keep_states"]
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.eval_generate < 0:
            problems.append(f"--eval-generate must not be negative, got {self.eval_generate}")
        if self.block_size is not None and self.block_size < 2:
            problems.append(f"--block-size must be at least 2, got {self.block_size}")
        if not 0 < self.mlm_probability < 1:
            problems.append(f"--mlm-probability must be between 0 and 1 (exclusive), got {self.mlm_probability}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.stride < 0:
            problems.append(f"--stride must not be negative, got {self.stride}")
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
        if self.learning_rate is not None and self.learning_rate <= 0:
            problems.append(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            problems.append(f"--warmup-steps must not be negative, got {self.warmup_steps}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            problems.append(f"--lr-scheduler must be one of {', '.join(LR_SCHEDULERS)}, got '{self.lr_scheduler}'")
        if self.class_weights not in ("none", "balanced") and not Path(self.class_weights).expanduser().is_file():
            problems.append(f"--class-weights must be none, balanced or a JSON file of label: weight; "
                            f"{self.class_weights} is not a file")
        if self.batching not in BATCHING:
            problems.append(f"--batching must be one of {', '.join(BATCHING)}, got '{self.batching}'")
        if self.long_text not in LONG_TEXT:
            problems.append(f"--long-text must be one of {', '.join(LONG_TEXT)}, got '{self.long_text}'")
        try:
            from tunelab.tracking import check_installed, parse_report_to

            check_installed(parse_report_to(self.report_to))
        except TunelabError as exc:
            problems.append(str(exc))
        if self.max_grad_norm < 0:
            problems.append(f"--max-grad-norm must not be negative, got {self.max_grad_norm}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        elif self.label_smoothing and self.task in tasks and not tasks[self.task].label_smoothing:
            problems.append(f"--label-smoothing applies to classification; drop it for --task {self.task}")
        known = ("auto", "loss") + tuple(dict.fromkeys(m for t in tasks.values() for m in t.metrics))
        if self.metric not in known:
            problems.append(f"--metric must be one of {', '.join(known)}, got '{self.metric}'")
        if self.from_scratch and self.freeze_encoder:
            problems.append("--from-scratch and --freeze-encoder together would train a head on random features")
        if self.from_scratch and self.freeze_embeddings:
            problems.append("--from-scratch and --freeze-embeddings together would keep random token embeddings")
        if self.data:
            try:
                self.data_spec().check()
            except TunelabError as exc:
                problems.append(str(exc))
        collect(problems)

    def data_spec(self):
        from tunelab.data import DataSpec

        return DataSpec(
            source=self.data, text_column=self.text_column, text_pair_column=self.text_pair_column,
            label_column=self.label_column, tokens_column=self.tokens_column, tags_column=self.tags_column,
            tag_column=self.tag_column, label_separator=self.label_separator, label_columns=self.label_columns,
            messages_column=self.messages_column, prompt_column=self.prompt_column,
            completion_column=self.completion_column, line_per_document=self.line_per_document,
            validation=self.validation,
            validation_fraction=self.validation_fraction, seed=self.seed, limit=self.limit, task=self.task,
        )

    def run_dir(self) -> Path:
        if self.output:
            return Path(self.output).expanduser()
        name = Path(self.data).name.split(".")[0] or "run"
        return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


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


def check_mixed_precision(mode: str) -> None:
    """Refuse precisions the device cannot run well, with what to do instead."""
    import torch

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
