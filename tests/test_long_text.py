"""Texts longer than --max-length: counted and reported, cut or read whole in overlapping windows."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import FILLER, NEGATIVE, POSITIVE, build_tiny_bert, fails, run_cli, sentiment_rows
from tunelab.tasks.texts import encode
from tunelab.modeling import load_tokenizer


def long_rows(n: int, words: int, seed: int = 0) -> list[dict]:
    """Reviews of exactly `words` words (one piece each in the tiny vocabulary), alternately positive and
    negative, the sentiment words anywhere in them."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        text = [rng.choice(FILLER) for _ in range(words - 2)] + rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2)
        rng.shuffle(text)
        rows.append({"text": " ".join(text), "label": label})
    return rows


@pytest.fixture(scope="module")
def windowed_checkpoint(tmp_path_factory):
    """A tiny classifier whose tunelab.json says: windows of 16 pieces sharing 4."""
    from transformers import AutoModelForSequenceClassification

    path = build_tiny_bert(tmp_path_factory.mktemp("windowed"), num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():  # words that count and a decisive head: windows of other words get other answers
        model.bert.embeddings.word_embeddings.weight.mul_(50)
        model.classifier.weight.mul_(200)
    model.save_pretrained(path)
    settings = {"task": "classification", "max_length": 16, "stride": 4, "long_text": "windows"}
    (path / "tunelab.json").write_text(json.dumps({"settings": settings}))
    return path


def test_a_document_three_windows_long_is_scored_by_the_mean_of_its_windows(windowed_checkpoint):
    from transformers import AutoModelForSequenceClassification

    from tunelab.predict import load

    # 34 pieces, windows of 14 text pieces starting at 0, 10 and 20: praise, then plot, then complaints.
    text = " ".join((POSITIVE * 2)[:12] + (FILLER * 2)[:10] + (NEGATIVE * 2)[:12])
    tokenizer = load_tokenizer(str(windowed_checkpoint))
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == 36
    body = ids[1:-1]
    windows = [[ids[0]] + body[start:start + 14] + [ids[-1]] for start in (0, 10, 20)]
    assert windows[-1][1:-1] == body[20:]  # the third window reaches the end
    model = AutoModelForSequenceClassification.from_pretrained(windowed_checkpoint).eval()
    with torch.no_grad():
        probabilities = [torch.softmax(model(input_ids=torch.tensor([w])).logits[0], -1).numpy() for w in windows]
    predicted = load(windowed_checkpoint, backend="torch").predict([text, "good film"])
    got = np.array([predicted[0].probabilities[name] for name in ("LABEL_0", "LABEL_1")])
    np.testing.assert_allclose(got, np.mean(probabilities, axis=0), rtol=1e-5)
    # The windows' answers differ by hundreds of times the tolerance: not the cut text's, nor the last window's.
    assert min(np.abs(got - probabilities[i]).max() for i in (0, 2)) > 1e-3
    assert encode(tokenizer, [text, "good film"], None, 16, stride=4, windows=True).documents == [0, 0, 0, 1]


def test_windows_carry_their_documents_label_and_auto_chooses_by_the_share_of_long_rows(tiny_bert):
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    tokenizer = load_tokenizer(tiny_bert)
    task = get_task("classification")
    frame = pd.DataFrame({"text": [r["text"] for r in long_rows(2, 34)] + ["good film"], "label": [1, 0, 1]})
    settings = Settings(task="classification", max_length=16, stride=4, info={"long_text": "auto"})
    encoded = task.encode(tokenizer, frame, settings, training=True)
    assert settings.info["long_text"] == "windows"  # 2 of 3 rows are long
    assert encoded.labels == [1, 1, 1, 0, 0, 0, 1] and encoded.documents == [0, 0, 0, 1, 1, 1, 2]
    few = pd.DataFrame({"text": [long_rows(1, 34)[0]["text"]] + ["good film"] * 39, "label": [1] + [0] * 39})
    settings = Settings(task="classification", max_length=16, stride=4, info={"long_text": "auto"})
    encoded = task.encode(tokenizer, few, settings, training=True)
    assert settings.info["long_text"] == "truncate"  # 1 of 40 (2.5%) is not more than 3%
    assert len(encoded) == 40 and encoded.documents is None and encoded.lengths[0] == 16
    assert encoded.long.as_dict() == {"rows": 40, "long_rows": 1, "max_length": 16, "long_text": "truncate",
                                      "mean_excess": 20.0, "longest": 36}
    # asked for by name, truncation reports itself the same way (not through auto's windows, then cut)
    encoded = task.encode(tokenizer, few, Settings(task="classification", max_length=16, info={"long_text": "truncate"}),
                          training=True)
    assert encoded.documents is None and encoded.long.as_dict()["long_text"] == "truncate"


def write_long_data(folder) -> tuple:
    """100 training rows, 10 of them 40 words long (42 pieces); 20 validation rows, 2 of them long."""
    train = sentiment_rows(90, seed=1) + long_rows(10, 40, seed=2)
    validation = sentiment_rows(18, seed=3) + long_rows(2, 40, seed=4)
    pd.DataFrame(train).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(validation).to_csv(folder / "validation.csv", index=False)
    return folder / "train.csv", folder / "validation.csv"


def test_training_reports_the_long_rows_and_stores_the_rule(tiny_bert, tmp_path, caplog, capsys):
    train_csv, validation_csv = write_long_data(tmp_path)
    args = ["train", "--data", train_csv, "--validation", validation_csv, "--model", tiny_bert, "--max-length", 16,
            "--stride", 4, "--epochs", 1, "--no-progress"]
    with caplog.at_level(logging.INFO):
        code, _, err = run_cli(args + ["--output", tmp_path / "windows"], capsys)
    assert code == 0, err
    lines = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert lines == [
        "10 of 100 training rows (10.0%) are longer than 16 pieces (by 26 on average; longest 42): read whole, "
        "in overlapping windows of 16 pieces sharing 4",
        "2 of 20 validation rows (10.0%) are longer than 16 pieces (by 26 on average; longest 42): read whole, "
        "in overlapping windows of 16 pieces sharing 4"]
    run = tmp_path / "windows"
    assert yaml.safe_load((run / "config.yaml").read_text())["resolved"]["long_text"] == "windows"
    stored = json.loads((run / "best" / "tunelab.json").read_text())["settings"]
    assert (stored["info"]["long_text"], stored["max_length"], stored["stride"]) == ("windows", 16, 4)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rows_trained"] == 90 + 10 * 4  # each long row is 4 windows (text 14, 10 new per window)

    caplog.clear()
    with caplog.at_level(logging.INFO):
        code, _, err = run_cli(args + ["--output", tmp_path / "cut", "--long-text", "truncate"], capsys)
    assert code == 0, err
    warnings = [r for r in caplog.records if "longer than" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert warnings[0].getMessage() == ("10 of 100 training rows (10.0%) are longer than 16 pieces (by 26 on "
                                        "average; longest 42): cut to 16 pieces (--long-text truncate); "
                                        "--long-text windows reads them whole")
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["rows_trained"] == 100

    code, out, err = run_cli(["evaluate", run / "best", validation_csv, "--json", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out)["long"] == {"rows": 20, "long_rows": 2, "max_length": 16, "long_text": "windows",
                                       "mean_excess": 26.0, "longest": 42}
    code, out, err = run_cli(["evaluate", tmp_path / "cut" / "best", validation_csv, "--no-progress"], capsys)
    assert code == 0, err
    assert out.splitlines()[1] == "2 rows longer than 16 pieces (longest 42): cut (the checkpoint truncates)"


def test_windows_of_pairs_and_long_text_on_token_classification_are_refused(tiny_bert, pairs_tsv, tmp_path,
                                                                           capsys):
    line = fails(["train", "--data", pairs_tsv, "--text-column", "sentence1", "--text-pair-column", "sentence2",
                  "--model", tiny_bert, "--long-text", "windows", "--output", tmp_path / "pairs"], capsys)
    assert line == ("error: --long-text windows splits single texts, and this data has text pairs; use "
                    "--long-text truncate (or a larger --max-length)")
    conll = tmp_path / "ner.conll"
    conll.write_text("alice B-PER\nvisited O\nparis B-LOC\n\nbob B-PER\nmet O\ncarol B-PER\n\n" * 10)
    line = fails(["train", "--data", conll, "--model", tiny_bert, "--long-text", "truncate",
                  "--output", tmp_path / "ner"], capsys)
    assert line == ("error: --long-text applies to multi-label, regression and classification: drop it for "
                    "token-classification")
    line = fails(["train", "--data", pairs_tsv, "--model", tiny_bert, "--long-text", "sometimes"], capsys)
    assert line == "error: --long-text must be one of auto, windows, truncate, got 'sometimes'"


def test_windows_combine_into_mean_probabilities_for_every_head():
    from tunelab.tasks.classification import ClassificationTask, RegressionTask
    from tunelab.tasks.multi_label import MultiLabelTask, sigmoid

    logits = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    documents = [0, 0, 0, 1]
    single = ClassificationTask().combine(logits, documents)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.exp(single), [softmax[:3].mean(0), softmax[3]], rtol=1e-5)
    multi = MultiLabelTask().combine(logits, documents)
    np.testing.assert_allclose(sigmoid(multi), [sigmoid(logits[:3]).mean(0), sigmoid(logits[3])], rtol=1e-5)
    scores = RegressionTask().combine(np.array([[1.0], [2.0], [6.0], [4.0]]), documents)
    np.testing.assert_allclose(scores, [[3.0], [4.0]])


def test_evaluation_during_training_scores_documents_not_windows():
    from types import SimpleNamespace

    from tunelab.collate import Encoded, by_row
    from tunelab.tasks.classification import ClassificationTask

    # Document 0 (label 1) is three windows, one sure of 1 and two leaning to 0; document 1 (label 0) is one.
    logits = np.array([[0.0, 5.0], [0.2, 0.0], [0.2, 0.0], [1.0, 0.0]], dtype=np.float32)
    encoded = Encoded({"input_ids": [[1]] * 4}, [1, 1, 1, 0], documents=[0, 0, 0, 1])
    data = SimpleNamespace(label_names=["negative", "positive"])
    order = np.array([3, 0, 2, 1])  # gathered in any order
    rows = by_row([(logits[order], np.array([0, 1, 1, 1]), order)])
    scores = ClassificationTask().score(rows, encoded, data)
    assert scores.metrics["accuracy"] == 1.0  # per window it would be 0.5
    assert scores.details["confusion_matrix"] == [[1, 0], [0, 1]]
