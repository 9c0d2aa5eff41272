"""Long runs: SIGKILL mid-epoch, resume, and end exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli, sentiment_rows
from tunelab.errors import TunelabError
from tunelab.train import TrainConfig, read_config_file, train


def train_command(data: Path, model: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunelab.cli", "train", "--data", str(data), "--model", model, "--output", str(out),
            "--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--save-every", "10",
            "--threads", "1", "--no-progress", "--logging-steps", "5", *extra]


def evals(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny_bert, tmp_path):
    data = tmp_path / "train.csv"
    pd.DataFrame(sentiment_rows(1600, seed=5)).to_csv(data, index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    steps_per_epoch = 1440 // 8  # 90% of the rows train

    crashed = tmp_path / "crashed"
    process = subprocess.Popen(train_command(data, tiny_bert, crashed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((crashed / "state").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    states = sorted((crashed / "state").glob("step-*"))
    assert states and not (crashed / "last").exists(), "the run should have been killed mid-way"
    killed_at = int(states[-1].name.split("-")[1])
    assert killed_at % steps_per_epoch != 0  # mid-epoch

    resumed = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", "--resume", str(crashed), "--no-progress"],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {crashed} at step {killed_at}" in resumed.stderr

    straight = tmp_path / "straight"
    subprocess.run(train_command(data, tiny_bert, straight), env=env, check=True, capture_output=True)

    for folder in ("last", "best"):
        a, b = load_file(crashed / folder / "model.safetensors"), load_file(straight / folder / "model.safetensors")
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    first, second = evals(crashed), evals(straight)
    assert [r["step"] for r in first] == [r["step"] for r in second] == [steps_per_epoch, 2 * steps_per_epoch]
    for x, y in zip(first, second):
        assert x["eval_accuracy"] == y["eval_accuracy"] and abs(x["eval_loss"] - y["eval_loss"]) < 1e-5
    records = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], "eval_loss" in r) for r in records]
    assert keys == sorted(keys) and len(keys) == len(set(keys))  # no record twice after the resume
    assert len(list((crashed / "state").glob("step-*"))) <= 2  # keeps the last K


def test_config_file_and_flags_override(tiny_bert, tmp_path, sentiment_csv, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(sentiment_csv), "model": tiny_bert, "epochs": 5,
                                      "learning-rate": 3e-3, "batch_size": 16}))
    code, _, err = run_cli(["train", "--config", config, "--epochs", "1", "--output", tmp_path / "run",
                            "--no-progress"], capsys)
    assert code == 0, err
    stored = read_config_file(tmp_path / "run" / "config.yaml")
    assert stored["epochs"] == 1 and stored["learning_rate"] == 3e-3 and stored["batch_size"] == 16
    # The stored config reproduces the run.
    code, _, err = run_cli(["train", "--config", tmp_path / "run" / "config.yaml", "--output", tmp_path / "again",
                            "--no-progress"], capsys)
    assert code == 0, err
    a = json.loads((tmp_path / "run" / "summary.json").read_text())["best_metrics"]
    b = json.loads((tmp_path / "again" / "summary.json").read_text())["best_metrics"]
    assert a == pytest.approx(b, abs=1e-6)


def test_bad_config_files(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x.csv\nlearning_rat: 0.1\n")
    code, _, err = run_cli(["train", "--config", bad], capsys)
    assert code == 1 and "error: unknown option(s) in" in err and "learning_rat" in err
    code, _, err = run_cli(["train", "--epochs", "1"], capsys)
    assert code == 1 and "error: --data is required (or give data: in --config)" in err
    code, _, err = run_cli(["train", "--resume", tmp_path], capsys)
    assert code == 1 and "is not a tunelab run (no config.yaml)" in err


def test_resume_with_another_number_of_processes_says_so(sentiment_csv, tiny_bert, tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(run), epochs=2, batch_size=16,
                      max_steps=8, save_every=4, progress=False))
    state = sorted((run / "state").iterdir())[-1]
    record = json.loads((state / "trainer_state.json").read_text())
    (state / "trainer_state.json").write_text(json.dumps({**record, "num_processes": 2}))
    code, _, err = run_cli(["train", "--resume", run], capsys)
    assert code == 1 and err.strip() == (f"error: {state} was saved by 2 processes, but this run has 1; "
                                         "resume with the same number of processes")


def test_fp16_refused_where_the_device_cannot(sentiment_csv, tiny_bert, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU can run fp16")
    with pytest.raises(TunelabError) as refused:
        train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "r"), precision="fp16"))
    assert str(refused.value) == ("--precision fp16 needs a CUDA GPU and none is available; use --precision auto "
                                  "(bf16 where the CPU has it) or fp32")
    assert not (tmp_path / "r").exists()


KILLED_WRITER = """
import os, signal, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from tunelab.checkpoint import save_checkpoint
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
for p in model.parameters():
    p.data.add_(1.0)  # the new weights differ from the saved ones
tokenizer.save_pretrained = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write
save_checkpoint(model, tokenizer, __import__("pathlib").Path(sys.argv[2]))
"""


def test_a_checkpoint_write_killed_midway_leaves_the_previous_checkpoint(trained_run, tmp_path):
    import shutil

    target = tmp_path / "best"
    shutil.copytree(trained_run.best_dir, target)
    before = load_file(target / "model.safetensors")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(trained_run.best_dir), str(target)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".best.tmp.*"))
    assert leftovers and (leftovers[0] / "model.safetensors").exists()  # the new weights were half way in
    after = load_file(target / "model.safetensors")
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    # The next write clears what the killed one left.
    from tunelab.checkpoint import save_checkpoint
    from tunelab.predict import load

    predictor = load(target)
    save_checkpoint(predictor.model, predictor.tokenizer, target)
    assert not list(tmp_path.glob(".best.tmp.*")) and load(target).predict("great fun")[0].label == "positive"
