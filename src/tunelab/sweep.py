"""Hyperparameter sweeps: grid, random or Bayesian (TPE) search over the usual fine-tuning options.

The study lives in SQLite (Optuna), so a killed sweep started again skips the
trials that finished; a trial stopped by Ctrl-C or SIGTERM saved its training
state and is resumed from it (on Ray too). Trials run here one after another (`local`), or on a
Ray cluster (`ray`, a local one when none is given): Optuna still proposes the
trials and keeps the results, so both backends give the same table and files.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.checkpoint import atomic_write_text, writing
from tunelab.errors import Stopped, TunelabError, collect

logger = logging.getLogger(__name__)

# The grid fine-tuning guides recommend (BERT paper appendix and the Hugging Face course).
DEFAULT_SPACE: dict[str, list] = {
    "epochs": [2, 3, 4],
    "learning_rate": [2e-5, 5e-5],
    "warmup_steps": [0, 100, 500],
    "weight_decay": [0.0, 0.01, 0.1],
}
METHODS = ("grid", "random", "bayes")
BACKENDS = ("local", "ray")
STUDY_NAME = "tunelab"


@dataclass
class SweepConfig:
    """What to search and how; `base` holds the TrainConfig options every trial shares."""

    base: dict
    study_dir: str
    space: dict[str, list] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    method: str = "grid"
    trials: int | None = None  # None: the whole grid (grid), else required
    backend: str = "local"
    parallel: int = 2  # trials at once on Ray
    seed: int = 0
    progress: bool = True  # trials done and the best so far, on a terminal

    def check(self) -> None:
        from tunelab.train.config import sweepable

        problems = []
        if self.method not in METHODS:
            problems.append(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.backend not in BACKENDS:
            problems.append(f"--backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        unknown = sorted(set(self.space) - set(sweepable()))
        if unknown:
            problems.append(f"cannot sweep {', '.join(unknown)}; sweepable: {', '.join(sweepable())}")
        empty = [k for k, v in self.space.items() if not v]
        if empty:
            problems.append(f"no values to try for {', '.join(empty)}")
        if self.trials is not None and self.trials < 1:
            problems.append(f"--trials must be at least 1, got {self.trials}")
        if self.method != "grid" and self.trials is None:
            problems.append(f"--method {self.method} needs --trials N")
        if self.parallel < 1:
            problems.append(f"--parallel must be at least 1, got {self.parallel}")
        if not self.base.get("data"):
            problems.append("--data is required (or give data: in --config)")
        else:
            problems.extend(self._trial_problems())
        collect(problems)

    def _trial_problems(self) -> list[str]:
        """What `tunelab train` would refuse in the shared options or in any value to try, found before
        the first trial instead of in every trial."""
        from tunelab.train.config import TrainConfig, sweepable

        try:
            TrainConfig(**self.base).check()
        except TunelabError as exc:
            return [str(exc)]
        found = []
        for name, values in self.space.items():
            if name not in sweepable():
                continue  # reported as not sweepable
            for value in values:
                try:
                    TrainConfig(**{**self.base, name: value}).check()
                except TunelabError as exc:
                    found.append(f"{name} {value!r} to try: {exc}")
        return found

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.space.values())

    @property
    def total_trials(self) -> int:
        return min(self.trials or self.grid_size, self.grid_size) if self.method == "grid" else self.trials


@dataclass
class TrialResult:
    number: int
    value: float | None
    params: dict
    seconds: float | None
    state: str


@dataclass
class SweepResult:
    metric: str
    trials: list[TrialResult]  # best first
    best_config: Path
    table: Path
    plot: Path | None


def _trial_config(base: dict, params: dict, output: Path) -> dict:
    return {**base, **params, "output": str(output), "overwrite": True, "progress": False}


def run_trial(config: dict, threads: int | None = None, resume: bool = False) -> tuple[float, float, str]:
    """Train one trial (with `resume`, continue the stopped run in config's output); return (metric value,
    seconds, metric name). Runs in-process or as a Ray task."""
    import torch

    from tunelab.train import TrainConfig, resume_config, train

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    if resume:
        result = train(resume_config(config["output"], {"progress": config.get("progress", False)}), resume=True)
    else:
        result = train(TrainConfig(**config))
    return float(result.best_metrics[result.metric]), time.perf_counter() - started, result.metric


def _params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _stopped_trials(study) -> dict[tuple, tuple[int, Path]]:
    """Trials a signal stopped after saving their state, not resumed yet: their parameters -> (number, folder)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs["resumes"] for t in trials if "resumes" in t.user_attrs}
    found = {}
    for trial in trials:
        folder = trial.user_attrs.get("stopped")
        saved = folder and (Path(folder) / "state").is_dir()
        if trial.state == TrialState.FAIL and saved and trial.number not in resumed:
            found[_params_key(trial.params)] = (trial.number, Path(folder))
    return found


