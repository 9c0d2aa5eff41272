"""Runs teams can share: trackers, model cards, pushing to the Hub, listing and comparing runs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli, sentiment_rows
from tunelab.train import TrainConfig, train


def quick(data, model, out, **overrides) -> TrainConfig:
    options = dict(data=str(data), model=model, output=str(out), epochs=2, batch_size=16, learning_rate=3e-3,
                   progress=False, logging_steps=2, warmup_ratio=0.0)
    return TrainConfig(**{**options, **overrides})


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_bert):
    """One run reported to TensorBoard and MLflow (a local file store), shared by the tests below."""
    folder = tmp_path_factory.mktemp("tracked")
    data = folder / "reviews.csv"
    pd.DataFrame(sentiment_rows(120)).to_csv(data, index=False)
    store = folder / "mlruns"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
        result = train(quick(data, tiny_bert, folder / "runs" / "first", report_to="tensorboard,mlflow",
                             run_name="first-try"))
    return result, store, data


def test_trackers_hold_the_losses_and_metrics_of_metrics_jsonl_at_their_steps(tracked):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, store, _ = tracked
    records = jsonl(result.run_dir / "metrics.jsonl")
    expected = {key: [(r["step"], r[key]) for r in records if key in r]
                for key in ("loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1")}
    assert len(expected["loss"]) == 7 and len(expected["eval_accuracy"]) == 2  # 2 epochs of 7 steps, logged every 2

    events = EventAccumulator(str(result.run_dir / "logs" / "first-try"))
    events.Reload()
    for key, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in points], key
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), key  # stored as float32
    assert {e.step for e in events.Scalars("final/best_accuracy")} == {result.steps}
    assert events.Scalars("final/best_accuracy")[0].value == pytest.approx(result.best_metrics["accuracy"])
    assert "plots/loss" in events.Tags()["images"]

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tunelab").experiment_id])
    assert run.info.run_name == "first-try"
    assert run.data.params["learning_rate"] == "0.003" and run.data.params["resolved/task"] == "classification"
    for key, points in expected.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(s, pytest.approx(v, rel=1e-12)) for s, v in points], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss.png", "plots/metrics.png"} <= artifacts


def wandb_history(path: Path) -> dict[int, dict]:
    """The history rows of an offline W&B run file, by step. The file is a LevelDB-style log (a 7-byte
    header, 32 KiB blocks of records cut into pieces) of protobuf Records; wandb ships no reader for it."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, pos, pieces, rows = path.read_bytes(), 7, b"", {}
    while pos + 7 <= len(raw):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:  # the rest of the block is padding
            pos += left
            continue
        pieces = (pieces if kind in (3, 4) else b"") + raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            if record.WhichOneof("record_type") == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                rows[row["_step"]] = row
    return rows


