"""Ctrl-C and SIGTERM during `tunelab train`, through the installed console script: the step under way
finishes, a training state is saved, one line says how to go on, the exit code is 130 or 143, and
`--resume` ends with the weights of a run that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import sentiment_rows

TUNELAB = str(Path(sys.executable).with_name("tunelab"))


def train_command(data, model, run) -> list[str]:
    return [TUNELAB, "train", "--data", str(data), "--model", str(model), "--output", str(run), "--max-steps", "300",
            "--batch-size", "4", "--logging-steps", "1", "--threads", "1", "--no-progress", "--lr", "1e-3"]


def weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


@pytest.fixture(scope="module")
def setting(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("interrupt")
    pd.DataFrame(sentiment_rows(400, seed=3)).to_csv(folder / "data.csv", index=False)
    done = subprocess.run(train_command(folder / "data.csv", tiny_bert, folder / "straight"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder, tiny_bert, weights(folder / "straight" / "last")


def wait_for_step(run: Path, process, step: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
        if any(json.loads(line).get("step", 0) >= step for line in lines if line.strip()):
            return
        time.sleep(0.02)
    raise AssertionError("training did not reach the step")


@pytest.mark.parametrize("number,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_state_and_resume_ends_with_the_uninterrupted_weights(setting, number, code):
    folder, model, expected = setting
    run = folder / f"run-{number}"
    process = subprocess.Popen(train_command(folder / "data.csv", model, run), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_step(run, process, 20)
    process.send_signal(number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    summary = json.loads((run / "summary.json").read_text())
    step = summary["steps"]
    assert 20 <= step < 300 and summary["status"] == "interrupted"
    name = signal.Signals(number).name
    assert err.strip().splitlines()[-1] == (f"interrupted ({name}) after step {step} of 300: the training state is "
                                            f"saved; continue with: tunelab train --resume {run}")
    assert "Traceback" not in err and out == ""
    assert (run / "state" / f"step-{step:08d}" / "trainer_state.json").exists()
    resumed = subprocess.run([TUNELAB, "train", "--resume", str(run), "--no-progress"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    got = weights(run / "last")
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert "status" not in json.loads((run / "summary.json").read_text())  # finished now


def test_runs_says_an_interrupted_run_can_be_resumed_at_its_step(setting, capsys):
    from tunelab.runs import summarize

    folder, _, _ = setting
    interrupted = folder / "marked"
    interrupted.mkdir()
    (interrupted / "config.yaml").write_text((folder / "straight" / "config.yaml").read_text())
    (interrupted / "summary.json").write_text(json.dumps({"status": "interrupted", "signal": "SIGTERM", "steps": 42,
                                                          "train_seconds": 3.0, "samples_per_second": 9.0}))
    assert summarize(interrupted).status == "interrupted by SIGTERM (resumable at step 42)"


def sweep_command(folder: Path, model, study: Path, *extra: str, steps: int = 120) -> list[str]:
    """A two-point sweep (learning rates 1e-3 and 3e-3) of `steps`-step trials on the module's data."""
    shared = folder / f"trial-{steps}.yaml"
    shared.write_text(f"max_steps: {steps}\nbatch_size: 4\nlogging_steps: 1\nthreads: 1\n")
    return [TUNELAB, "sweep", "--study", str(study), "--config", str(shared), "--data", str(folder / "data.csv"),
            "--model", str(model), "--epochs", "1", "--learning-rates", "1e-3,3e-3", "--warmup-steps", "0",
            "--weight-decays", "0", "--no-progress", *extra]


