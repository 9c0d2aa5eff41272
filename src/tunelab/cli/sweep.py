"""`tunelab sweep`: grid, random or Bayesian search over fine-tuning options."""

from __future__ import annotations

import inspect
import typing
from typing import Optional

import typer

from tunelab.cli import app


def _values(text: Optional[str], kind, name: str) -> Optional[list]:
    from tunelab.errors import TunelabError

    if text is None:
        return None
    try:
        return [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TunelabError(f"--{name} takes comma-separated values, got '{text}'") from None


def _value_kind(annotation):
    """int, float or str from a field's type (Optional[int] -> int)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def sweep(**options) -> None:
    """Run the trials not finished yet; print the results table; write results.csv, sweep.png, best.yaml."""
    from tunelab.sweep import DEFAULT_SPACE, SweepConfig, format_table, run_sweep
    from tunelab.train.config import field_types, read_config_file, sweepable

    base = read_config_file(options["config"]) if options["config"] else {}
    for name in shared_options():
        if options[name] is not None:
            base[name] = options[name]
    space = dict(DEFAULT_SPACE)
    types = field_types()
    for name, flag in sweepable().items():
        values = _values(options[flag.replace("-", "_")], _value_kind(types[name]), flag)
        if values is not None:
            space[name] = values
    result = run_sweep(SweepConfig(base=base, study_dir=options["study"], space=space, method=options["method"],
                                   trials=options["trials"], backend=options["backend"],
                                   parallel=options["parallel"], seed=options["seed"],
                                   progress=options["progress"]))
    typer.echo(format_table(result))
    typer.echo(f"results: {result.table}")
    if result.plot:
        typer.echo(f"plot: {result.plot}")
    typer.echo(f"best config: {result.best_config}  (tunelab train --config {result.best_config} --output RUN)")


def shared_options() -> list[str]:
    """The training options a sweep takes as flags for every trial: where the data is and how it is read
    (the tasks' column options), the model and the metric; the rest come from --config."""
    from tunelab.tasks import task_options

    return ["data", "model", "task", *(o.name for o in task_options("train") if o.stored == "columns"),
            "validation", "limit", "metric"]


def _parameters() -> list[inspect.Parameter]:
    from tunelab.sweep import DEFAULT_SPACE
    from tunelab.train.config import config_fields, field_types, sweepable

    def opt(name, annotation, default, *flags, help):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(default, *flags, help=help))

    fields, types = config_fields(), field_types()
    shared = [opt(name, types[name] if types[name] is bool else Optional[_value_kind(types[name])], None,
                  f"--{name.replace('_', '-')}", *fields[name].metadata.get("flags", ()),
                  help=fields[name].metadata["help"]) for name in shared_options()]
    swept = []
    for name, flag in sweepable().items():
        default = ",".join(str(v) for v in DEFAULT_SPACE[name]) if name in DEFAULT_SPACE else "not swept"
        swept.append(opt(flag.replace("-", "_"), Optional[str], None, f"--{flag}",
                         help=f"Values of --{name.replace('_', '-')} to try, comma-separated (default: {default})."))
    return [
        opt("study", str, ..., "--study", "-s", help="Folder of the study (SQLite), its trials and results."),
        opt("config", Optional[str], None, "--config", "-c", help="YAML of training options every trial shares."),
        *shared,
        opt("method", str, "grid", "--method", help="grid, random or bayes (Optuna TPE)."),
        opt("trials", Optional[int], None, "--trials", help="Trials to run in all (grid default: the whole grid)."),
        opt("backend", str, "local", "--backend", help="local (one trial at a time) or ray (trials in parallel on Ray)."),
        opt("parallel", int, 2, "--parallel", help="Trials at once with --backend ray."),
        opt("seed", int, 0, "--seed", help="Sampler seed."),
        opt("progress", bool, True, "--progress/--no-progress",
            help="Show trials done and the best so far on stderr (terminals only)."),
        *swept,
    ]


sweep.__signature__ = inspect.Signature(_parameters())
app.command()(sweep)