def _metric_direction(base: dict) -> tuple[str, str]:
    """The metric trials are ranked by and its direction; "auto" is the default metric of the data's task
    (read once here: language models minimize their loss, the other tasks maximize a score)."""
    from tunelab.metrics import LOWER_IS_BETTER

    metric = base.get("metric", "auto")
    if metric == "auto" and base.get("data"):
        metric = _default_metric(base)
    return metric, "minimize" if metric in LOWER_IS_BETTER else "maximize"


def _default_metric(base: dict) -> str:
    from tunelab.tasks import load_task_data
    from tunelab.train import TrainConfig

    data = load_task_data(TrainConfig(**base).data_spec())
    return data.task.default_metric(data)


def _open_study(config: SweepConfig):
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(config.study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}")
    if config.method == "grid":
        # The grid is walked here (see _grid_proposer); enqueued parameters bypass the sampler.
        sampler = optuna.samplers.RandomSampler(seed=config.seed)
    elif config.method == "random":
        # Reseeded by the trials already in the study, so a restart does not propose them again.
        existing = 0
        try:
            existing = len(optuna.load_study(study_name=STUDY_NAME, storage=storage).trials)
        except KeyError:
            pass
        sampler = optuna.samplers.RandomSampler(seed=config.seed + existing)
    else:
        sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=min(5, config.trials or 5))
    _, direction = _metric_direction(config.base)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, direction=direction,
                                load_if_exists=True)
    saved_space = study.user_attrs.get("space")
    if saved_space is not None and saved_space != config.space:
        raise TunelabError(f"{folder} holds a sweep over another search space ({saved_space}); "
                           "use a new --study folder or the same options")
    study.set_user_attr("space", config.space)
    # A trial that was running when the sweep was killed never finished: mark it failed so it runs again.
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    distributions = {name: CategoricalDistribution(values) for name, values in config.space.items()}
    return study, distributions


def run_sweep(config: SweepConfig) -> SweepResult:
    """Run the trials that are not finished yet; write results.csv, sweep.png and best.yaml."""
    from optuna.trial import TrialState

    config.check()
    study, distributions = _open_study(config)
    folder = Path(config.study_dir)
    done = len(study.get_trials(states=(TrialState.COMPLETE,)))
    todo = max(config.total_trials - done, 0)
    logger.info("sweep %s: %d of %d trials finished, %d to run (%s, %s backend)", folder, done,
                config.total_trials, todo, config.method, config.backend)
    # A trial's own writes say so themselves (train); this covers the study, results.csv, the plot, best.yaml.
    with writing(folder, 1 << 20, "the trials finished so far are kept in the study; free space, then run the "
                                  "same command again"):
        if todo:
            runner = _run_ray if config.backend == "ray" else _run_local
            runner(config, _proposer(config, study, distributions), study, todo)
        return _report(config, study)


def _proposer(config: SweepConfig, study, distributions):
    """A function that starts the next trial: the next unfinished grid point, or the sampler's choice."""
    import itertools

    from optuna.trial import TrialState

    if config.method != "grid":
        for params in _stopped_trials(study):
            study.enqueue_trial(dict(params))  # proposed again first, and resumed (grid points come back anyway)
        return lambda: study.ask(distributions)
    finished = [t.params for t in study.get_trials(states=(TrialState.COMPLETE,))]
    names = list(config.space)
    pending = [dict(zip(names, values)) for values in itertools.product(*config.space.values())]
    pending = [p for p in pending if p not in finished]  # failed and killed points run again

    def next_trial():
        study.enqueue_trial(pending.pop(0))
        return study.ask(distributions)

    return next_trial