def test_wandb_offline_writes_its_run_files(sentiment_csv, tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb package cannot be installed here")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", report_to="wandb", max_steps=4,
                         run_name="offline-try"))
    (offline,) = (result.run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    history = wandb_history(log)
    records = jsonl(result.run_dir / "metrics.jsonl")
    assert sorted(history) == sorted({r["step"] for r in records}) == [2, 4]
    for record in records:
        for key, value in record.items():
            assert key == "step" or history[record["step"]][key] == pytest.approx(value), key
    assert history[4]["final/best_accuracy"] == pytest.approx(result.best_metrics["accuracy"])
    images = {p.name.split("_4_")[0] for p in (offline / "files" / "media" / "images" / "plots").iterdir()}
    assert images == {"loss", "metrics", "confusion_matrix"}


def test_a_tracker_that_is_not_installed_or_not_known_is_one_line(sentiment_csv, tiny_bert, tmp_path, capsys):
    args = ["train", "--data", sentiment_csv, "--model", tiny_bert, "--output", tmp_path / "run", "--report-to"]
    code, _, err = run_cli(args + ["tensorboard,clearml"], capsys)
    assert code == 1 and err.strip() == "error: --report-to: clearml is not installed; pip install clearml"
    code, _, err = run_cli(args + ["tensorbored"], capsys)
    assert code == 1 and err.strip() == ("error: --report-to tensorbored: unknown tracker tensorbored; use none or "
                                         "any of tensorboard, mlflow, wandb, comet_ml, aim, clearml, dvclive, "
                                         "swanlab, trackio, separated by commas")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- model cards


def test_the_card_loads_its_metadata_parses_and_its_metrics_are_the_summarys(tracked, tiny_bert):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    result, _, data = tracked
    summary = json.loads((result.run_dir / "summary.json").read_text())
    card = ModelCard.load(result.best_dir / "README.md")
    meta = card.data.to_dict()
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    assert "base_model" not in meta  # a local folder is not a Hub id
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "first"
    assert {r.metric_type: r.metric_value for r in results} == summary["best_metrics"]
    assert {r.dataset_name for r in results} == {"reviews.csv"} and {r.task_type for r in results} == {"text-classification"}
    ModelCardData(**meta)  # the metadata round-trips through huggingface_hub's own checks
    text = (result.best_dir / "README.md").read_text()
    for private in (str(data.parent), str(Path(tiny_bert).parent), os.path.expanduser("~"), sys.prefix):
        assert private not in text
    assert "| negative | 60 |" in text or "| positive |" in text  # label counts of the training rows
    assert "![loss](loss.png)" in text and (result.best_dir / "loss.png").exists()
    # the best evaluation's scores per class, one row a label
    header = "| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n"
    rows = text.split(header)[1].split("\n\n")[0].splitlines() if header in text else []
    assert [row.split(" | ")[0] for row in rows] == ["| negative", "| positive"]
    last = ModelCard.load(result.last_dir / "README.md").data.to_dict()
    final = [r for r in jsonl(result.run_dir / "metrics.jsonl") if "eval_loss" in r][-1]
    _, last_results = model_index_to_eval_results(last["model-index"])
    assert {r.metric_type: r.metric_value for r in last_results} == {k[5:]: v for k, v in final.items()
                                                                      if k.startswith("eval_")}


def test_the_card_names_the_hub_model_it_started_from():
    from tunelab.card import BUNDLED_HUB_ID, base_model, public_name

    assert base_model("minilm") == BUNDLED_HUB_ID
    assert base_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert base_model(os.getcwd()) is None
    assert public_name("/home/someone/data/train.csv") == "train.csv"
    assert public_name("stanfordnlp/imdb") == "stanfordnlp/imdb"


# ---------------------------------------------------------------- push


def test_push_dry_run_lists_exactly_the_checkpoint_files(tracked, capsys):
    result, _, _ = tracked
    (result.best_dir / ".model.safetensors.tmp.x").write_text("half-written")
    code, out, _ = run_cli(["push", result.run_dir, "--repo", "someone/tiny", "--dry-run"], capsys)
    (result.best_dir / ".model.safetensors.tmp.x").unlink()
    expected = sorted(p.name for p in result.best_dir.iterdir())  # a run folder pushes its best/
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"would upload {len(expected)} files from {result.best_dir} to someone/tiny:"
    assert [line.strip() for line in lines[1:]] == expected
    assert "README.md" in expected and "model.safetensors" in expected


def test_push_offline_is_one_line(tracked, capsys, monkeypatch):
    result, _, _ = tracked
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli(["push", result.best_dir, "--repo", "someone/tiny"], capsys)
    assert code == 1 and out == ""
    assert err.strip() == ("error: cannot push: HF_HUB_OFFLINE is set, so no network call is made; unset it to "
                           "upload (or use --dry-run to list what would be uploaded)")


def test_push_without_a_token_is_one_line(tracked, capsys, monkeypatch, tmp_path):
    result, _, _ = tracked
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored login
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    code, _, err = run_cli(["push", result.best_dir, "--repo", "someone/tiny"], capsys)
    assert code == 1
    assert err.strip() == "error: cannot push: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN"


# ---------------------------------------------------------------- runs and compare


def test_runs_shows_finished_early_stopped_and_killed_runs(tracked, tiny_bert, capsys):
    result, _, data = tracked
    runs = result.run_dir.parent
    train(quick(data, tiny_bert, runs / "patient", learning_rate=1e-12, epochs=10, patience=1))
    train(quick(data, tiny_bert, runs / "killed", save_every=4, max_steps=12))
    for name in ("summary.json", "last"):  # as a process killed after its step-8 state leaves it
        target = runs / "killed" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert sorted(p.name for p in (runs / "killed" / "state").iterdir()) == ["step-00000007", "step-00000008"]
    shutil.copytree(runs / "killed", runs / "early-kill")
    shutil.rmtree(runs / "early-kill" / "state")

    code, out, _ = run_cli(["runs", runs, "--json"], capsys)
    listed = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and list(listed) == ["early-kill", "first", "killed", "patient"]
    assert listed["first"]["status"] == "finished" and listed["first"]["steps"] == 14
    assert listed["patient"]["status"] == "stopped early" and listed["patient"]["steps"] == 14  # 2 of 10 epochs
    assert listed["killed"]["status"] == "interrupted (resumable at step 8)"
    assert listed["early-kill"]["status"] == "interrupted (no state to resume)"
    assert listed["first"]["best"] == result.best_metrics["accuracy"] and listed["first"]["data"] == "reviews.csv"
    code, out, _ = run_cli(["runs", runs, "--sort", "steps"], capsys)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "task", "data"] and lines[1].startswith(("first", "patient"))
    assert lines[-1].startswith(("killed", "early-kill")) and "interrupted" in lines[-1]


