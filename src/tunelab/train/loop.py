"""The training loop: a generator of optimizer steps, and a short driver that logs, evaluates, keeps the
best checkpoint and saves training states."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from tunelab.card import CURVES
from tunelab.checkpoint import (append_jsonl, atomic_write_text, attach_curves, free_bytes, latest_state, megabytes,
                                prepare_run_dir, save_checkpoint, writing)
from tunelab.collate import IGNORE, ROW_INDEX, by_row, model_inputs
from tunelab.errors import Stopped, TunelabError
from tunelab.metrics import is_better
from tunelab.train.config import TrainConfig
from tunelab.train.optim import clip_gradients, rate_now
from tunelab import tracking
from tunelab.train.setup import Setup, checkpoint_info, configure_threads, describe, model_card, run_record, setup, start_run_folder
from tunelab.train.interrupt import StopRequest, exit_code
from tunelab.train.state import STATE_DIR, TrainState, check_state_processes, restore, save_state

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_dir: Path
    last_dir: Path
    metric: str
    best_metrics: dict[str, float]
    best_step: int
    steps: int
    train_seconds: float  # wall time of the loop, evaluations included
    samples_per_second: float  # training rows per second, evaluations excluded
    tokens_per_second: float = 0.0  # training tokens (padding excluded) per second, evaluations excluded
    rows_trained: int = 0  # training rows consumed, over all processes and epochs (a resumed run's too)
    tokens_trained: int = 0  # their tokens, padding excluded
    history: list[dict] = field(default_factory=list)


@dataclass
class Step:
    """One optimizer step done: the gradient norm (when measured) and whether it ended an epoch."""

    grad_norm: float | None
    epoch_end: bool


def optimizer_steps(s: Setup, state: TrainState, measure_at) -> Iterator[Step]:
    """Train from `state` on, yielding after every optimizer step; owns accelerate's rules: the epoch's
    batch order, skipping what a resumed run already consumed, accumulation and clipping."""
    accelerator, model, loader, config = s.accelerator, s.model, s.train_loader, s.config
    for epoch in range(state.epoch, s.epochs):
        # accelerate's loader re-sets its sampler's epoch from its own iteration count on every pass,
        # so set that count too: a resumed run has not iterated this loader before.
        loader.set_epoch(epoch)
        batches = loader
        if state.batch_in_epoch:
            batches = accelerator.skip_first_batches(loader, state.batch_in_epoch)
            batches.set_epoch(epoch)
        s.sampler.set_epoch(epoch)
        for batch in batches:
            grad_norm = None
            with accelerator.accumulate(model):
                loss = s.task.loss(model, batch, config.label_smoothing)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    # The norm is measured every step only when clipping needs it; otherwise on logged steps.
                    grad_norm = clip_gradients(accelerator, model, config.max_grad_norm,
                                               measure=measure_at(state.step + 1))
                    if config.max_grad_norm:
                        state.window_clipped += grad_norm is not None and grad_norm > config.max_grad_norm
                s.optimizer.step()
                s.scheduler.step()
                s.optimizer.zero_grad()
            rows = len(batch[ROW_INDEX]) * accelerator.num_processes  # packed batches have fewer model rows
            state.batch_in_epoch += 1
            state.seen += rows
            state.tokens += int(s.train_lengths[batch[ROW_INDEX].cpu()].sum()) * accelerator.num_processes
            state.window_seen += rows
            state.running_loss += float(loss.detach())
            state.running_count += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            epoch_end = state.batch_in_epoch >= len(loader)
            if epoch_end:
                state.epoch, state.batch_in_epoch = epoch + 1, 0
            yield Step(grad_norm, epoch_end)
            if epoch_end:
                break


@torch.inference_mode()
def evaluate_loader(model, loader, accelerator, task, data, encoded) -> tuple[dict[str, float], "object"]:
    """Loss and the task's metrics over a whole loader, gathered across processes; also the task's Scores."""
    model.eval()
    gathered, losses, count = [], 0.0, 0
    for batch in loader:
        outputs = task.evaluation_forward(model, batch)
        values = [accelerator.pad_across_processes(v, dim=1, pad_index=IGNORE) if v.dim() > 1 else v
                  for v in task.outputs(outputs, batch)]  # rows of other processes may be wider
        gathered.append(tuple(t.cpu().numpy() for t in accelerator.gather_for_metrics((*values, batch[ROW_INDEX]))))
        loss = task.evaluation_loss(outputs, batch)
        if loss is not None:
            losses += float(loss) * len(batch[ROW_INDEX])
            count += len(batch[ROW_INDEX])
    model.train()
    loss = accelerator.reduce(torch.tensor([losses, count], dtype=torch.float64), reduction="sum")
    scores = task.score(by_row(gathered), encoded, data)
    return {"loss": float(loss[0] / max(loss[1], 1)), **scores.metrics}, scores


def train(config: TrainConfig, data=None, resume: bool = False) -> TrainResult:
    """Fine-tune `config.model` on `config.data` for its task; write the run folder; return the best metrics.

    With `resume`, continue the run in `config.output` from its newest training state:
    the same batches in the same order, the same random numbers, the same result.
    """
    with StopRequest() as interrupt:
        run = start(config, data, resume)
        ledger = Ledger(run)
        keeper = Keeper(run, on_done=ledger.paused)
        stop = False
        if config.eval_before and run.state.step == 0 and not resume:
            keeper.evaluate()  # the starting point; best/ keeps it unless training improves on it
        for step in optimizer_steps(run.s, run.state, ledger.due):
            ledger.stepped(step)
            if evaluates_at(run, step):
                stop = keeper.evaluate()
            if stop or run.state.step >= run.s.total_steps:  # the one place that decides to stop
                break
            if step.epoch_end or (config.save_every and run.state.step % config.save_every == 0):
                with run.writes(run.run_dir / STATE_DIR, state=True):
                    save_state(run.run_dir, run.state, run.s.accelerator, run.s.model, run.s.optimizer,
                               run.s.scheduler, config.keep_states)
            signal_number = interrupt.requested(run.s.accelerator)
            if signal_number:
                interrupted(run, signal_number, time.perf_counter() - run.started, ledger.eval_seconds)
        if config.eval_every and run.state.step % config.eval_every != 0 and not stop:
            keeper.evaluate()
        run.progress.close()
        return finish(run, time.perf_counter() - run.started, ledger.eval_seconds)


def interrupted(run: "Run", signal_number: int, elapsed: float, eval_seconds: float) -> None:
    """Stop at the step every process has finished: save a training state, write summary.json (status
    interrupted) and raise Stopped with the command that continues the run."""
    import signal

    s, state = run.s, run.state
    with run.writes(run.run_dir / STATE_DIR, state=True):
        save_state(run.run_dir, state, s.accelerator, s.model, s.optimizer, s.scheduler, s.config.keep_states)
    run.progress.close()
    if s.accelerator.is_main_process:
        summary = {"status": "interrupted", "steps": state.step, "total_steps": s.total_steps,
                   "train_seconds": elapsed, "samples_per_second": (state.seen - run.seen_before[0]) /
                   max(elapsed - eval_seconds, 1e-9), "best_metrics": state.best_metrics, "best_step": state.best_step,
                   "signal": signal.Signals(signal_number).name}
        atomic_write_text(run.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    s.accelerator.end_training()
    raise Stopped(f"interrupted ({signal.Signals(signal_number).name}) after step {state.step} of {s.total_steps}: "
                  f"the training state is saved; continue with: tunelab train --resume {run.run_dir}",
                  exit_code(signal_number))


@dataclass
class Run:
    """A run in progress: its setup, where training stands, what it logged, and where it writes."""

    s: Setup
    state: TrainState
    history: list[dict]
    run_dir: Path
    progress: Any
    started: float
    seen_before: tuple[int, int]  # rows and tokens a resumed run trained before: not counted in its speed

    @property
    def main(self) -> bool:
        return self.s.accelerator.is_main_process

    def log(self, record: dict) -> None:
        """A record in the history, metrics.jsonl and the trackers."""
        self.history.append(record)
        if self.main:
            append_jsonl(self.run_dir / "metrics.jsonl", record)
        tracking.log(self.s.accelerator, record)

    def writes(self, folder: Path, state: bool = False):
        """Around a write of `folder` (a checkpoint; a training state with `state`): a disk that is full,
        read-only or not ours ends the run with one line that says what it needed and what was kept."""
        needed = model_bytes(self.s.accelerator.unwrap_model(self.s.model)) * (3 if state else 1)
        kept = ("the checkpoints and training states written before are kept; free space, then continue with: "
                f"tunelab train --resume {self.run_dir} (or --overwrite, when no training state was written yet)")
        return writing(folder, needed, kept)

    def say(self, message: str) -> None:
        """A line on stderr, above the progress bar when there is one."""
        if self.main:
            self.progress.write(message, file=sys.stderr) if not self.progress.disable else logger.info(message)


def start(config: TrainConfig, data, resume: bool) -> Run:
    """Check the options, set the run up (or restore it from its newest training state), start its folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config.check()
    run_dir = config.run_dir()
    precision = run_precision(config, run_dir, resume)
    state_path = latest_state(run_dir / STATE_DIR) if resume else None
    if resume and state_path is None:
        raise TunelabError(f"{run_dir} has no training state to resume from (no {STATE_DIR}/step-*); "
                           "start it again with --overwrite")
    if not resume:
        prepare_run_dir(run_dir, config.overwrite)  # fail before any slow work
    configure_threads(config)
    # cpu=True without a GPU: under torchrun-style launchers (`accelerate launch --multi_gpu`, torchrun) or
    # MPI (`accelerate launch --cpu --num_processes N --mpirun_hostfile ...`) the processes then join a gloo group.
    trackers = tracking.build(tracking.parse_report_to(config.report_to), config.run_name or run_dir.name, run_dir)
    reset_accelerate_precision(precision.accelerate)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=precision.accelerate,
                              cpu=not torch.cuda.is_available(), log_with=trackers or None)
    accelerator.wait_for_everyone()  # every process has checked the run folder before the main one writes
    if resume:
        check_state_processes(state_path, accelerator.num_processes)  # before the slow loading
    set_seed(config.seed)
    s = setup(config, accelerator, data, precision)
    state, history = TrainState(), []
    if resume:
        state, history = restore(state_path, run_dir, accelerator, s.model, s.optimizer, s.scheduler)
        logger.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, state.step, state.epoch,
                    state.batch_in_epoch)
    elif accelerator.is_main_process:
        start_run_folder(s, run_dir)
    tracking.start(accelerator, run_record(s, run_dir))
    if accelerator.is_main_process:
        check_room(s, run_dir)
    logger.info("training %s (%s) on %d rows: %s", s.model_name, s.task.name, len(s.data.train), describe(s))
    progress = tqdm(total=s.total_steps, initial=state.step, desc="train", dynamic_ncols=True, mininterval=1.0,
                    disable=not (config.progress and accelerator.is_local_main_process))
    s.model.train()
    return Run(s, state, history, run_dir, progress, time.perf_counter(), (state.seen, state.tokens))


