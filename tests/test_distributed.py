"""`accelerate launch --num_processes 2 --cpu` runs the same `tunelab train`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import launch_train

from tunelab.data import DataSpec
from tunelab.tasks import load_task_data
from tunelab.evaluation import evaluate_checkpoint
from tunelab.predict import load


@pytest.mark.parametrize("launcher", ["mpi", "torchrun"])
def test_two_process_ddp_run_saves_the_checkpoint_its_metrics_describe(tiny_bert, sentiment_csv, tmp_path, launcher):
    run = tmp_path / "ddp"
    if launcher == "mpi":
        # accelerate's multi-CPU launcher: `--cpu --num_processes N` starts the processes through mpirun.
        if not shutil.which("mpirun"):
            pytest.skip("needs Open MPI's mpirun (make test installs openmpi-bin)")
        hostfile = tmp_path / "hostfile"
        hostfile.write_text("localhost slots=2\n")
        how = ["--cpu", "--mpirun_hostfile", str(hostfile)]
    else:
        how = ["--multi_gpu"]  # torchrun-style processes; tunelab joins them in a gloo group on the CPU
    command = launch_train(*how) + [
               "--data", str(sentiment_csv), "--model", tiny_bert, "--output", str(run), "--epochs", "3",
               "--batch-size", "8", "--learning-rate", "3e-3", "--threads", "1", "--no-progress", "--save-every", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation accuracy:") == 1  # only the main process prints
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["resolved"]["num_processes"] == 2
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r]
    assert len(evals) == 3  # one per epoch, written once
    info = json.loads((run / "best" / "tunelab.json").read_text())
    # Rebuild the validation rows the run used, and score the saved best checkpoint on them.
    data = load_task_data(DataSpec(str(sentiment_csv), seed=config["seed"]))
    validation = tmp_path / "val.csv"
    data.validation.assign(label=[data.label_names[i] for i in data.validation["label"]]).to_csv(validation, index=False)
    result = evaluate_checkpoint(load(run / "best"), DataSpec(str(validation)))
    assert result.rows == len(data.validation)
    assert result.metrics["accuracy"] == pytest.approx(info["metrics"]["accuracy"], abs=1e-6)
    assert result.metrics["f1"] == pytest.approx(info["metrics"]["f1"], abs=1e-6)
    assert list((run / "state").glob("step-*"))


def test_two_process_token_classification_gathers_every_word_once(tiny_ner_bert, ner_files, tmp_path):
    """Rows of different widths on two processes are padded alike before gathering; the run's recorded F1
    equals what the saved checkpoint scores on the validation file."""
    import json

    run = tmp_path / "ner"
    command = launch_train() + [
               "--data", str(ner_files[0]), "--validation", str(ner_files[1]), "--model", tiny_ner_bert,
               "--output", str(run), "--epochs", "2", "--batch-size", "8", "--learning-rate", "5e-3",
               "--max-length", "24", "--eval-batch-size", "7", "--threads", "1", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((run / "best" / "tunelab.json").read_text())["metrics"]
    spec = DataSpec(str(ner_files[1]))
    result = evaluate_checkpoint(load(run / "best"), spec)
    assert result.rows == 40
    for name in ("f1", "precision", "recall", "accuracy"):
        assert result.metrics[name] == pytest.approx(recorded[name], abs=1e-9)


def test_a_two_process_run_resumes_to_the_weights_of_an_uninterrupted_one(tiny_bert, sentiment_csv, tmp_path):
    """Each process's RNG state and data position are restored: the resumed run ends where the straight one does."""
    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def launch(*args: str) -> None:
        command = launch_train() + list(args)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    options = ["--data", str(sentiment_csv), "--model", tiny_bert, "--epochs", "2", "--batch-size", "8",
               "--learning-rate", "3e-3", "--threads", "1", "--no-progress", "--save-every", "5", "--max-steps", "12", "--keep-states", "5"]
    launch(*options, "--output", str(tmp_path / "straight"))
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    assert sorted(p.name for p in (tmp_path / "straight" / "state").iterdir()) == [
        "step-00000005", "step-00000007", "step-00000010"]  # every 5 steps and at the epoch's end (7 steps)
    for name in ("last", "best", "summary.json", "state/step-00000007", "state/step-00000010"):
        target = tmp_path / "resumed" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    launch("--resume", str(tmp_path / "resumed"), "--no-progress")  # from step 5, mid-epoch (7 steps an epoch)
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)
