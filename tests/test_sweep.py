"""Sweeps on a tiny model: grid over six trials, local and on a local Ray, resumable."""

from __future__ import annotations

import csv

import pytest
import yaml

from conftest import run_cli
from tunelab.sweep import SweepConfig, run_sweep

SPACE = {"epochs": [1, 2], "learning_rate": [1e-3, 3e-3, 5e-3], "warmup_steps": [0], "weight_decay": [0.01]}


def base(data, model) -> dict:
    return {"data": str(data), "model": model, "batch_size": 16, "threads": 1, "logging_steps": 5}


def read_table(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_local_grid_sweep_table_plot_best_config_and_resume(sentiment_csv, tiny_bert, tmp_path, capsys):
    study = tmp_path / "study"
    first = run_sweep(SweepConfig(base=base(sentiment_csv, tiny_bert), study_dir=str(study), space=SPACE, trials=3))
    assert len([t for t in first.trials if t.state == "complete"]) == 3
    # Run again asking for the whole grid: only the three missing trials run.
    result = run_sweep(SweepConfig(base=base(sentiment_csv, tiny_bert), study_dir=str(study), space=SPACE))
    assert len(result.trials) == 6 and len(list((study / "trials").iterdir())) == 6
    assert {(t.params["epochs"], t.params["learning_rate"]) for t in result.trials} == {
        (e, lr) for e in SPACE["epochs"] for lr in SPACE["learning_rate"]}
    rows = read_table(result.table)
    values = [float(r["accuracy"]) for r in rows]
    assert values == sorted(values, reverse=True) and rows[0]["rank"] == "1"
    best = yaml.safe_load(result.best_config.read_text())
    assert best["learning_rate"] == result.trials[0].params["learning_rate"] and best["data"] == str(sentiment_csv)
    assert result.plot.stat().st_size > 5000
    # The best config trains as it is.
    code, out, err = run_cli(["train", "--config", result.best_config, "--output", tmp_path / "best-run",
                              "--no-progress"], capsys)
    assert code == 0, err


def test_a_trial_killed_while_running_runs_again(sentiment_csv, tiny_bert, tmp_path):
    import optuna
    from optuna.distributions import CategoricalDistribution

    study_dir = tmp_path / "study"
    config = SweepConfig(base=base(sentiment_csv, tiny_bert), study_dir=str(study_dir), space=SPACE, trials=2)
    run_sweep(config)
    # Simulate a sweep killed mid-trial: a trial left RUNNING in the database.
    study = optuna.load_study(study_name="tunelab", storage=f"sqlite:///{study_dir / 'study.db'}")
    study.ask({k: CategoricalDistribution(v) for k, v in SPACE.items()})
    result = run_sweep(SweepConfig(**{**config.__dict__, "trials": 3}))
    states = sorted(t.state for t in result.trials)
    assert states == ["complete", "complete", "complete", "fail"]


def test_cli_sweep_and_bad_options(sentiment_csv, tiny_bert, tmp_path, capsys):
    code, out, err = run_cli(["sweep", "--study", tmp_path / "s", "--data", sentiment_csv, "--model", tiny_bert,
                              "--method", "random", "--trials", "2", "--epochs", "1", "--learning-rates", "1e-3,3e-3",
                              "--warmup-steps", "0", "--weight-decays", "0"], capsys)
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["rank", "trial", "accuracy"] and "best config:" in out
    code, _, err = run_cli(["sweep", "--study", tmp_path / "t", "--data", sentiment_csv, "--method", "bayes"], capsys)
    assert code == 1 and "error: --method bayes needs --trials N" in err
    code, _, err = run_cli(["sweep", "--study", tmp_path / "u", "--data", sentiment_csv,
                            "--lr-schedulers", "linear,step", "--label-smoothings", "0,1"], capsys)
    assert code == 1 and err.strip() == (
        "error: lr_scheduler 'step' to try: --lr-scheduler must be one of linear, cosine, constant, got 'step'; "
        "label_smoothing 1.0 to try: --label-smoothing must be in [0, 1), got 1.0")
    assert not (tmp_path / "u").exists()  # refused before the study folder is made


def test_sweep_over_schedules_and_label_smoothing(sentiment_csv, tiny_bert, tmp_path, capsys):
    code, out, err = run_cli(["sweep", "--study", tmp_path / "s", "--data", sentiment_csv, "--model", tiny_bert,
                              "--epochs", "1", "--learning-rates", "3e-3", "--warmup-steps", "0",
                              "--weight-decays", "0", "--lr-schedulers", "linear,cosine",
                              "--label-smoothings", "0,0.1"], capsys)
    assert code == 0, err
    rows = read_table(tmp_path / "s" / "results.csv")
    assert sorted((r["lr_scheduler"], r["label_smoothing"]) for r in rows) == [
        ("cosine", "0.0"), ("cosine", "0.1"), ("linear", "0.0"), ("linear", "0.1")]
    trial = yaml.safe_load(next((tmp_path / "s" / "trials").glob("*/config.yaml")).read_text())
    assert trial["lr_scheduler"] in ("linear", "cosine") and trial["label_smoothing"] in (0.0, 0.1)


def test_ray_backend_same_table(sentiment_csv, tiny_bert, tmp_path):
    pytest.importorskip("ray")
    study = tmp_path / "ray-study"
    result = run_sweep(SweepConfig(base=base(sentiment_csv, tiny_bert), study_dir=str(study), space=SPACE,
                                   backend="ray", parallel=2))
    assert len([t for t in result.trials if t.state == "complete"]) == 6
    rows = read_table(result.table)
    assert list(rows[0]) == ["rank", "trial", "accuracy", "epochs", "learning_rate", "warmup_steps", "weight_decay",
                             "seconds", "state"]
    assert (study / "best.yaml").exists()
    again = run_sweep(SweepConfig(base=base(sentiment_csv, tiny_bert), study_dir=str(study), space=SPACE,
                                  backend="ray", parallel=2))
    assert len(again.trials) == 6  # nothing re-ran


def test_bayes_sweep_over_batch_sizes(sentiment_csv, tiny_bert, tmp_path, capsys):
    code, out, err = run_cli(["sweep", "--study", tmp_path / "b", "--data", sentiment_csv, "--model", tiny_bert,
                              "--method", "bayes", "--trials", "3", "--epochs", "1", "--learning-rates", "3e-3",
                              "--warmup-steps", "0", "--weight-decays", "0", "--batch-sizes", "8,16"], capsys)
    assert code == 0, err
    rows = read_table(tmp_path / "b" / "results.csv")
    assert len(rows) == 3 and {r["batch_size"] for r in rows} <= {"8", "16"}
    # Each trial trained with the batch size it was given: 108 rows make 14 steps of 8 or 7 of 16.
    for row in rows:
        summary = __import__("json").loads((tmp_path / "b" / "trials" / f"trial-{int(row['trial']):03d}" /
                                            "summary.json").read_text())
        assert summary["steps"] == {"8": 14, "16": 7}[row["batch_size"]]


def test_sweep_over_class_weights_and_long_text(sentiment_csv, tiny_bert, tmp_path, capsys):
    code, out, err = run_cli(["sweep", "--study", tmp_path / "s", "--data", sentiment_csv, "--model", tiny_bert,
                              "--epochs", "1", "--learning-rates", "3e-3", "--warmup-steps", "0", "--weight-decays", "0", "--class-weights-list", "none,balanced",
                              "--long-texts", "windows,truncate"], capsys)
    assert code == 0, err
    rows = read_table(tmp_path / "s" / "results.csv")
    assert sorted((r["class_weights"], r["long_text"]) for r in rows) == [
        ("balanced", "truncate"), ("balanced", "windows"), ("none", "truncate"), ("none", "windows")]
    resolved = sorted((c["class_weights"], c["resolved"]["long_text"], "class_weights" in c["resolved"])
                      for c in (yaml.safe_load(p.read_text()) for p in (tmp_path / "s" / "trials").glob("*/config.yaml")))
    assert resolved == [("balanced", "truncate", True), ("balanced", "windows", True), ("none", "truncate", False),
                        ("none", "windows", False)]


def test_a_full_disk_while_writing_the_table_is_one_line_and_a_rerun_finishes(sentiment_csv, tiny_bert, tmp_path,
                                                                              capsys, monkeypatch):
    import errno
    import re

    from tunelab import sweep

    study = tmp_path / "study"
    real = sweep.atomic_write_text

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sweep, "atomic_write_text", full)
    args = ["sweep", "--study", study, "--data", sentiment_csv, "--model", tiny_bert, "--epochs", "1",
            "--learning-rates", "1e-3", "--warmup-steps", "0", "--weight-decays", "0", "--no-progress"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in err
    assert re.fullmatch(rf"error: could not write {re.escape(str(study))}: no space left on the device \(it needs "
                        r"about 1 MB, [\d.]+ (MB|GB) free\); the trials finished so far are kept in the study; free "
                        r"space, then run the same command again", err.strip().splitlines()[-1]), err
    monkeypatch.setattr(sweep, "atomic_write_text", real)
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert [(r["trial"], r["state"]) for r in read_table(study / "results.csv")] == [("0", "complete")]
