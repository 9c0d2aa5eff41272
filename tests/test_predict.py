"""Prediction, evaluation and the checkpoint's life outside tunelab."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

import tunelab
from conftest import run_cli, sentiment_rows


def test_save_and_load_give_equal_logits(trained_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["good fun movie", "the plot was dull and weak and boring", "fine"]
    ours = tunelab.load(trained_run.best_dir).logits(texts)
    model = AutoModelForSequenceClassification.from_pretrained(trained_run.best_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_run.best_dir)
    with torch.no_grad():
        for text, row in zip(texts, ours):
            direct = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy()
            np.testing.assert_allclose(row, direct, atol=1e-5)


def test_predict_returns_label_names_in_input_order(trained_run):
    predictor = tunelab.load(trained_run.run_dir)  # the run folder means its best/
    texts = ["the movie was really great and superb", "awful", "dull weak film", "lovely fun"]
    predictions = predictor.predict(texts)
    assert [p.label for p in predictions] == ["positive", "negative", "negative", "positive"]
    for p in predictions:
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5 and p.score == max(p.probabilities.values())


def test_transformers_pipeline_loads_the_checkpoint_without_tunelab(trained_run):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(trained_run.best_dir))
    result = classifier(["great superb fun", "awful dull weak"])
    assert [r["label"] for r in result] == ["positive", "negative"]
    every = classifier("great superb fun", top_k=None)
    assert {r["label"] for r in every} == {"positive", "negative"}


def test_predict_cli_formats(trained_run, capsys):
    code, out, _ = run_cli(["predict", trained_run.best_dir, "great fun", "awful dull"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["label", "score", "text"]
    assert lines[1].startswith("positive") and lines[1].endswith("great fun")
    assert lines[2].startswith("negative")

    code, out, _ = run_cli(["predict", trained_run.best_dir, "great fun", "--format", "jsonl"], capsys)
    row = json.loads(out)
    assert row["label"] == "positive" and set(row["probabilities"]) == {"negative", "positive"}

    code, out, _ = run_cli(["predict", trained_run.best_dir, "great fun", "-f", "csv"], capsys)
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["text", "label", "score", "p_negative", "p_positive"]


def test_predict_from_file_and_stdin(trained_run, tmp_path, capsys, monkeypatch):
    lines = tmp_path / "in.txt"
    lines.write_text("great fun\n\nawful dull\n", encoding="utf-8")
    code, out, _ = run_cli(["predict", trained_run.best_dir, "--input", lines, "-f", "jsonl"], capsys)
    assert [json.loads(x)["label"] for x in out.splitlines()] == ["positive", "negative"]

    table = tmp_path / "in.csv"
    pd.DataFrame({"review": ["superb lovely", "poor weak"]}).to_csv(table, index=False)
    code, out, _ = run_cli(["predict", trained_run.best_dir, "-i", table, "--text-column", "review",
                            "-f", "jsonl"], capsys)
    assert [json.loads(x)["label"] for x in out.splitlines()] == ["positive", "negative"]

    nulls = tmp_path / "in.jsonl"
    nulls.write_text('{"text": "great fun"}\n{"text": null}\n', encoding="utf-8")
    code, out, err = run_cli(["predict", trained_run.best_dir, "-i", nulls], capsys)
    assert code == 1 and out == "" and err.strip().splitlines()[-1] == "error: input 2 is empty; give non-empty texts"

    monkeypatch.setattr("sys.stdin", io.StringIO("lovely great\nboring bad\n"))
    code, out, _ = run_cli(["predict", trained_run.best_dir, "-f", "jsonl"], capsys)
    assert [json.loads(x)["label"] for x in out.splitlines()] == ["positive", "negative"]


def direct_probabilities(checkpoint, text: str, pair: str | None) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with torch.no_grad():
        return torch.softmax(model(**tokenizer(text, pair, return_tensors="pt")).logits[0], -1).numpy()


def test_predict_pairs_from_cli(trained_run, tmp_path, capsys):
    # The sentiment model was trained on single texts; a second text moves its output only a little, but far
    # beyond float noise (a predictor that dropped it would give the single text's numbers to the last bit).
    best = trained_run.best_dir
    code, out, err = run_cli(["predict", best, "good fun", "--pair", "awful weak", "-f", "jsonl"], capsys)
    assert code == 0, (out, err)
    row = json.loads(out)
    assert row["text_pair"] == "awful weak"
    ours = np.array([row["probabilities"]["negative"], row["probabilities"]["positive"]])
    np.testing.assert_allclose(ours, direct_probabilities(best, "good fun", "awful weak"), rtol=0, atol=1e-6)
    assert np.abs(ours - direct_probabilities(best, "good fun", None)).max() > 1e-5
    # TAB-separated lines of a .txt input are pairs too.
    lines = tmp_path / "pairs.txt"
    lines.write_text("good fun\tawful weak\nlovely great\tsuperb fine\n", encoding="utf-8")
    code, out, err = run_cli(["predict", best, "--input", lines, "-f", "jsonl"], capsys)
    rows = [json.loads(x) for x in out.splitlines()]
    assert [(r["text"], r["text_pair"]) for r in rows] == [("good fun", "awful weak"), ("lovely great", "superb fine")]
    # Predicted in a batch of two, padded to the longer pair: the same computation on another batch shape, so
    # equal within float noise (kernels may sum in another order for another shape), not to the last bit.
    for name, value in row["probabilities"].items():
        assert rows[0]["probabilities"][name] == pytest.approx(value, abs=1e-6)
    code, out, err = run_cli(["predict", best, "a", "b", "--pair", "c"], capsys)
    assert code == 1 and "2 texts but 1 --pair values" in err


def test_evaluate_cli_report_and_json(trained_run, tmp_path, capsys):
    path = tmp_path / "test.csv"
    pd.DataFrame(sentiment_rows(40, seed=9)).to_csv(path, index=False)
    code, out, _ = run_cli(["evaluate", trained_run.best_dir, path, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["rows"] == 40 and report["metrics"]["accuracy"] >= 0.9
    assert sum(map(sum, report["confusion_matrix"])) == 40
    assert set(report["per_class"]) == {"negative", "positive"}
    code, out, _ = run_cli(["evaluate", trained_run.best_dir, path], capsys)
    assert "confusion matrix (rows: true, columns: predicted)" in out and "precision" in out
    picture = trained_run.run_dir / "plots" / "confusion_test_validation.png"
    assert f"confusion matrix plot: {picture}" in out and picture.stat().st_size > 1000


def test_evaluate_rejects_labels_the_checkpoint_does_not_know(trained_run, tmp_path, capsys):
    path = tmp_path / "other.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_csv(path, index=False)
    code, _, err = run_cli(["evaluate", trained_run.best_dir, path], capsys)
    assert code == 1
    assert "error: label 'neg' (1 rows), 'pos' (1 rows) is not one the checkpoint knows (negative, positive)" in err


def test_onnx_int8_fast_path_matches_torch(trained_run, capsys, tmp_path):
    import shutil

    from tunelab.export import onnx_path

    checkpoint = tmp_path / "ckpt"  # a copy: the export is written beside the checkpoint
    shutil.copytree(trained_run.best_dir, checkpoint)
    assert tunelab.load(checkpoint).backend == "torch"  # auto: no export yet
    code, out, err = run_cli(["export", checkpoint], capsys)
    assert code == 0, err
    assert onnx_path(checkpoint).exists() and out.startswith("wrote ")
    texts = ["the movie was really great and superb", "awful", "dull weak film", "lovely fun", "fine plot"]
    fast = tunelab.load(checkpoint)  # auto picks the export up
    assert fast.backend == "onnx"
    slow = tunelab.load(checkpoint, backend="torch")
    np.testing.assert_allclose(fast.logits(texts), slow.logits(texts), atol=0.05)
    assert [p.label for p in fast.predict(texts)] == [p.label for p in slow.predict(texts)]
    code, out, _ = run_cli(["predict", checkpoint, "great fun", "--backend", "onnx", "-f", "jsonl"], capsys)
    assert json.loads(out)["label"] == "positive"
    # The export sits beside the checkpoint and does not disturb it for transformers.
    from transformers import pipeline

    assert pipeline("text-classification", model=str(checkpoint))("great fun")[0]["label"] == "positive"


def test_evaluate_split_and_limit(trained_run, tmp_path, capsys):
    import datasets

    rows = sentiment_rows(60, seed=11)
    datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(pd.DataFrame(rows[:20])),
        "test": datasets.Dataset.from_pandas(pd.DataFrame(rows[20:])),
    }).save_to_disk(str(tmp_path / "saved"))
    code, out, err = run_cli(["evaluate", trained_run.best_dir, tmp_path / "saved", "--split", "test", "--json"], capsys)
    assert code == 0, err and json.loads(out)["rows"] == 40
    assert json.loads(out)["rows"] == 40
    code, out, err = run_cli(["evaluate", trained_run.best_dir, tmp_path / "saved", "--split", "test", "--limit", "7",
                              "--json"], capsys)
    assert json.loads(out)["rows"] == 7
    code, _, err = run_cli(["evaluate", trained_run.best_dir, tmp_path / "saved", "--split", "dev"], capsys)
    assert code == 1 and err.strip() == f"error: split 'dev' not in {tmp_path / 'saved'}; splits found: train, test"


def test_a_predictor_built_from_a_model_finds_its_task_and_the_length_limit(trained_run):
    """`Predictor(model, tokenizer)` (the library API, no checkpoint folder) reads the task from the config,
    clamps --max-length to both the model's positions and the tokenizer's limit, and predicts as `load` does."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.predict import Predictor

    model = AutoModelForSequenceClassification.from_pretrained(trained_run.best_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_run.best_dir)
    positions = model.config.max_position_embeddings
    tokenizer.model_max_length = positions - 3  # the tokenizer's limit is the tighter one
    assert Predictor(model, tokenizer, max_length=10_000).max_length == positions - 3
    tokenizer.model_max_length = int(1e30)  # "no limit", as tokenizers without one say
    predictor = Predictor(model, tokenizer, max_length=10_000)
    assert predictor.max_length == positions
    assert predictor.task.name == "classification" and predictor.settings.task == "classification"
    assert predictor.options == {}
    texts = ["the movie was really great and superb", "awful", "dull weak film"]
    np.testing.assert_allclose(predictor.logits(texts), tunelab.load(trained_run.best_dir).logits(texts), atol=1e-6)
    assert [p.label for p in predictor.predict(texts)] == ["positive", "negative", "negative"]


