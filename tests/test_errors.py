"""Bad input: one line naming the problem and the fix, a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import fails, run_cli, sentiment_rows


def fails_with(args, capsys, expected: str) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 1
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    return lines[0]


def train_args(data, tiny_bert, tmp_path, *extra):
    return ["train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run", "--no-progress", *extra]


def test_missing_file(tiny_bert, tmp_path, capsys):
    fails_with(train_args(tmp_path / "nope.csv", tiny_bert, tmp_path), capsys,
                      f"error: file not found: {tmp_path / 'nope.csv'}; check the path")
    assert not (tmp_path / "run").exists()


def test_unknown_extension(tiny_bert, tmp_path, capsys):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK")
    fails_with(train_args(path, tiny_bert, tmp_path), capsys,
               f"error: unknown file extension '.xlsx' for {path}; use .csv, .tsv, .json, .jsonl, .parquet")


def test_empty_file(tiny_bert, tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    fails_with(train_args(path, tiny_bert, tmp_path), capsys,
               f"error: {path} is empty; it needs a header line and at least one row")


def test_header_only_file(tiny_bert, tmp_path, capsys):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    fails_with(train_args(path, tiny_bert, tmp_path), capsys, f"error: {path} has a header but no rows; add data rows")


def test_misspelled_column_lists_columns_found(tiny_bert, tmp_path, capsys, sentiment_csv):
    fails_with(train_args(sentiment_csv, tiny_bert, tmp_path, "--text-column", "txt"), capsys,
               f"error: --text-column 'txt' not found in {sentiment_csv} (train) (did you mean 'text'?); "
               "columns found: text, label")


def test_missing_label_column(tiny_bert, tmp_path, capsys):
    path = tmp_path / "nolabel.csv"
    pd.DataFrame({"review": ["a", "b"], "stars": [1, 2]}).to_csv(path, index=False)
    fails_with(train_args(path, tiny_bert, tmp_path, "--text-column", "review"), capsys,
               "--label-column 'label' not found in")
    fails_with(train_args(path, tiny_bert, tmp_path, "--text-column", "review"), capsys,
               "columns found: review, stars")


def test_only_one_label(tiny_bert, tmp_path, capsys):
    path = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["pos", "pos", "pos"]}).to_csv(path, index=False)
    fails_with(train_args(path, tiny_bert, tmp_path), capsys,
               "error: only one label found in column 'label' ('pos', 3 rows); classification needs at least two")


def test_all_texts_empty(tiny_bert, tmp_path, capsys):
    path = tmp_path / "blank.csv"
    pd.DataFrame({"text": ["", " ", None], "label": ["a", "b", "a"]}).to_csv(path, index=False)
    fails_with(train_args(path, tiny_bert, tmp_path), capsys,
               "(train): all 3 rows have an empty or null text or label; check the column options")


def test_some_texts_empty_are_dropped_with_a_count(tiny_bert, tmp_path, capsys, caplog):
    path = tmp_path / "gaps.csv"
    rows = sentiment_rows(40)
    rows[0]["text"] = ""
    rows[5]["text"] = None
    pd.DataFrame(rows).to_csv(path, index=False)
    with caplog.at_level("WARNING"):
        code, out, err = run_cli(train_args(path, tiny_bert, tmp_path, "--epochs", "1"), capsys)
    assert code == 0, err
    assert "dropped 2 of 40 rows with an empty or null text (2) or label (0), data rows 0, 5" in caplog.text


def test_validation_label_never_seen_in_training(tiny_bert, tmp_path, capsys, sentiment_csv):
    dev = tmp_path / "dev.csv"
    pd.DataFrame({"text": ["good", "meh", "meh"], "label": ["positive", "neutral", "neutral"]}).to_csv(dev, index=False)
    fails_with(train_args(sentiment_csv, tiny_bert, tmp_path, "--validation", dev), capsys,
               "error: validation label 'neutral' (2 rows) never appears in the training data; "
               "remove those rows from the validation data or add training examples with that label")


def test_bytes_that_are_not_utf8(tiny_bert, tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ngood film,pos\ncaf\xe9 noir,neg\n".encode("latin-1"))
    fails_with(train_args(path, tiny_bert, tmp_path), capsys,
               f"error: {path} is not UTF-8 text: byte 0xe9 at offset 28 (line 3); re-save it as UTF-8")


def test_checkpoint_folder_without_a_model(tmp_path, capsys):
    folder = tmp_path / "empty-ckpt"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    fails_with(["predict", folder, "hello"], capsys,
               f"error: {folder} holds no model (expected config.json and model.safetensors, found: notes.txt); "
               "pass a folder written by save_pretrained")
    fails_with(["evaluate", tmp_path / "missing", "x.csv"], capsys,
               f"error: checkpoint folder not found: {tmp_path / 'missing'}")


def test_existing_run_folder_is_not_overwritten(tiny_bert, tmp_path, capsys, sentiment_csv):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    fails_with(train_args(sentiment_csv, tiny_bert, tmp_path), capsys,
               f"error: run folder {run} already exists and is not empty; pass --overwrite to replace it")
    assert (run / "precious.txt").read_text() == "keep me"


def test_bad_options_are_reported_together(tiny_bert, tmp_path, capsys, sentiment_csv):
    line = fails_with(train_args(sentiment_csv, tiny_bert, tmp_path, "--epochs", "0", "--learning-rate", "-1",
                                 "--metric", "bleu", "--layer-decay", "1.5", "--from-scratch",
                                 "--freeze-embeddings", "--label-smoothing", "1", "--lr-scheduler", "step"), capsys,
                      "--epochs must be at least 1, got 0")
    assert "--learning-rate must be positive" in line and "--metric must be one of" in line
    assert "--layer-decay must be in (0, 1], got 1.5" in line
    assert "--from-scratch and --freeze-embeddings together would keep random token embeddings" in line
    assert "--label-smoothing must be in [0, 1), got 1.0" in line
    assert "--lr-scheduler must be one of linear, cosine, constant, got 'step'" in line


def test_label_smoothing_with_forced_regression(tiny_bert, tmp_path, capsys, sentiment_csv):
    fails_with(train_args(sentiment_csv, tiny_bert, tmp_path, "--task", "regression", "--label-smoothing", "0.1"),
               capsys, "error: --label-smoothing applies to classification; drop it for --task regression")
    assert not (tmp_path / "run").exists()


def test_predict_empty_text(trained_run, capsys):
    fails_with(["predict", trained_run.best_dir, "fine", " "], capsys, "error: input 2 is empty; give non-empty texts")


def test_unknown_model_folder(tmp_path, capsys, sentiment_csv):
    fails_with(train_args(sentiment_csv, str(tmp_path / "models" / "nope"), tmp_path), capsys,
               "error: model folder not found:")


def test_hub_model_offline(tmp_path, capsys, sentiment_csv):
    fails_with(train_args(sentiment_csv, "someone/no-such-model", tmp_path), capsys,
               "error: could not load model 'someone/no-such-model' (HF_HUB_OFFLINE=1 is set):")


def test_hub_dataset_offline(tiny_bert, tmp_path, capsys):
    fails_with(train_args("someone/no-such-dataset", tiny_bert, tmp_path), capsys,
               "error: could not load 'someone/no-such-dataset' from the Hugging Face Hub (HF_HUB_OFFLINE=1 is set):")


@pytest.mark.parametrize("name,cut,reason", [
    ("config.json", 40, "not valid JSON: Unterminated string starting at: line 3 column 3 (char 36)"),
    ("tokenizer.json", 100, None),
    ("tunelab.json", 10, None),
    ("model.safetensors", -100, "Error while deserializing header: incomplete metadata, file not fully covered"),
])
def test_a_damaged_checkpoint_file_is_refused_by_name(trained_run, tmp_path, capsys, name, cut, reason):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_run.best_dir, checkpoint)
    data = (checkpoint / name).read_bytes()
    (checkpoint / name).write_bytes(data[:cut])
    pd.DataFrame(sentiment_rows(20)).to_csv(tmp_path / "x.csv", index=False)
    for args in (["predict", checkpoint, "good"], ["evaluate", checkpoint, tmp_path / "x.csv"], ["export", checkpoint],
                 ["train", "--data", tmp_path / "x.csv", "--model", checkpoint, "--output", tmp_path / "r"]):
        line = fails(args, capsys)
        assert line.startswith(f"error: {checkpoint / name} is damaged (") and line.endswith(
            "): it was cut short or changed after it was saved; save the checkpoint again, or use another one"), line
        if reason:
            assert line == (f"error: {checkpoint / name} is damaged ({reason}): it was cut short or changed after it "
                            "was saved; save the checkpoint again, or use another one")


@pytest.mark.parametrize("failure", ["oserror", "safetensors"])
def test_a_full_disk_mid_run_is_one_line_and_the_earlier_checkpoint_stays_loadable(
        tiny_bert, sentiment_csv, tmp_path, capsys, monkeypatch, failure):
    import errno
    import re

    from transformers import PreTrainedModel

    real = PreTrainedModel.save_pretrained
    calls = []

    def save_pretrained(self, folder, *args, **kwargs):
        calls.append(folder)
        if len(calls) == 1:
            return real(self, folder, *args, **kwargs)
        (Path(folder) / "model.safetensors").write_bytes(b"half a file")
        if failure == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space "
                           "left on device\" }) (os error 28)")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)
    run = tmp_path / "run"
    line = fails(["train", "--data", sentiment_csv, "--model", tiny_bert, "--output", run, "--epochs", "3",
                  "--no-progress", "--lr", "1e-3"], capsys)
    assert re.fullmatch(rf"error: could not write {re.escape(str(run))}/(best|last): no space left on the device "
                        r"\(it needs about \d+ MB, [\d.]+ (MB|GB) free\); the checkpoints and training states written "
                        rf"before are kept; free space, then continue with: tunelab train --resume {re.escape(str(run))}"
                        r" \(or --overwrite, when no training state was written yet\)", line), line
    monkeypatch.undo()
    assert not list(run.glob(".*.tmp.*")) and not list((run / "state").glob(".*.tmp"))
    from tunelab.predict import load

    assert load(run / "best").predict(["good fun"])[0].label in ("positive", "negative")  # the first save, whole


def test_a_full_disk_during_export_is_one_line_and_leaves_the_checkpoint_as_it_was(trained_run, tmp_path, capsys,
                                                                                     monkeypatch):
    import errno
    import re
    import shutil

    from tunelab import export

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_run.best_dir, checkpoint)
    before = sorted(p.name for p in checkpoint.iterdir())

    def trace(source, target):
        Path(target).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "trace", trace)
    line = fails(["export", checkpoint], capsys)
    assert re.fullmatch(rf"error: could not write {re.escape(str(checkpoint / 'onnx'))}: no space left on the device "
                        r"\(it needs about \d+ MB, [\d.]+ (MB|GB) free\); the checkpoint and any earlier export are "
                        r"as they were", line), line
    assert sorted(p.name for p in checkpoint.iterdir()) == before  # no staging folder, no onnx/