def test_compare_writes_the_png_and_the_options_that_differ(tracked, tiny_bert, tmp_path, capsys):
    from PIL import Image

    result, _, data = tracked
    other = train(quick(data, tiny_bert, tmp_path / "slower", learning_rate=1e-3))
    code, out, _ = run_cli(["compare", result.run_dir, other.run_dir, "-o", tmp_path / "both.png"], capsys)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:-1]}
    assert rows["learning-rate"] == ["0.003", "0.001"]
    assert rows["head-learning-rate"] == ["0.003", "0.001"]  # the rates the runs resolved, not "None"
    assert "data" not in rows and "seed" not in rows  # the same in both
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'both.png'}"
    with Image.open(tmp_path / "both.png") as image:
        assert image.format == "PNG" and image.size[0] > 1000


# ---------------------------------------------------------------- progress


def run_tunelab(args: list, terminal: bool) -> tuple[int, str, str]:
    """The tunelab command in a child process, its stderr on a pseudo-terminal (or a pipe); returns the exit
    code, stdout and what stderr showed."""
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import termios

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    command = [sys.executable, "-m", "tunelab.cli", *map(str, args)]
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new terminal is 0 wide
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif child.poll() is not None:
            break
    os.close(master)
    out = child.stdout.read().decode()
    return child.wait(timeout=60), out, seen.decode(errors="replace")


def test_evaluate_and_predict_show_progress_on_a_terminal_only(trained_run, tmp_path):
    rows = pd.DataFrame(sentiment_rows(300, seed=5))
    rows.to_csv(tmp_path / "eval.csv", index=False)
    rows[["text"]].to_csv(tmp_path / "texts.csv", index=False)
    evaluate = ["evaluate", trained_run.best_dir, tmp_path / "eval.csv", "--batch-size", "8"]
    predict = ["predict", trained_run.best_dir, "--input", tmp_path / "texts.csv", "--batch-size", "8"]
    for args in (evaluate, predict):
        code, out, shown = run_tunelab(args, terminal=True)
        assert code == 0, shown
        assert "predict:   0%" in shown and "0/300" in shown  # the bar starts...
        assert "100%" in shown and "300/300" in shown and "rows/s]" in shown  # ...and ends with every row
        assert "rows/s" not in out  # never on stdout
    # Both commands draw the bar through one function: each way of turning it off is checked on one of them.
    code, out, err = run_tunelab(predict, terminal=False)
    assert code == 0 and "rows/s" not in out + err and "%|" not in out + err
    code, out, shown = run_tunelab(evaluate + ["--no-progress"], terminal=True)
    assert code == 0 and "rows/s" not in shown and "%|" not in shown


def test_bad_input_to_push_runs_and_compare_is_one_line(tracked, tmp_path, capsys):
    from conftest import fails

    result, _, _ = tracked
    assert fails(["push", result.best_dir, "--repo", "tiny", "--dry-run"], capsys) == (
        "error: --repo tiny: expected a Hub repository as user/name (or organization/name)")
    assert fails(["runs", tmp_path / "nowhere"], capsys) == (
        f"error: runs folder not found: {tmp_path / 'nowhere'}; pass the folder your runs are in (default runs/)")
    assert fails(["runs", result.run_dir.parent, "--sort", "speed"], capsys) == (
        "error: --sort speed: not a column; use one of name, task, data, model, metric, best, best_step, steps, "
        "seconds, samples_per_s, status")
    assert fails(["compare", result.run_dir], capsys) == "error: compare needs at least two run folders"
    assert fails(["compare", result.run_dir, result.best_dir], capsys) == (
        f"error: {result.best_dir} is not a tunelab run (no config.yaml); pass run folders, not checkpoints")
    assert fails(["compare", result.run_dir, result.run_dir, "--metric", "pearson"], capsys) == (
        "error: no run here reports pearson; use --metric with one they report")
