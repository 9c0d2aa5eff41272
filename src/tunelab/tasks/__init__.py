"""Tasks: what a kind of model reads, how it is trained and scored, and what it predicts.

Each task is one module with one `Task` subclass; everything else in tunelab
(the training loop, run folders, evaluation, prediction, export, serving,
sweeps) asks the task and never branches on its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from tunelab.data import DataSpec, Splits
    from tunelab.tasks.base import Task

# --task values; "auto" detects the task from the data. Regression is classification's variant with
# numeric labels, so it shares its module.
TASK_NAMES = ("auto", "classification", "multi-label", "regression", "token-classification", "causal-lm",
              "masked-lm")


def registry() -> dict[str, "Task"]:
    """Every task by name, in the order auto-detection asks them (the first that claims the data wins)."""
    from tunelab.tasks.causal_lm import CausalLMTask
    from tunelab.tasks.classification import ClassificationTask
    from tunelab.tasks.masked_lm import MaskedLMTask
    from tunelab.tasks.multi_label import MultiLabelTask
    from tunelab.tasks.token_classification import TokenClassificationTask

    return {
        "causal-lm": CausalLMTask(),  # claims chat data (a messages column, or prompt and completion columns)
        "token-classification": TokenClassificationTask(),
        "multi-label": MultiLabelTask(),
        "classification": ClassificationTask(),
        "regression": ClassificationTask(regression=True),
        "masked-lm": MaskedLMTask(),  # never claims data: unlabeled text is named with --task
    }


def get_task(name: str) -> "Task":
    tasks = registry()
    if name not in tasks:
        raise TunelabError(f"unknown task '{name}'; use one of {', '.join(TASK_NAMES)}")
    return tasks[name]


def detect_task(spec: "DataSpec", splits: "Splits") -> "Task":
    """The task named by --task, a built-in corpus's task, or the first task that claims the data."""
    name = spec.task
    if name == "auto" and splits.builtin is not None:
        name = splits.builtin.task
    if name != "auto":
        return get_task(name)
    tasks = registry()
    for task in tasks.values():
        if task.claims(spec, splits):
            return task
    return tasks["classification"]


def task_for_config(config) -> "Task":
    """The task of a saved checkpoint, from its architecture (and the task tunelab stored in it)."""
    stored = getattr(config, "tunelab_task", None)
    if stored:
        return get_task(stored)
    architectures = getattr(config, "architectures", None) or []
    problem_type = getattr(config, "problem_type", None)
    for task in registry().values():
        if task.problem_type:  # a task marked by its problem type (multi-label) owns only those checkpoints
            if problem_type == task.problem_type:
                return task
            continue
        if any(a.endswith(task.architecture_suffix) for a in architectures):
            return task
    raise TunelabError(f"the checkpoint is a {architectures[0] if architectures else 'model without a head'}, "
                       "which no tunelab task predicts with; pass a checkpoint with a classification, "
                       "token-classification, causal-LM or masked-LM head")
