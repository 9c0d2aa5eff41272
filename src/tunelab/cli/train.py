"""`tunelab train`: fine-tune a model on labeled data."""

from __future__ import annotations

from typing import Optional

import typer
from tunelab.cli import app

CLI_ONLY = {"ctx", "config", "resume"}


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (so it overrides a --config file), not just its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


@app.command()
def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, "--data", "-d", help="A file (.csv .tsv .json .jsonl .parquet), a save_to_disk folder, a hub dataset id, or a built-in: rotten-tomatoes, stsb."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="A YAML file of options (a run's config.yaml works); flags override it."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue this run folder from its newest training state."),
    model: str = typer.Option("minilm", "--model", "-m", help="A hub id, a local folder, or 'minilm' (the bundled all-MiniLM-L6-v2)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run folder (default runs/DATA-TIME)."),
    text_column: str = typer.Option("text", help="Column with the text."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with the second text of a pair."),
    label_column: str = typer.Option("label", help="Column with the label."),
    validation: Optional[str] = typer.Option(None, help="Validation file, or split name of the source."),
    validation_fraction: float = typer.Option(0.1, help="Share split off (stratified) when there is no validation data."),
    limit: Optional[int] = typer.Option(None, help="Use at most N training rows (quick runs)."),
    task: str = typer.Option("auto", help="auto, classification or regression."),
    max_length: int = typer.Option(128, help="Truncate inputs to N tokens (clamped to the model's limit)."),
    epochs: int = typer.Option(3, help="Training epochs."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after N optimizer steps."),
    batch_size: int = typer.Option(32, help="Training batch size per process."),
    eval_batch_size: int = typer.Option(128, help="Evaluation batch size."),
    learning_rate: float = typer.Option(5e-5, "--learning-rate", "--lr", help="Peak learning rate (AdamW)."),
    head_learning_rate: Optional[float] = typer.Option(None, help="Learning rate of the classifier head and pooler (default: --learning-rate)."),
    layer_decay: float = typer.Option(1.0, help="Layer-wise learning-rate decay: each layer below the top trains at this times the rate of the one above (0.8 is common; 1 disables)."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay (not on biases and LayerNorm)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warm-up steps (overrides --warmup-ratio)."),
    warmup_ratio: float = typer.Option(0.1, help="Warm-up as a share of all steps."),
    lr_scheduler: str = typer.Option("linear", help="After the warm-up: linear (decay to 0), cosine (half a cosine to 0) or constant."),
    grad_accum: int = typer.Option(1, help="Gradient accumulation steps."),
    max_grad_norm: float = typer.Option(1.0, help="Gradient clipping norm (0 disables)."),
    label_smoothing: float = typer.Option(0.0, help="Train classification against labels smoothed by this share (0.1 is common; 0 disables)."),
    seed: int = typer.Option(42, help="Random seed."),
    eval_every: Optional[int] = typer.Option(None, help="Evaluate every N steps (default: every epoch)."),
    logging_steps: int = typer.Option(50, help="Log the training loss every N steps."),
    metric: str = typer.Option("auto", help="Metric that picks the best checkpoint: accuracy, f1, mcc, loss, pearson, spearman, mse."),
    patience: Optional[int] = typer.Option(None, help="Stop after N evaluations without improvement."),
    from_scratch: bool = typer.Option(False, help="Random weights from the model's config."),
    freeze_encoder: bool = typer.Option(False, help="Train only the classification head."),
    freeze_embeddings: bool = typer.Option(False, help="Keep the token-embedding matrix pretrained (faster steps)."),
    group_by_length: bool = typer.Option(True, help="Batch rows of similar length (less padding)."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    save_every: Optional[int] = typer.Option(None, help="Write a training state every N steps (always at each epoch end)."),
    keep_states: int = typer.Option(2, help="Training states kept."),
    mixed_precision: str = typer.Option("no", help="no, fp16 or bf16 (GPUs; refused where the device cannot)."),
) -> None:
    """Fine-tune a model; keep the best checkpoint by the chosen metric."""
    from tunelab.errors import TunelabError
    from tunelab.train import TrainConfig, read_config_file, resume_config, train as run_training

    given = {name: value for name, value in ctx.params.items()
             if name not in CLI_ONLY and _from_command_line(ctx, name)}
    if resume:
        # Only options that do not change what the run computes may be changed on resume.
        allowed = {"progress", "threads", "keep_states", "logging_steps"}
        changed = sorted(set(given) - allowed)
        if changed:
            raise TunelabError(f"--resume continues a run as it was configured; drop {', '.join('--' + c.replace('_', '-') for c in changed)}")
        result = run_training(resume_config(resume, given), resume=True)
    else:
        values = {**(read_config_file(config) if config else {}), **given}
        if not values.get("data"):
            raise TunelabError("--data is required (or give data: in --config)")
        defaults = {name: value for name, value in ctx.params.items() if name not in CLI_ONLY}
        result = run_training(TrainConfig(**{**defaults, **values}))
    from tunelab.cli import is_main_process

    if not is_main_process():
        return
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
    typer.echo(f"validation {result.metric}: {result.best_metrics.get(result.metric, float('nan')):.4f} "
               f"(best at step {result.best_step}; {shown})")
    typer.echo(f"trained {result.steps} steps in {result.train_seconds:.0f}s "
               f"({result.samples_per_second:.1f} samples/s)")
    typer.echo(f"checkpoint: {result.best_dir}")
