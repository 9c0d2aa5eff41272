"""`tunelab train`: fine-tune a model on labeled data."""

from __future__ import annotations

from typing import Optional

import typer

from tunelab.cli import app


@app.command()
def train(
    data: str = typer.Option(..., "--data", "-d", help="A file (.csv .tsv .json .jsonl .parquet), a save_to_disk folder, a hub dataset id, or a built-in: rotten-tomatoes, stsb."),
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
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay (not on biases and LayerNorm)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warm-up steps (overrides --warmup-ratio)."),
    warmup_ratio: float = typer.Option(0.1, help="Warm-up as a share of all steps."),
    grad_accum: int = typer.Option(1, help="Gradient accumulation steps."),
    max_grad_norm: float = typer.Option(1.0, help="Gradient clipping norm (0 disables)."),
    seed: int = typer.Option(42, help="Random seed."),
    eval_every: Optional[int] = typer.Option(None, help="Evaluate every N steps (default: every epoch)."),
    logging_steps: int = typer.Option(50, help="Log the training loss every N steps."),
    metric: str = typer.Option("auto", help="Metric that picks the best checkpoint: accuracy, f1, mcc, loss, pearson, spearman, mse."),
    patience: Optional[int] = typer.Option(None, help="Stop after N evaluations without improvement."),
    from_scratch: bool = typer.Option(False, help="Random weights from the model's config."),
    freeze_encoder: bool = typer.Option(False, help="Train only the classification head."),
    group_by_length: bool = typer.Option(True, help="Batch rows of similar length (less padding)."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Fine-tune a model; keep the best checkpoint by the chosen metric."""
    from tunelab.train import TrainConfig, train as run_training

    config = TrainConfig(**{k: v for k, v in locals().items() if k != "run_training" and k != "TrainConfig"})
    result = run_training(config)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
    typer.echo(f"validation {result.metric}: {result.best_metrics.get(result.metric, float('nan')):.4f} "
               f"(best at step {result.best_step}; {shown})")
    typer.echo(f"trained {result.steps} steps in {result.train_seconds:.0f}s "
               f"({result.samples_per_second:.1f} samples/s)")
    typer.echo(f"checkpoint: {result.best_dir}")
