"""`tunelab train`: fine-tune a model. Its options are TrainConfig's fields, declared once there and in the
tasks."""

from __future__ import annotations

import inspect
from typing import Optional

import typer

from tunelab.cli import app, dataclass_parameters

CLI_ONLY = {"ctx", "config", "resume"}


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (so it overrides a --config file), not just its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def config_parameters() -> list[inspect.Parameter]:
    """One command-line option per TrainConfig field (see dataclass_parameters)."""
    from tunelab.train.config import TrainConfig

    return dataclass_parameters(TrainConfig)


def train(ctx: typer.Context, config: Optional[str] = None, resume: Optional[str] = None, **options) -> None:
    """Fine-tune a model; keep the best checkpoint by the chosen metric."""
    from tunelab.train import TrainConfig, read_config_file, resume_config, train as run_training

    given = {name: value for name, value in options.items() if _from_command_line(ctx, name)}
    if resume:
        result = run_training(resume_config(resume, given), resume=True)
    else:
        values = {**(read_config_file(config) if config else {}), **given}
        result = run_training(TrainConfig(**{**options, **values}))
    from tunelab.cli import is_main_process

    if not is_main_process():
        return
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
    typer.echo(f"validation {result.metric}: {result.best_metrics.get(result.metric, float('nan')):.4f} "
               f"(best at step {result.best_step}; {shown})")
    typer.echo(f"trained {result.steps} steps in {result.train_seconds:.0f}s "
               f"({result.samples_per_second:.1f} samples/s, {result.tokens_per_second:,.0f} tokens/s)")
    typer.echo(f"checkpoint: {result.best_dir}")


train.__signature__ = inspect.Signature([
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
        None, "--config", "-c", help="A YAML file of options (a run's config.yaml works); flags override it.")),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
        None, "--resume", help="Continue this run folder from its newest training state.")),
    *config_parameters(),
])
app.command()(train)