def _tell(study, trial, outcome) -> None:
    from optuna.trial import TrialState

    if isinstance(outcome, BaseException):
        study.tell(trial, state=TrialState.FAIL)
        logger.warning("trial %d failed: %s", trial.number, outcome)
        if isinstance(outcome, TunelabError):
            raise outcome  # bad input fails every trial alike: stop with its message
        return
    value, seconds, metric = outcome
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("metric", metric)
    study.tell(trial, value)
    logger.info("trial %d: %s %.4f with %s", trial.number, metric, value, trial.params)


def _run_local(config: SweepConfig, propose, study, todo: int) -> None:
    from tunelab.progress import bar

    stopped = _stopped_trials(study)
    with bar(todo, "sweep", unit="trial", enabled=config.progress) as progress:
        for _ in range(todo):
            trial = propose()
            output = Path(config.study_dir) / "trials" / f"trial-{trial.number:03d}"
            earlier = stopped.pop(_params_key(trial.params), None)
            if earlier is not None:
                number, output = earlier
                trial.set_user_attr("resumes", number)
                logger.info("trial %d resumes trial %d (stopped) in %s", trial.number, number, output)
            try:
                outcome = run_trial(_trial_config(config.base, trial.params, output), resume=earlier is not None)
            except Stopped as stop:
                _stopped(study, trial, output, stop)
            except Exception as exc:  # noqa: BLE001 - recorded as a failed trial
                outcome = exc
            _tell(study, trial, outcome)
            progress.update()
            if any(t.value is not None for t in study.get_trials(deepcopy=False)):
                progress.set_postfix_str(f"best {study.best_value:.4f}")


def _stopped(study, trial, output: Path, stop: Stopped) -> None:
    """Mark a trial a signal stopped (its state saved) so the next start resumes it, and stop the sweep."""
    from optuna.trial import TrialState

    trial.set_user_attr("stopped", str(output))
    study.tell(trial, state=TrialState.FAIL)
    raise Stopped(f"sweep stopped during trial {trial.number}, whose training state is saved in {output}; run "
                  "the same tunelab sweep command again to resume it", stop.exit_code) from None


def _run_ray(config: SweepConfig, propose, study, todo: int) -> None:
    try:
        import ray
    except ImportError:
        raise TunelabError("--backend ray needs Ray; install it with: pip install 'ray[default]'") from None
    from tunelab.train.interrupt import StopRequest

    started_here = not ray.is_initialized()
    if started_here:
        # Joins the cluster in RAY_ADDRESS when set, else starts a local one.
        ray.init(num_cpus=None if "RAY_ADDRESS" in os.environ else config.parallel,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    threads = config.base.get("threads") or 1  # one core per trial unless told otherwise
    stopped = _stopped_trials(study)
    try:
        # A signal is recorded, not raised: the loop then stops its running trials so that they save a state.
        with StopRequest() as interrupt:
            pending: dict = {}
            asked = 0
            while (asked < todo or pending) and not interrupt.signal:
                while asked < todo and len(pending) < config.parallel:
                    trial = propose()
                    output = Path(config.study_dir).resolve() / "trials" / f"trial-{trial.number:03d}"
                    earlier = stopped.pop(_params_key(trial.params), None)
                    if earlier is not None:
                        number, output = earlier
                        trial.set_user_attr("resumes", number)
                        logger.info("trial %d resumes trial %d (stopped) in %s", trial.number, number, output)
                    trial_config = _trial_config(config.base, trial.params, output)
                    pending[remote.remote(trial_config, threads, earlier is not None)] = (trial, output)
                    asked += 1
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    outcome = _ray_outcome(ray, ref)
                    if isinstance(outcome, Stopped):  # the signal reached the trial first (Ctrl-C in a terminal)
                        interrupt.signal = interrupt.signal or outcome.exit_code - 128
                        continue  # left pending: marked stopped with the others
                    _tell(study, pending.pop(ref)[0], outcome)
            if interrupt.signal:
                _stop_ray_trials(ray, study, pending, interrupt.signal)
    finally:
        if started_here:
            ray.shutdown()


def _ray_outcome(ray, ref):
    """A finished Ray trial's (value, seconds, metric), or the exception it ended with."""
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a failed task
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, (TunelabError, Stopped)) else exc


