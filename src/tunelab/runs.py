"""What a folder of runs holds: one summary per run (its status, best metric, speed), and a comparison of
several runs (their curves on shared axes, the options that differ)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

# Options that say where and how a run was written, not what it computed: left out of comparisons.
BOOKKEEPING = ("output", "overwrite", "progress", "threads", "keep_states", "logging_steps", "save_every",
               "report_to", "run_name", "config")
COLUMNS = ("name", "task", "data", "model", "metric", "best", "best_step", "steps", "seconds", "samples_per_s",
           "status")


@dataclass
class RunSummary:
    """One run folder, read without loading any model."""

    name: str
    path: str
    task: str
    data: str
    model: str
    metric: str
    best: float | None
    best_step: int | None
    steps: int  # optimizer steps done
    total_steps: int | None  # steps planned
    seconds: float | None  # wall time of training (finished runs)
    samples_per_s: float | None
    status: str  # finished, stopped early, interrupted (resumable at step N), interrupted (no state to resume)
    options: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "options"}


def read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl; a last line cut short by a killed process is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def short_name(value: str | None) -> str:
    """A path by its last part (best/ and last/ by the run's name too); a hub id or alias as given."""
    if not value:
        return ""
    path = Path(value)
    if path.name in ("best", "last") and len(path.parts) > 1:
        return f"{path.parent.name}/{path.name}"
    return path.name if ("/" in value and Path(value).expanduser().exists()) or value.startswith(("/", ".", "~")) else value


def best_evaluation(records: list[dict], metric: str) -> tuple[float | None, int | None]:
    """The best value of eval_`metric` in a run's records, and its step."""
    from tunelab.metrics import is_better

    best, step = None, None
    for record in records:
        value = record.get(f"eval_{metric}")
        if value is not None and is_better(metric, value, best):
            best, step = value, record["step"]
    return best, step


def summarize(run_dir: Path) -> RunSummary:
    """A run folder's summary: finished (summary.json), stopped early (fewer steps than planned), or
    interrupted (a resumable training state, or none)."""
    from tunelab.train.state import STATE_DIR

    config = read_yaml(run_dir / "config.yaml")
    resolved = config.get("resolved", {})
    metric = resolved.get("metric", "loss")
    records = read_jsonl(run_dir / "metrics.jsonl")
    best, best_step = best_evaluation(records, metric)
    steps = max((r.get("step", 0) for r in records), default=0)
    total = resolved.get("total_steps")
    seconds, speed = None, None
    logged = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        steps, seconds, speed = summary["steps"], summary["train_seconds"], summary["samples_per_second"]
        status = "stopped early" if total and steps < total else "finished"
        if summary.get("status") == "interrupted":
            status = f"interrupted by {summary.get('signal', 'a signal')} (resumable at step {steps})"
    else:
        speed = sum(logged) / len(logged) if logged else None
        states = sorted((run_dir / STATE_DIR).glob("step-*")) if (run_dir / STATE_DIR).is_dir() else []
        states = [s for s in states if (s / "trainer_state.json").exists()]
        status = (f"interrupted (resumable at step {int(states[-1].name.split('-')[1])})" if states
                  else "interrupted (no state to resume)")
    return RunSummary(name=run_dir.name, path=str(run_dir), task=resolved.get("task", ""),
                      data=short_name(config.get("data")),
                      model=short_name(config.get("model") or resolved.get("model")), metric=metric,
                      best=best, best_step=best_step, steps=steps, total_steps=total, seconds=seconds,
                      samples_per_s=speed, status=status,
                      options=run_options(config))


def run_options(config: dict) -> dict:
    """A run's options as it trained: what was given, with the defaults it resolved from the model (the
    learning rates) in place of the unset values."""
    resolved = config.get("resolved", {})
    options = {k: v for k, v in config.items() if k not in ("resolved", *BOOKKEEPING)}
    for name in ("learning_rate", "head_learning_rate"):
        if options.get(name) is None and resolved.get(name) is not None:
            options[name] = resolved[name]
    return options


def find_runs(folder: Path) -> list[Path]:
    """Run folders (holding config.yaml) directly under `folder`, or `folder` itself."""
    if not folder.is_dir():
        raise TunelabError(f"runs folder not found: {folder}; pass the folder your runs are in (default runs/)")
    if (folder / "config.yaml").exists():
        return [folder]
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "config.yaml").exists())


def list_runs(folder: str | Path = "runs", sort: str = "name") -> list[RunSummary]:
    """Every run under `folder`, sorted by a column (numbers: highest first; the rest alphabetically)."""
    if sort not in COLUMNS:
        raise TunelabError(f"--sort {sort}: not a column; use one of {', '.join(COLUMNS)}")
    runs = []
    for run_dir in find_runs(Path(folder).expanduser()):
        try:
            runs.append(summarize(run_dir))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("skipped %s: %s", run_dir, exc)
    numeric = sort in ("best", "best_step", "steps", "seconds", "samples_per_s")
    if numeric:
        return sorted(runs, key=lambda r: (getattr(r, sort) is None, -(getattr(r, sort) or 0)))
    return sorted(runs, key=lambda r: str(getattr(r, sort)))


def differing_options(runs: list[RunSummary]) -> dict[str, list]:
    """Option name -> each run's value, for the options whose values are not all equal."""
    names = dict.fromkeys(k for r in runs for k in r.options)
    return {k: [r.options.get(k) for r in runs] for k in names
            if len({json.dumps(r.options.get(k), sort_keys=True, default=str) for r in runs}) > 1}


def compare(run_dirs: list[str | Path], output: str | Path, metric: str | None = None) -> tuple[Path, list[RunSummary], dict]:
    """One PNG with the runs' validation metric, validation loss and training loss against epochs on shared
    axes; returns it with the runs' summaries and the options that differ."""
    if len(run_dirs) < 2:
        raise TunelabError("compare needs at least two run folders")
    paths = []
    for run_dir in run_dirs:
        path = Path(run_dir).expanduser()
        if not (path / "config.yaml").exists():
            raise TunelabError(f"{path} is not a tunelab run (no config.yaml); pass run folders, not checkpoints")
        paths.append(path)
    runs = [summarize(p) for p in paths]
    metric = metric or runs[0].metric
    records = [read_jsonl(p / "metrics.jsonl") for p in paths]
    for run, rs in zip(runs, records):
        if run.metric != metric:
            run.metric, (run.best, run.best_step) = metric, best_evaluation(rs, metric)
    if not any(f"eval_{metric}" in r for rs in records for r in rs):
        raise TunelabError(f"no run here reports {metric}; use --metric with one they report")
    return plot_comparison(runs, records, metric, Path(output)), runs, differing_options(runs)


def plot_comparison(runs: list[RunSummary], records: list[list[dict]], metric: str, path: Path) -> Path:
    from tunelab.plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [(f"eval_{metric}", f"validation {metric}"), ("eval_loss", "validation loss"), ("loss", "training loss")]
    for ax, (key, title) in zip(axes, panels):
        for run, rs in zip(runs, records):
            points = [(r["epoch"], r[key]) for r in rs if key in r and "epoch" in r]
            if points:
                ax.plot(*zip(*points), marker="o" if key.startswith("eval_") else None, markersize=3, label=run.name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{len(runs)} runs compared", y=1.03)
    return _save(fig, path)
