"""Options are declared once, on TrainConfig: the train and sweep command lines come from its fields."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import run_cli


def train_command_options() -> dict[str, object]:
    import typer.main

    from tunelab.cli import _register, app

    _register()
    command = typer.main.get_command(app).commands["train"]
    return {p.name: p for p in command.params}


def test_the_train_command_line_and_the_dataclass_agree():
    from tunelab.train.config import TrainConfig

    options = train_command_options()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(options) - {"config", "resume"} == set(fields)
    for name, f in fields.items():
        assert options[name].default == f.default, name
        assert options[name].help == f.metadata["help"], name
    assert options["learning_rate"].opts == ["--learning-rate", "--lr"]
    assert options["freeze_encoder"].secondary_opts == ["--no-freeze-encoder"]


def test_an_option_added_to_the_dataclass_appears_on_the_command_line(monkeypatch):
    from tunelab.cli.train import config_parameters
    from tunelab.train import config as config_module

    extended = dataclasses.make_dataclass(
        "Extended", [("dropout_boost", float, config_module.option(0.25, "A new option."))],
        bases=(config_module.TrainConfig,))
    monkeypatch.setattr(config_module, "TrainConfig", extended)
    added = {p.name: p for p in config_parameters()}["dropout_boost"]
    assert added.default.default == 0.25 and added.default.param_decls == ("--dropout-boost",)
    assert added.default.help == "A new option." and added.annotation is float


def test_sweepable_options_come_from_the_dataclass():
    from tunelab.train.config import sweepable

    assert sweepable() == {"epochs": "epochs", "batch_size": "batch-sizes", "learning_rate": "learning-rates",
                           "weight_decay": "weight-decays", "warmup_steps": "warmup-steps",
                           "lr_scheduler": "lr-schedulers", "label_smoothing": "label-smoothings",
                           "class_weights": "class-weights-list", "long_text": "long-texts",
                           "lora_r": "lora-rs", "beta": "betas", "preference_loss": "preference-losses"}


def test_a_sweep_ranks_by_the_default_metric_of_the_datas_task(tmp_path, sentiment_csv):
    # "auto" maximizes a classifier's accuracy and minimizes a language model's validation loss.
    from tunelab.sweep import _metric_direction

    (tmp_path / "docs.txt").write_text("once upon a time\n\nthe movie was good\n\nvery dull\n")
    assert _metric_direction({"data": str(sentiment_csv)}) == ("accuracy", "maximize")
    assert _metric_direction({"data": str(tmp_path / "docs.txt"), "task": "causal-lm"}) == ("loss", "minimize")
    assert _metric_direction({"data": str(sentiment_csv), "metric": "loss"}) == ("loss", "minimize")


@pytest.mark.parametrize("args,expected", [
    (["trian"], "Error: No such command 'trian'. Did you mean 'train'?"),
    (["train", "--lroa"], "Error: No such option: --lroa (Possible options: --lora, --lora-r, --lr)"),
    (["predict"], "Error: Missing argument 'checkpoint'."),
    (["train", "--epochs", "many"], "Error: Invalid value for '--epochs': Input should be a valid integer, "
                                      "unable to parse string as an integer"),
])
def test_usage_errors_are_one_line_and_exit_2(args, expected, capsys):
    code, out, err = run_cli(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == expected


def test_resume_refuses_options_that_change_what_the_run_computes(tmp_path, capsys):
    from tunelab.train.config import changeable_on_resume

    assert changeable_on_resume() == {"logging_steps", "threads", "progress", "keep_states", "report_to", "run_name"}
    code, _, err = run_cli(["train", "--resume", tmp_path, "--epochs", "2", "--lr", "1e-3"], capsys)
    assert code == 1 and err.strip() == ("error: --resume continues a run as it was configured; drop --epochs, "
                                         "--learning-rate")


@pytest.mark.parametrize("args,expected", [
    (["trian"], "Error: No such command 'trian'. Did you mean 'train'?"),
    (["train", "--lroa"], "Error: No such option: --lroa (Possible options: --lora, --lora-r, --lr)"),
    (["predict"], "Error: Missing argument 'checkpoint'."),
])
def test_the_installed_command_gives_usage_errors_without_a_traceback(args, expected):
    import subprocess
    import sys
    from pathlib import Path

    command = Path(sys.executable).with_name("tunelab")  # the console script pip installed
    done = subprocess.run([str(command), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1] == expected


def test_default_learning_rates_follow_the_width_and_the_given_ones_win():
    from types import SimpleNamespace

    from tunelab.train import TrainConfig
    from tunelab.train.optim import learning_rates

    def width(hidden):
        return SimpleNamespace(hidden_size=hidden)

    assert learning_rates(TrainConfig(), width(384)) == (1e-4, 1e-3)  # MiniLM
    assert learning_rates(TrainConfig(), width(768)) == (5e-5, 1e-3)  # base models: the usual 5e-5
    assert learning_rates(TrainConfig(), width(1024)) == (3.75e-5, 1e-3)
    assert learning_rates(TrainConfig(), width(32)) == (1e-3, 1e-3)  # kept within [1e-5, 1e-3]
    assert learning_rates(TrainConfig(), SimpleNamespace(n_embd=576)) == (6.67e-5, 1e-3)  # GPT-2-style configs
    assert learning_rates(TrainConfig(learning_rate=2e-5), width(384)) == (2e-5, 1e-3)
    assert learning_rates(TrainConfig(learning_rate=3e-3), width(384)) == (3e-3, 3e-3)  # never below the encoder
    assert learning_rates(TrainConfig(learning_rate=2e-5, head_learning_rate=5e-4), width(384)) == (2e-5, 5e-4)


def test_a_run_starts_by_printing_the_hyperparameters_it_resolved(sentiment_csv, tiny_bert, tmp_path, caplog):
    import logging

    import yaml

    from tunelab.train import TrainConfig, train

    with caplog.at_level(logging.INFO):
        run = train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "run"), epochs=2,
                                progress=False))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training "))
    assert line == (f"training {tiny_bert} (classification) on 108 rows: learning rate 0.001 (default for hidden "
                    "size 32), head 0.001, linear schedule, no warm-up, batch 32, 2 epochs (8 steps), "
                    "weight decay 0.01, clipping 1, evaluation every epoch, grouped batches, max length 64 "
                    "(truncate for longer texts), fp32 (TUNELAB_NATIVE_BF16=0)")
    resolved = yaml.safe_load((run.run_dir / "config.yaml").read_text())["resolved"]
    assert (resolved["learning_rate"], resolved["head_learning_rate"]) == (0.001, 0.001)
    assert (resolved["model"], resolved["model_path"]) == (tiny_bert, tiny_bert)  # a path is its own name
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "cosine"), max_steps=4,
                          warmup_steps=2, lr_scheduler="cosine", progress=False))
        train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "none"), max_steps=4,
                          warmup_ratio=0.0, progress=False))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training ")]
    assert [line.split(", ")[2:4] for line in lines] == [["cosine schedule after 2 warm-up steps", "batch 32"],
                                                          ["linear schedule", "no warm-up"]]


def command_options(name: str) -> dict[str, object]:
    import typer.main

    from tunelab.cli import _register, app

    _register()
    return {p.name: p for p in typer.main.get_command(app).commands[name].params}


@pytest.mark.parametrize("command", ["evaluate", "predict", "serve"])
def test_every_task_option_a_command_takes_comes_from_its_one_declaration(command):
    """The options a task declares for a command appear on it with their flag, type and help, and nothing
    else does: an option added to a task reaches every command it names with no other edit."""
    from tunelab.tasks import task_options

    options = command_options(command)
    declared = task_options(command)
    assert declared, command
    for item in declared:
        found = options[item.name]
        assert found.opts[0] == item.flag, item.name
        assert found.help.startswith(item.help), item.name
        assert found.default is None, item.name  # not given: the checkpoint's (or the declared default)
    from tunelab.tasks import registry

    everywhere = {o.name for t in registry().values() for o in (*t.options, *t.inputs)}
    assert {name for name in options if name in everywhere} == {o.name for o in declared}


def test_train_and_sweep_take_the_tasks_options_from_their_declarations():
    from tunelab.cli.sweep import shared_options
    from tunelab.tasks import task_options

    train = command_options("train")
    for item in task_options("train"):
        assert train[item.name].opts[0] == item.flag and train[item.name].help == item.help, item.name
        assert train[item.name].default == item.default, item.name
    sweep = command_options("sweep")
    columns = [o.name for o in task_options("train") if o.stored == "columns"]
    assert set(columns) <= set(shared_options()) and all(sweep[name].help == train[name].help for name in columns)


def test_an_option_a_task_declares_reaches_train_evaluate_predict_and_the_checkpoint(monkeypatch):
    """A new option declared by one task: on the command lines it names, in TrainConfig, in the task's
    settings (stored with its checkpoints), refused for other tasks."""
    from tunelab.options import Option
    from tunelab.tasks import classification
    from tunelab.tasks.base import TaskData

    extra = Option("review_column", str, "review", "A new column.", commands=("train", "evaluate", "predict"))
    monkeypatch.setattr(classification.ClassificationTask, "options",
                        classification.ClassificationTask.options + (extra,))
    from tunelab.train import config as config_module

    composed = config_module.compose()
    assert {f.name: f.default for f in dataclasses.fields(composed)}["review_column"] == "review"
    from tunelab.cli import option_parameters

    for command in ("evaluate", "predict"):
        assert "review_column" in {p.name for p in option_parameters(command)}
    task = classification.ClassificationTask()
    import pandas as pd

    settings = task.settings({"review_column": "body"}, 64, 8, TaskData(pd.DataFrame(), pd.DataFrame(), task))
    assert settings.columns["review_column"] == "body"