def reset_accelerate_precision(mixed_precision: str) -> None:
    """accelerate keeps one state per process and refuses another precision in it: a second run in the same
    process (a notebook, a test) may ask for one, so the state's precision part is reset (not the process
    group a launcher set up)."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state()


def run_precision(config: TrainConfig, run_dir: Path, resume: bool) -> "Precision":
    """The precision the run computes in: what --precision means on this device, or on resume what the run
    started with (a run moved to another machine keeps its arithmetic)."""
    from tunelab.precision import Precision, resolve

    if resume and (run_dir / "config.yaml").exists():
        import yaml

        started = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("resolved", {})
        if started.get("precision"):
            return Precision(resolve(started["precision"]).name, "the precision the run started in")
    return resolve(config.precision)


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def check_room(s: Setup, run_dir: Path) -> None:
    """Warn, with both figures, when the output's filesystem has less free space than the run will write:
    best/ and last/, and the training states it keeps (weights, and AdamW's two moments)."""
    size = model_bytes(s.accelerator.unwrap_model(s.model))
    needed = 2 * size + s.config.keep_states * 3 * size
    free = free_bytes(run_dir)
    if free < needed:
        logger.warning("%s has %s free, but the run will write about %s (best/ and last/ of %s each, up to %d "
                       "training states of %s); free space, --keep-states 1 or another --output", run_dir,
                       megabytes(free), megabytes(needed), megabytes(size), s.config.keep_states, megabytes(3 * size))


def evaluates_at(run: Run, step: Step) -> bool:
    """Whether this optimizer step ends with an evaluation: every --eval-every steps, else every epoch's end."""
    if run.s.config.eval_every:
        return run.state.step % run.s.config.eval_every == 0
    return step.epoch_end or run.state.step >= run.s.total_steps


class Ledger:
    """The training side of the log: a record every --logging-steps (mean loss, rate, speed, clipping) and
    the progress bar. Evaluation time is kept out of the speed it reports."""

    def __init__(self, run: Run):
        self.run = run
        self.window_start = time.perf_counter()
        self.eval_seconds = 0.0

    def due(self, step: int) -> bool:
        return step % self.run.s.config.logging_steps == 0 or step == self.run.s.total_steps

    def paused(self, seconds: float) -> None:
        """An evaluation took `seconds`: they count neither in this window's speed nor in the run's."""
        self.eval_seconds += seconds
        self.window_start += seconds

    def stepped(self, step: Step) -> None:
        self.run.progress.update(1)
        if self.due(self.run.state.step):
            self.record(step.grad_norm)

    def record(self, grad_norm: float | None) -> None:
        run, state, config = self.run, self.run.state, self.run.s.config
        now = time.perf_counter()
        speed = state.window_seen / max(now - self.window_start, 1e-9)
        mean_loss = state.running_loss / state.running_count
        record = {"step": state.step, "epoch": round(state.step / run.s.steps_per_epoch, 4), "loss": mean_loss,
                  "learning_rate": rate_now(run.s.optimizer, run.s.learning_rate), "samples_per_s": speed}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm  # before clipping, at this step (as the Trainer logs it)
        if config.max_grad_norm:
            # How often --max-grad-norm bound in this window: near 1, it rescales nearly every step.
            # The window began after the previous log, at a multiple of --logging-steps.
            window_steps = state.step - (state.step - 1) // config.logging_steps * config.logging_steps
            record["clipped"] = round(state.window_clipped / window_steps, 4)
        run.log(record)
        run.progress.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{speed:.1f}")
        state.running_loss, state.running_count, state.window_seen, self.window_start = 0.0, 0, 0, now
        state.window_clipped = 0


class Keeper:
    """Evaluation: the validation figures, best/ saved on improvement, and patience."""

    def __init__(self, run: Run, on_done):
        self.run = run
        self.on_done = on_done  # told how long each evaluation took

    def evaluate(self) -> bool:
        """Evaluate, save `best/` on improvement; return True when patience ran out."""
        run, s, state = self.run, self.run.s, self.run.state
        started = time.perf_counter()
        epoch = state.step / s.steps_per_epoch
        metrics, scores = evaluate_loader(s.model, s.val_loader, s.accelerator, s.task, s.data, s.val_encoded)
        # Every process computes these (the same rows), so all of them agree on whether best/ improved.
        generated, samples = s.task.sampled(s.accelerator.unwrap_model(s.model), s.tokenizer, s.data, s.settings)
        metrics.update(generated)
        if samples and run.main:
            write_samples(run.run_dir, state.step, samples)
        run.log({"step": state.step, "epoch": round(epoch, 4), **{f"eval_{k}": v for k, v in metrics.items()}})
        run.say(f"step {state.step} (epoch {epoch:.2f}): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        # What this evaluation tuned (thresholds) goes with the weights it evaluated: into best/ when they are
        # the best, and into last/ when it is the last evaluation.
        for key, value in s.task.checkpoint_config(scores).items():
            setattr(s.accelerator.unwrap_model(s.model).config, key, value)
        improved = is_better(s.metric, metrics[s.metric], state.best_value)
        if improved:
            self.keep(metrics, scores, epoch)
        else:
            state.evals_since_best += 1
        self.on_done(time.perf_counter() - started)  # training speed excludes evaluation time
        patience = s.config.patience
        return not improved and patience is not None and state.evals_since_best >= patience

    def keep(self, metrics: dict, scores, epoch: float) -> None:
        """The evaluated weights are the best so far: remember their figures and save them as best/."""
        run, s, state = self.run, self.run.s, self.run.state
        state.best_value, state.best_metrics, state.best_step = metrics[s.metric], metrics, state.step
        state.evals_since_best = 0
        state.best_confusion = scores.details.get("confusion_matrix")
        state.best_confusion_labels = scores.details.get("confusion_labels")
        state.best_per_class = scores.details.get("per_class")
        s.accelerator.wait_for_everyone()
        if run.main:
            with run.writes(run.run_dir / "best"):
                save_checkpoint(s.accelerator.unwrap_model(s.model), s.tokenizer, run.run_dir / "best",
                                checkpoint_info(s, step=state.step, epoch=epoch, metrics=metrics, metric=s.metric),
                                model_card(s, run.run_dir, metrics, state.step, scores.details.get("per_class")))


def write_samples(run_dir: Path, step: int, samples: list[dict]) -> None:
    """Append an evaluation's generated answers to samples.jsonl; log the first three."""
    for sample in samples:
        append_jsonl(run_dir / "samples.jsonl", {"step": step, **sample})
    for sample in samples[:3]:
        logger.info("sample at step %d: %r -> %r (reference %r)", step, sample["prompt"][-80:], sample["answer"],
                    sample["reference"])


def finish(run: Run, elapsed: float, eval_seconds: float) -> TrainResult:
    """Save last/, write summary.json and the plots."""
    s, state, run_dir = run.s, run.state, run.run_dir
    accelerator = s.accelerator
    accelerator.wait_for_everyone()
    last = last_evaluation(run.history, state.step)
    if accelerator.is_main_process:
        with run.writes(run_dir / "last"):
            save_checkpoint(accelerator.unwrap_model(s.model), s.tokenizer, run_dir / "last",
                            checkpoint_info(s, step=state.step), model_card(s, run_dir, *last))
    training = max(elapsed - eval_seconds, 1e-9)
    result = TrainResult(
        run_dir=run_dir, best_dir=run_dir / "best", last_dir=run_dir / "last", metric=s.metric,
        best_metrics=state.best_metrics, best_step=state.best_step, steps=state.step, train_seconds=elapsed,
        samples_per_second=(state.seen - run.seen_before[0]) / training, history=run.history,
        rows_trained=state.seen, tokens_trained=state.tokens, tokens_per_second=(state.tokens - run.seen_before[1]) / training,
    )
    if accelerator.is_main_process:
        summary = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()
                   if k != "history"}
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_plots(run_dir, run.history, state.best_confusion, state.best_confusion_labels, state.best_step)
        add_curves_to_cards(s, run_dir, state, last)
        final = {**summary, **{f"best_{k}": v for k, v in result.best_metrics.items()}}
        tracking.finish(accelerator, {f"final/{k}": v for k, v in final.items()}, state.step,
                        sorted((run_dir / "plots").glob("*.png")))
    # The processes leave the group together: a process that tore it down while the main one was still writing
    # last/ was seen to abort once in gloo's teardown ("terminate called without an active exception", a
    # two-process run on a loaded machine)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def last_evaluation(history: list[dict], step: int) -> tuple[dict, int]:
    """The metrics of the run's last evaluation and its step (none yet: empty, the current step)."""
    evaluations = [r for r in history if "eval_loss" in r]
    if not evaluations:
        return {}, step
    return {k[5:]: v for k, v in evaluations[-1].items() if k.startswith("eval_")}, evaluations[-1]["step"]


def add_curves_to_cards(s: Setup, run_dir: Path, state: TrainState, last: tuple[dict, int]) -> None:
    """Put the finished run's training curves beside the cards of best/ and last/, and show them there."""
    curves = [p for p in (run_dir / "plots" / c for c in CURVES) if p.exists()]
    if state.best_metrics and (run_dir / "best").exists():
        attach_curves(run_dir / "best", curves,
                      model_card(s, run_dir, state.best_metrics, state.best_step, state.best_per_class, curves))
    attach_curves(run_dir / "last", curves, model_card(s, run_dir, *last, None, curves))


def write_plots(run_dir: Path, history: list[dict], confusion, labels, best_step: int) -> None:
    """plots/loss.png, plots/metrics.png and plots/confusion_matrix.png (of the best checkpoint)."""
    from tunelab.plots import plot_confusion, plot_training

    try:
        plot_training(history, run_dir / "plots")
        if confusion is not None and labels:
            plot_confusion(confusion, labels, run_dir / "plots" / "confusion_matrix.png",
                           title=f"Validation, best checkpoint (step {best_step})")
    except Exception as exc:  # noqa: BLE001 - plots must never cost a finished run
        logger.warning("could not write plots: %s", exc)
