"""Fine-tune a model for its task: options (config), optimizer, training states, setup and the loop.

Names are imported on first use, so that reading the options (the command line) does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "tunelab.train.config": ("LR_SCHEDULERS", "RunConfig", "TrainConfig", "changeable_on_resume", "config_fields", "read_config_file", "resume_config",
                             "sweepable"),
    "tunelab.train.loop": ("TrainResult", "evaluate_loader", "optimizer_steps", "train"),
    "tunelab.train.optim": ("_param_groups", "clip_gradients", "make_scheduler", "rate_now"),
    "tunelab.train.state": ("STATE_DIR", "TrainState"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE) + ["training_loss"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'tunelab.train' has no attribute '{name}'")
    return getattr(importlib.import_module(_WHERE[name]), name)


def training_loss(model, batch: dict, label_smoothing: float = 0.0):
    """The classification loss the loop uses (for callers that train a classifier by hand)."""
    from tunelab.tasks import get_task

    return get_task("classification").loss(model, batch, label_smoothing)
