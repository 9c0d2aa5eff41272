"""`tunelab sweep`: grid, random or Bayesian search over fine-tuning options."""

from __future__ import annotations

from typing import Optional

import typer

from tunelab.cli import app


def _values(text: Optional[str], kind, name: str) -> Optional[list]:
    from tunelab.errors import TunelabError

    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TunelabError(f"--{name} takes comma-separated numbers, got '{text}'") from None


@app.command()
def sweep(
    study: str = typer.Option(..., "--study", "-s", help="Folder of the study (SQLite), its trials and results."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data, as for `tunelab train`."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML of training options every trial shares."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: the bundled MiniLM)."),
    text_column: Optional[str] = typer.Option(None, help="Column with the text."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with the second text of a pair."),
    label_column: Optional[str] = typer.Option(None, help="Column with the label."),
    validation: Optional[str] = typer.Option(None, help="Validation file or split."),
    limit: Optional[int] = typer.Option(None, help="Training rows per trial."),
    metric: Optional[str] = typer.Option(None, help="Metric to optimize (as for train --metric)."),
    method: str = typer.Option("grid", help="grid, random or bayes (Optuna TPE)."),
    trials: Optional[int] = typer.Option(None, help="Trials to run in all (grid default: the whole grid)."),
    backend: str = typer.Option("local", help="local (one trial at a time) or ray (trials in parallel on Ray)."),
    parallel: int = typer.Option(2, help="Trials at once with --backend ray."),
    seed: int = typer.Option(0, help="Sampler seed."),
    epochs: Optional[str] = typer.Option(None, help="Epochs to try, e.g. 2,3,4 (default 2,3,4)."),
    learning_rates: Optional[str] = typer.Option(None, help="Learning rates to try (default 2e-5,5e-5)."),
    warmup_steps: Optional[str] = typer.Option(None, help="Warm-up steps to try (default 0,100,500)."),
    weight_decays: Optional[str] = typer.Option(None, help="Weight decays to try (default 0,0.01,0.1)."),
    batch_sizes: Optional[str] = typer.Option(None, help="Batch sizes to try (default: not swept)."),
    lr_schedulers: Optional[str] = typer.Option(None, help="Learning-rate schedules to try, e.g. linear,cosine (default: not swept)."),
    label_smoothings: Optional[str] = typer.Option(None, help="Label smoothing shares to try, e.g. 0,0.1 (default: not swept)."),
) -> None:
    """Run the trials not finished yet; print the results table; write results.csv, sweep.png, best.yaml."""
    from tunelab.sweep import DEFAULT_SPACE, SweepConfig, format_table, run_sweep
    from tunelab.train import read_config_file

    base = read_config_file(config) if config else {}
    for name, value in dict(data=data, model=model, text_column=text_column, text_pair_column=text_pair_column,
                            label_column=label_column, validation=validation, limit=limit, metric=metric).items():
        if value is not None:
            base[name] = value
    space = dict(DEFAULT_SPACE)
    for key, text, kind, option in (("epochs", epochs, int, "epochs"),
                                    ("learning_rate", learning_rates, float, "learning-rates"),
                                    ("warmup_steps", warmup_steps, int, "warmup-steps"),
                                    ("weight_decay", weight_decays, float, "weight-decays"),
                                    ("batch_size", batch_sizes, int, "batch-sizes"),
                                    ("lr_scheduler", lr_schedulers, str.strip, "lr-schedulers"),
                                    ("label_smoothing", label_smoothings, float, "label-smoothings")):
        values = _values(text, kind, option)
        if values is not None:
            space[key] = values
    result = run_sweep(SweepConfig(base=base, study_dir=study, space=space, method=method, trials=trials,
                                   backend=backend, parallel=parallel, seed=seed))
    typer.echo(format_table(result))
    typer.echo(f"results: {result.table}")
    if result.plot:
        typer.echo(f"plot: {result.plot}")
    typer.echo(f"best config: {result.best_config}  (tunelab train --config {result.best_config} --output RUN)")
