"""`python -m bench defaults --set NAME=VALUE`: candidate defaults reach TrainConfig as typed values."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_set_options_are_read_as_train_config_values(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import defaults

    from tunelab.train import TrainConfig

    # YAML 1.1 reads 5e-5 as text; it must still arrive as a number
    got = defaults.overrides(["head-learning-rate=5e-5", "warmup_ratio=0", "batching=random", "eval_before=true"])
    assert got == {"head_learning_rate": 5e-5, "warmup_ratio": 0, "batching": "random", "eval_before": True}
    assert TrainConfig(**got).head_learning_rate == 5e-5
    sys.modules.pop("defaults", None)
