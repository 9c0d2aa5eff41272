"""Tasks: what a kind of model reads, how it is trained and scored, and what it predicts.

Each task is one module with one `Task` subclass, registered below; everything else in tunelab (the
training loop, run folders, evaluation, prediction, export, serving, sweeps) asks the task and never
branches on its name. A task's options are declared by the task and reach every command from here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError, collect

if TYPE_CHECKING:
    from tunelab.data import DataSpec, Splits
    from tunelab.options import Option
    from tunelab.tasks.base import Task, TaskData

logger = logging.getLogger(__name__)


def registry() -> dict[str, "Task"]:
    """Every task by name, in the order auto-detection asks them (the first that claims the data wins).
    Fresh objects each call: a task keeps what one run learned of its data (class weights)."""
    from tunelab.tasks.causal_lm import CausalLMTask
    from tunelab.tasks.classification import ClassificationTask, RegressionTask
    from tunelab.tasks.masked_lm import MaskedLMTask
    from tunelab.tasks.multi_label import MultiLabelTask
    from tunelab.tasks.multiple_choice import MultipleChoiceTask
    from tunelab.tasks.preference import PreferenceTask
    from tunelab.tasks.question_answering import QuestionAnsweringTask
    from tunelab.tasks.token_classification import TokenClassificationTask

    tasks = (
        CausalLMTask(),  # claims chat data (a messages column, or prompt and completion columns)
        PreferenceTask(),  # claims chosen and rejected columns (after causal-lm: its checkpoints are causal LMs)
        TokenClassificationTask(),  # claims word lists and CoNLL files
        MultipleChoiceTask(),  # claims rows with a list of choices, and SWAG's ending columns
        QuestionAnsweringTask(),  # claims SQuAD files and context / question / answer rows
        MultiLabelTask(),  # claims label sets
        RegressionTask(),  # claims labels that are numbers with fractions
        ClassificationTask(),  # claims anything else
        MaskedLMTask(),  # never claims data: unlabeled text is named with --task
    )
    return {task.name: task for task in tasks}


def task_names() -> tuple[str, ...]:
    """What --task takes: auto (detect it from the data) or a task's name."""
    return ("auto", *registry())


def task_options(command: str | None = None) -> list["Option"]:
    """The options the tasks declare (each once), those a command takes when `command` is given."""
    from tunelab.options import unique

    found = unique(o for task in registry().values() for o in (*task.options, *task.inputs))
    return [o for o in found if command is None or command in o.commands]


def get_task(name: str) -> "Task":
    tasks = registry()
    if name not in tasks:
        raise TunelabError(f"unknown task '{name}'; use one of {', '.join(task_names())}")
    return tasks[name]


def option_problems(values: dict, task: str = "auto") -> list[str]:
    """What every task (or the named one) finds wrong in its options' values, before any file is read."""
    tasks = registry().values() if task == "auto" else [get_task(task)] if task in registry() else []
    given = [o.problem(values) for o in task_options() if o.name in values]
    return list(dict.fromkeys([p for p in given if p] + [p for t in tasks for p in t.option_problems(values)]))


def detect_task(spec: "DataSpec", splits: "Splits") -> "Task":
    """The task named by --task, a built-in corpus's task, or the first task that claims the data."""
    name = spec.task
    if name == "auto" and splits.builtin is not None:
        name = splits.builtin.task
    if name != "auto":
        return get_task(name)
    return next(task for task in registry().values() if task.claims(spec, splits))


def load_task_data(spec: "DataSpec") -> "TaskData":
    """Read the source and let its task (named, or detected from the data) normalize it."""
    from tunelab.data import read_splits

    collect(spec.problems() + ([] if spec.task in registry() or spec.task == "auto" else
                               [f"--task must be one of {', '.join(task_names())}, got '{spec.task}'"])
            + option_problems(spec.options, spec.task))
    named = registry().get(spec.task)
    splits = read_splits(spec, *(named.source_reading(spec) if named else (False, False)))
    task = detect_task(spec, splits)
    data = task.read(spec, splits)
    logger.info("data: %d training and %d validation rows from %s (%s)", len(data.train), len(data.validation),
                spec.source, task.name)
    shared = overlap(data)
    if shared:
        logger.warning("%d of the %d validation rows are also training rows (the same inputs and labels): every "
                       "figure measured on them flatters the model; remove them from one side", shared,
                       len(data.validation))
    return data


def overlap(data: "TaskData") -> int:
    """How many validation rows are training rows too (every column the same but a row's number in its file)."""
    import json

    def keys(frame) -> list[str]:
        columns = [c for c in frame.columns if c != "row"]
        return [json.dumps([value.tolist() if hasattr(value, "tolist") else value for value in row], default=str)
                for row in frame[columns].itertuples(index=False, name=None)]

    seen = set(keys(data.train))
    return sum(key in seen for key in keys(data.validation))


def task_for_config(config) -> "Task":
    """The task of a saved checkpoint, from its architecture (and the problem type of its head)."""
    architectures = getattr(config, "architectures", None) or []
    problem_type = getattr(config, "problem_type", None)
    for task in registry().values():
        if task.problem_type:  # a task marked by its problem type (multi-label) owns only those checkpoints
            if problem_type == task.problem_type:
                return task
            continue
        if any(a.endswith(task.architecture_suffix) for a in architectures):
            return task
    heads = ", ".join(t.name for t in registry().values() if not t.problem_type)
    raise TunelabError(f"the checkpoint is a {architectures[0] if architectures else 'model without a head'}, "
                       f"which no tunelab task predicts with; pass a checkpoint with a head of one of: {heads}")
