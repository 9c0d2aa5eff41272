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


def test_the_recipe_s_figures_can_come_from_an_earlier_result_of_the_same_rows(tmp_path, monkeypatch, capsys):
    import json

    import pytest

    monkeypatch.syspath_prepend(str(BENCH))
    import defaults

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({
        "commit": "abc1234", "date": "2026-11-29 21:52 UTC", "model": "m", "limit": 1000, "seed": 42,
        "rows": [{"dataset": "sst2", "task": "classification", "rows": "1000 / 872", "metric": "accuracy",
                  "trainer": 0.8, "trainer_s": 400.0}]}))
    ran = []

    def child(script, args, env=None):
        ran.append(args[args.index("--variant") + 1])
        return {"last": {"accuracy": 0.81}, "best": {"accuracy": 0.82}, "wall_s": 300.0,
                "config": {"task": "classification"}}

    monkeypatch.setattr(defaults, "run_child", child)
    monkeypatch.setenv("BENCH_COMMIT", "def5678")
    argv = ["defaults", "--model", "m", "--limit", "1000", "--datasets", "sst2", "--variants", "tunelab",
            "--trainer-from", str(earlier), "--out", str(tmp_path / "new.json")]
    monkeypatch.setattr(sys, "argv", argv)
    defaults.main()
    row = json.loads((tmp_path / "new.json").read_text())["rows"][0]
    assert ran == ["tunelab"]  # the recipe is not trained again
    keys = ("rows", "trainer", "trainer_s", "tunelab_last", "tunelab_s", "wins", "trainer_from")
    assert {k: row[k] for k in keys} == {
        "rows": "1000 / 872", "trainer": 0.8, "trainer_s": 400.0, "tunelab_last": 0.81, "tunelab_s": 300.0,
        "wins": "yes", "trainer_from": "earlier.json (commit abc1234, 2026-11-29 21:52 UTC)"}

    for changed, message in [(["--seed", "1"], f"--trainer-from {earlier}: it ran {{'model': 'm', 'limit': 1000, "
                               "'seed': 42}, this run m, 1000 rows, seed 1; the recipe's figures must come from "
                               "the same rows"),
                              (["--datasets", "sst2", "mrpc"],
                               f"--trainer-from {earlier} has no recipe figures for mrpc"),
                              (["--variants", "trainer", "tunelab"],
                               "--trainer-from replaces the recipe's runs: add --variants tunelab")]:
        monkeypatch.setattr(sys, "argv", argv + changed)
        with pytest.raises(SystemExit) as refused:
            defaults.main()
        assert str(refused.value) == message
    sys.modules.pop("defaults", None)
