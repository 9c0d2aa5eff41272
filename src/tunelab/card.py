"""The model card (README.md) every saved checkpoint carries: Hub metadata, then how it was made and used.

Local data and models are named by their folder or file name only: a card must not carry a path of the
machine it was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunelab.modeling import DEFAULT_ALIASES

BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Options a reader needs to repeat the run (the rest are in the run's config.yaml).
SHOWN_OPTIONS = ("epochs", "batch_size", "learning_rate", "head_learning_rate", "layer_decay", "weight_decay",
                 "warmup_ratio", "warmup_steps", "lr_scheduler", "max_grad_norm", "label_smoothing", "grad_accum",
                 "max_length", "batching", "seed")
CURVES = ("loss.png", "metrics.png")  # copied beside the card from the run's plots/


@dataclass
class CardInfo:
    """What a card says about its checkpoint."""

    model: str  # --model as given
    data: str  # --data as given
    task: str
    pipeline_tag: str
    train_rows: int
    validation_rows: int
    label_counts: dict[str, int]  # training rows (or entities) per label; empty for regression
    options: dict
    metrics: dict[str, float]  # the checkpoint's evaluation on the validation data
    step: int
    epoch: float | None
    per_class: dict = field(default_factory=dict)
    curves: tuple[str, ...] = ()  # image files beside the card
    usage: list[str] = field(default_factory=list)  # Python lines that use it with transformers (the task's)
    command: str = '"What a great film!"'  # what `tunelab predict PATH_OR_HUB_ID` is given (the task's)


def base_model(model: str) -> str | None:
    """The Hub id the checkpoint was fine-tuned from, when there is one."""
    if model.lower() in DEFAULT_ALIASES:
        return BUNDLED_HUB_ID
    return None if Path(model).expanduser().exists() else model


def public_name(source: str) -> str:
    """A file or folder by its name only; a Hub id or built-in as given."""
    path = Path(source).expanduser()
    return path.name if path.exists() or source.startswith(("/", ".", "~")) else source


def is_hub_dataset(source: str) -> bool:
    from tunelab.data import BUILTINS

    return source not in BUILTINS and not Path(source).expanduser().exists() and "/" in source


def render(info: CardInfo, name: str) -> str:
    """The card's text: YAML metadata the Hub reads (model-index with the validation metrics), then prose."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    data_name = public_name(info.data)
    results = [EvalResult(task_type=info.pipeline_tag, dataset_type=data_name, dataset_name=data_name,
                          dataset_split="validation", metric_type=k, metric_value=float(v))
               for k, v in info.metrics.items()]
    metadata = ModelCardData(
        model_name=name, base_model=base_model(info.model), pipeline_tag=info.pipeline_tag,
        library_name="transformers", datasets=[info.data] if is_hub_dataset(info.data) else None,
        tags=["tunelab", info.task], eval_results=results or None,
    )
    body = [f"# {name}", "",
            f"A model fine-tuned with [tunelab](https://pypi.org/project/tunelab/) (task: {info.task}) from "
            f"`{base_model(info.model) or public_name(info.model)}` on `{data_name}`: {info.train_rows:,} training "
            f"rows, evaluated on {info.validation_rows:,} validation rows (step {info.step}"
            + (f", epoch {info.epoch:.2f}" if info.epoch is not None else "") + ")."]
    if info.label_counts:
        body += ["", "## Labels", "", "| label | training rows |", "|---|---|"]
        body += [f"| {label} | {count:,} |" for label, count in info.label_counts.items()]
    body += ["", "## Validation metrics", "", "| metric | value |", "|---|---|"]
    body += [f"| {k} | {v:.4f} |" for k, v in info.metrics.items()]
    if info.per_class:
        body += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, row in info.per_class.items():
            f1 = row.get("f1-score", row.get("f1", 0.0))
            body.append(f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {f1:.4f} | {int(row['support'])} |")
    shown = {k: info.options[k] for k in SHOWN_OPTIONS if info.options.get(k) is not None}
    body += ["", "## Training options", "", "| option | value |", "|---|---|"]
    body += [f"| --{k.replace('_', '-')} | {v} |" for k, v in shown.items()]
    if info.curves:
        body += ["", "## Training curves", ""] + [f"![{Path(c).stem}]({c})" for c in info.curves]
    body += ["", "## Use", "", "With transformers alone:", "", "```python", *info.usage, "```",
             "", "With tunelab:", "", "```bash", f"tunelab predict PATH_OR_HUB_ID {info.command}", "```", ""]
    return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(body)).content