def test_a_sweep_stopped_by_a_signal_marks_its_trial_stopped_and_resumes_it(setting):
    import csv

    folder, model, _ = setting
    study = folder / "study"
    command = sweep_command(folder, model, study)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = study / "trials" / "trial-000"
    wait_for_step(first, process, 10)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"sweep stopped during trial 0, whose training state is saved in {first}; "
                                            "run the same tunelab sweep command again to resume it")
    summary = json.loads((first / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"INFO: trial 1 resumes trial 0 (stopped) in {first}\n" in done.stderr
    assert f"INFO: resuming {first} at step {summary['steps']} (" in done.stderr  # not trained again from step 0
    with open(study / "results.csv", newline="") as table:
        rows = {row["trial"]: row for row in csv.DictReader(table)}
    assert {n: row["state"] for n, row in rows.items()} == {"0": "stopped", "1": "complete", "2": "complete"}
    # Trial 1 is trial 0's grid point, resumed in trial 0's folder; trial 2 is the other point.
    assert rows["1"]["learning_rate"] == rows["0"]["learning_rate"] != rows["2"]["learning_rate"]
    assert not (study / "trials" / "trial-001").exists() and (study / "trials" / "trial-002").is_dir()
    straight = subprocess.run([TUNELAB, "train", "--config", str(first / "config.yaml"), "--output",
                               str(folder / "straight-trial"), "--no-progress"], capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr
    got, expected = weights(first / "last"), weights(folder / "straight-trial" / "last")
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


def read_until(fd: int, marker: bytes, process, seconds: float = 120, times: int = 1) -> bytes:
    """What the process wrote to the terminal `fd` until `marker` appeared `times` times (or it ended)."""
    import os
    import select

    seen = b""
    deadline = time.monotonic() + seconds
    while seen.count(marker) < times and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the terminal's other end closed: the process ended
                break
    return seen


# Both signals and both commands go through the same handler: two runs cover them (each costs a process start).
@pytest.mark.parametrize("command,number,code", [("predict", signal.SIGTERM, 143), ("evaluate", signal.SIGINT, 130)])
def test_predict_and_evaluate_on_a_file_stop_on_a_signal_with_its_code_and_one_line(setting, tmp_path, command,
                                                                                      number, code):
    import fcntl
    import os
    import pty
    import struct
    import termios

    folder, _, _ = setting
    lines = tmp_path / "many.csv"  # predict reads its text column, evaluate its texts and labels
    # Enough rows that prediction is still under way at the bar's second draw (0.5 s) on a fast CPU: 20,000
    # rows took 0.46 s on an AVX-512 machine, so the second draw was the finished bar's and the signal could
    # land as it closed.
    pd.DataFrame(sentiment_rows(60_000, seed=5)).to_csv(lines, index=False)
    # stderr on a terminal shows the progress bar: the signal comes once prediction is under way (the bar
    # drawn a second time: its first batches done).
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 0-column one shows no bar
    given = ["--input", str(lines)] if command == "predict" else [str(lines)]
    process = subprocess.Popen([TUNELAB, command, str(folder / "straight" / "best"), *given, "--backend", "torch"],
                               stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    started = read_until(main, b"predict:", process, times=2)
    assert process.poll() is None and started.count(b"predict:") == 2, started
    process.send_signal(number)
    rest = read_until(main, b"\x00", process)  # everything, to the end
    out, _ = process.communicate(timeout=60)
    os.close(main)
    err = (started + rest).decode().replace("\r\n", "\n")
    assert process.returncode == code, err
    last = err.strip().splitlines()[-1].split("\r")[-1]
    assert last == f"interrupted ({signal.Signals(number).name}) before the command finished"
    assert "Traceback" not in err and out == b""


@pytest.mark.slow  # Ray's start and its workers' imports: about a minute on 2 cores
def test_a_ray_sweep_stopped_by_a_signal_marks_its_running_trial_stopped_and_resumes_it(setting):
    import csv

    pytest.importorskip("ray")
    folder, model, _ = setting
    study = folder / "ray-study"
    # Long trials: the stop travels through Ray to the trial's actor, and on a fast CPU a tiny model runs
    # a hundred steps before it lands (113 of 120 were seen in CI)
    command = sweep_command(folder, model, study, "--backend", "ray", "--parallel", "1", steps=1000)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # SIGTERM to the sweep alone, as `kill PID` sends it
    first = (study / "trials" / "trial-000").resolve()
    wait_for_step(first, process, 10)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"sweep stopped by SIGTERM: the training state of trial 0 ({first}) is "
                                            "saved; run the same tunelab sweep command again to resume it")
    summary = json.loads((first / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 10 <= summary["steps"] < 1000  # stopped after a step, saved
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"INFO: trial 1 resumes trial 0 (stopped) in {first}\n" in done.stderr
    with open(study / "results.csv", newline="") as table:
        rows = {row["trial"]: row for row in csv.DictReader(table)}
    assert {n: row["state"] for n, row in rows.items()} == {"0": "stopped", "1": "complete", "2": "complete"}
    assert rows["1"]["learning_rate"] == rows["0"]["learning_rate"] != rows["2"]["learning_rate"]