def _stop_ray_trials(ray, study, pending: dict, signal_number: int) -> None:
    """Stop the running Ray trials (a KeyboardInterrupt in each, which training takes as Ctrl-C: it saves a
    state after the step under way), mark those that saved one stopped, and stop the sweep."""
    import signal

    from optuna.trial import TrialState

    for ref in pending:
        ray.cancel(ref)
    ray.wait(list(pending), num_returns=len(pending), timeout=600)
    saved = []
    for ref, (trial, output) in pending.items():
        outcome = _ray_outcome(ray, ref)
        if not isinstance(outcome, BaseException):
            _tell(study, trial, outcome)  # it finished before the signal reached it
            continue
        if (output / "state").is_dir():
            trial.set_user_attr("stopped", str(output))
            saved.append(f"{trial.number} ({output})")
        study.tell(trial, state=TrialState.FAIL)
    many = len(saved) > 1
    kept = (f"the training state{'s' * many} of trial{'s' * many} {', '.join(saved)} {'are' if many else 'is'} saved; "
            f"run the same tunelab sweep command again to resume {'them' if many else 'it'}"
            ) if saved else "no running trial had saved a state"
    raise Stopped(f"sweep stopped by {signal.Signals(signal_number).name}: {kept}", 128 + int(signal_number))


def _report(config: SweepConfig, study) -> SweepResult:
    import yaml
    from optuna.trial import TrialState

    metric, direction = _metric_direction(config.base)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.FAIL):
            metric = trial.user_attrs.get("metric", metric)
            state = "stopped" if trial.user_attrs.get("stopped") else trial.state.name.lower()
            rows.append(TrialResult(trial.number, trial.value, dict(trial.params), trial.user_attrs.get("seconds"),
                                    state))
    sign = -1 if direction == "maximize" else 1
    rows.sort(key=lambda r: (r.value is None, sign * (r.value or 0), r.number))
    folder = Path(config.study_dir)
    names = list(config.space)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial", metric, *names, "seconds", "state"])
    for rank, row in enumerate(rows, 1):
        writer.writerow([rank, row.number, "" if row.value is None else f"{row.value:.6f}",
                         *(row.params.get(n, "") for n in names),
                         "" if row.seconds is None else f"{row.seconds:.1f}", row.state])
    table = folder / "results.csv"
    atomic_write_text(table, buffer.getvalue())
    complete = [r for r in rows if r.value is not None]
    if not complete:
        raise TunelabError(f"no trial of {folder} finished; see the warnings above")
    best = complete[0]
    best_values = {k: v for k, v in config.base.items() if k not in ("output", "overwrite", "progress")}
    best_values.update(best.params)
    best_config = folder / "best.yaml"
    atomic_write_text(best_config, f"# best of {len(complete)} trials: {metric} {best.value:.4f} (trial "
                                   f"{best.number})\n" + yaml.safe_dump(best_values, sort_keys=False))
    plot = _plot(complete, metric, folder / "sweep.png")
    return SweepResult(metric=metric, trials=rows, best_config=best_config, table=table, plot=plot)


def _plot(rows: list[TrialResult], metric: str, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    varying = [k for k in rows[0].params if len({r.params.get(k) for r in rows}) > 1]  # constants say nothing
    labels = [", ".join(f"{k}={r.params[k]:g}" if isinstance(r.params[k], float) else f"{k}={r.params[k]}"
                        for k in varying) for r in rows]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(rows) + 1)))
    ax.barh(range(len(rows)), [r.value for r in rows], color="#3b6fd8")
    ax.set_yticks(range(len(rows)), [f"#{r.number}: {label}" for r, label in zip(rows, labels)], fontsize=7)
    ax.invert_yaxis()
    low = min(r.value for r in rows)
    ax.set_xlim(left=max(0.0, low - 0.05 * abs(low) - 0.01))
    ax.set(xlabel=metric, title=f"Sweep: {metric} by trial (best first)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def format_table(result: SweepResult) -> str:
    """The results as an aligned text table, best first."""
    if not result.trials:
        return "(no trials)"
    names = list(result.trials[0].params) or []
    header = ["rank", "trial", result.metric, *names, "seconds", "state"]
    lines = [header]
    for rank, row in enumerate(result.trials, 1):
        lines.append([str(rank), str(row.number), "-" if row.value is None else f"{row.value:.4f}",
                      *(f"{row.params.get(n):g}" if isinstance(row.params.get(n), float) else str(row.params.get(n))
                        for n in names),
                      "-" if row.seconds is None else f"{row.seconds:.0f}", row.state])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines)