def test_load_passes_its_options_on_and_names_what_it_could_not_load(trained_run, tmp_path):
    import shutil

    import pytest
    from transformers import AutoConfig

    from tunelab.errors import TunelabError

    assert tunelab.load(trained_run.best_dir, max_length=7, batch_size=3).max_length == 7
    assert tunelab.load(trained_run.best_dir, batch_size=3).batch_size == 3
    with pytest.raises(TunelabError) as error:
        tunelab.load(trained_run.best_dir, backend="tpu")
    assert str(error.value) == "backend must be one of auto, torch, onnx, got 'tpu'"
    broken = tmp_path / "broken"
    shutil.copytree(trained_run.best_dir, broken)
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}', encoding="utf-8")
    with pytest.raises(ValueError) as raw:
        AutoConfig.from_pretrained(broken)
    with pytest.raises(TunelabError) as error:
        tunelab.load(broken)
    assert str(error.value) == f"could not load the model in {broken}: {str(raw.value).splitlines()[0]}"
    (broken / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(TunelabError) as error:
        tunelab.load(broken)
    assert str(error.value) == (
        f"{broken / 'config.json'} is damaged (not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 3 (char 2)): it was cut short or changed after it was saved; save the checkpoint again, or "
        "use another one")


def test_the_onnx_backend_exports_on_first_use_and_reuses_the_export(trained_run, tmp_path, caplog):
    import logging
    import shutil

    from tunelab.export import onnx_path

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_run.best_dir, checkpoint)
    texts = ["the movie was really great and superb", "awful", "dull weak film"]
    with caplog.at_level(logging.INFO, logger="tunelab.predict"):
        first = tunelab.load(checkpoint, backend="onnx")
    assert [r.getMessage() for r in caplog.records if r.name == "tunelab.predict"] == [
        f"no ONNX export in {checkpoint} yet: exporting (once)"]
    assert first.backend == "onnx" and onnx_path(checkpoint).exists()
    written = onnx_path(checkpoint).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tunelab.predict"):
        again = tunelab.load(checkpoint, backend="onnx")
    assert not [r for r in caplog.records if r.name == "tunelab.predict"]
    assert onnx_path(checkpoint).stat().st_mtime_ns == written  # read, not written again

    def refuse(*args, **kwargs):
        raise AssertionError("the ONNX backend ran the torch model")

    first.model.forward = again.model.forward = refuse  # the torch model only supplies config and labels
    np.testing.assert_allclose(again.logits(texts), first.logits(texts), atol=1e-6)
    torch_logits = tunelab.load(checkpoint, backend="torch").logits(texts)
    assert np.abs(first.logits(texts) - torch_logits).max() < 0.05


def test_every_label_is_scored_also_for_a_text_shorter_than_the_label_count(tmp_path):
    """Token-level rows are cut to their text's pieces; a text's row of class scores never is (one word is
    three pieces with [CLS] and [SEP], fewer than the five labels)."""
    from transformers import AutoModelForSequenceClassification

    from conftest import build_tiny_bert

    checkpoint = build_tiny_bert(tmp_path / "five", num_labels=5)
    predictor = tunelab.load(checkpoint)
    logits = predictor.logits(["good", "good fun"])
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        direct = model(**predictor.tokenizer(["good", "good fun"], padding=True, return_tensors="pt")).logits.numpy()
    assert logits.shape == (2, 5)
    np.testing.assert_allclose(logits, direct, atol=1e-5)
