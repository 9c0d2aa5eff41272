"""Multi-label classification on tiny models: label formats, thresholds, pipeline loading, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, fails, run_cli
from tunelab.data import DataSpec
from tunelab.tasks import load_task_data
from tunelab.tasks.multi_label import score_sets, tune_thresholds


def label_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts holding positive words, negative words, both or neither; their labels say which."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos, neg = i % 4 in (0, 2), i % 4 in (1, 2)
        words = rng.sample(FILLER, rng.randint(2, 5)) + (rng.sample(POSITIVE, 2) if pos else []) \
            + (rng.sample(NEGATIVE, 2) if neg else [])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": [name for name, on in (("good", pos), ("bad", neg)) if on]})
    return rows


def write_formats(folder, rows) -> dict:
    """The same rows as delimited strings, as JSON lists and as 0/1 columns."""
    strings = pd.DataFrame({"text": [r["text"] for r in rows],
                            "labels": [",".join(r["labels"]) if r["labels"] else "[]" for r in rows]})
    strings.to_csv(folder / "strings.csv", index=False)
    (folder / "lists.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = pd.DataFrame({"text": [r["text"] for r in rows], "good": [int("good" in r["labels"]) for r in rows],
                          "bad": [int("bad" in r["labels"]) for r in rows]})
    flags.to_csv(folder / "flags.csv", index=False)
    return {"strings": folder / "strings.csv", "lists": folder / "lists.jsonl", "flags": folder / "flags.csv"}


def test_the_three_label_formats_read_as_the_same_sets(tmp_path):
    files = write_formats(tmp_path, label_rows(40))
    read = {
        "strings": load_task_data(DataSpec(str(files["strings"]), label_column="labels")),
        "lists": load_task_data(DataSpec(str(files["lists"]), label_column="labels")),
        "flags": load_task_data(DataSpec(str(files["flags"]), label_columns="good,bad")),
    }
    for data in read.values():
        assert data.task.name == "multi-label" and data.label_names == ["bad", "good"]
    sets = {k: sorted(map(tuple, pd.concat([d.train, d.validation])["label"])) for k, d in read.items()}
    assert sets["strings"] == sets["lists"] == sets["flags"]
    expected = sorted(tuple(float(n in r["labels"]) for n in ("bad", "good")) for r in label_rows(40))
    assert sets["strings"] == expected  # [] rows are rows with neither label


def test_thresholds_are_tuned_per_label_with_a_floor():
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    probabilities = np.array([[0.3, 0.02], [0.35, 0.01], [0.2, 0.03], [0.1, 0.12]])
    # Label 0: 0.25 and 0.3 both give F1 1.0; the one nearer 0.5 wins. Label 1: only 0.1 separates it.
    assert tune_thresholds(probabilities, truth).tolist() == [0.3, 0.1]
    scores = score_sets(probabilities, truth, ["a", "b"])
    assert scores.metrics["micro_f1"] == 0.0 and scores.metrics["subset_accuracy"] == 0.25  # at 0.5: nothing on
    assert scores.metrics["micro_f1_tuned"] == scores.metrics["macro_f1_tuned"] == 1.0
    assert scores.details["thresholds"] == {"a": 0.3, "b": 0.1}
    # A label that only a threshold under the floor (0.04) would separate keeps 0.5: no threshold helps it.
    below = probabilities.copy()
    below[3, 1] = 0.04
    assert tune_thresholds(below, truth).tolist() == [0.3, 0.5]


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, tiny_bert):
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("multi")
    files = write_formats(folder, label_rows(240, seed=1))
    result = train(TrainConfig(data=str(files["strings"]), label_column="labels", model=tiny_bert,
                               output=str(folder / "run"), epochs=4, batch_size=16, learning_rate=3e-3,
                               progress=False, warmup_ratio=0.0))
    return result, files


def test_the_thresholds_stored_are_the_ones_tuned_on_the_validation_rows(multi_run):
    import tunelab

    result, _ = multi_run
    config = json.loads((result.best_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    predictor = tunelab.load(result.best_dir)
    data = load_task_data(DataSpec(str(multi_run[1]["strings"]), label_column="labels"))
    logits = predictor.logits(data.validation["text"].tolist())
    truth = np.array(data.validation["label"].tolist(), dtype=int)
    expected = tune_thresholds(1 / (1 + np.exp(-logits.astype(np.float64))), truth)
    assert config["label_thresholds"] == dict(zip(predictor.label_names, expected.tolist()))
    assert result.best_metrics["macro_f1_tuned"] >= result.best_metrics["macro_f1"]


def test_predict_uses_the_stored_thresholds_and_threshold_overrides(multi_run, tmp_path, capsys):
    import shutil

    import tunelab

    result, _ = multi_run
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(result.best_dir, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["label_thresholds"] = {"bad": 0.001, "good": 0.999}  # bad always on, good never
    (checkpoint / "config.json").write_text(json.dumps(config))
    text = f"{POSITIVE[0]} {POSITIVE[1]} {FILLER[0]}"
    (prediction,) = tunelab.load(checkpoint).predict([text])
    assert prediction.labels == ["bad"] and set(prediction.probabilities) == {"bad", "good"}
    assert prediction.scores == {"bad": prediction.probabilities["bad"]}
    code, out, _ = run_cli(["predict", checkpoint, text, "--threshold", "0.0001", "--format", "jsonl"], capsys)
    row = json.loads(out)
    assert code == 0 and sorted(row["labels"]) == ["bad", "good"]  # one threshold for all, below every score


def test_a_transformers_pipeline_loads_the_checkpoint(multi_run):
    import tunelab
    from transformers import pipeline

    result, _ = multi_run
    text = f"{NEGATIVE[0]} {NEGATIVE[1]} {FILLER[1]}"
    (found,) = pipeline("text-classification", model=str(result.best_dir), top_k=None)([text])
    scores = {d["label"]: d["score"] for d in found}
    (ours,) = tunelab.load(result.best_dir).predict([text])
    assert scores.keys() == {"bad", "good"}
    assert scores == pytest.approx(ours.probabilities, abs=1e-5)  # sigmoid per label, not a softmax
    assert sum(scores.values()) != pytest.approx(1.0, abs=1e-3)


def test_evaluate_reports_both_thresholds_and_the_per_label_report(multi_run, capsys):
    result, files = multi_run
    code, out, _ = run_cli(["evaluate", result.best_dir, files["strings"], "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["rows"] == 240
    assert {"micro_f1", "macro_f1", "subset_accuracy", "micro_f1_tuned", "macro_f1_tuned",
            "subset_accuracy_tuned"} == set(report["metrics"])
    assert set(report["per_class"]) == {"bad", "good"} and report["per_class"]["good"]["support"] == 120
    code, out, _ = run_cli(["evaluate", result.best_dir, files["strings"], "--json", "--threshold", "0.5"], capsys)
    metrics = json.loads(out)["metrics"]
    assert metrics["macro_f1_at_0.5"] == metrics["macro_f1"]


# ---------------------------------------------------------------- bad input, one line each


def train_args(data, model, tmp_path, *extra):
    return ["train", "--data", data, "--model", model, "--output", tmp_path / "run", "--no-progress", *extra]


def test_an_empty_label_says_how_to_write_no_label(tiny_bert, tmp_path, capsys):
    rows = pd.DataFrame({"text": ["good film", "bad film", "fine", "odd"] * 5,
                         "labels": ["good", "bad", "", "good,bad"] * 5})
    rows.to_csv(tmp_path / "d.csv", index=False)
    line = fails(train_args(tmp_path / "d.csv", tiny_bert, tmp_path, "--label-column", "labels"), capsys)
    assert line == (f"error: {tmp_path / 'd.csv'} (train): 5 rows have an empty label (rows 3, 7, 11, 15, 19); "
                    "multi-label data needs each row's labels: write [] for a row with none of the labels, or "
                    "drop the rows whose labels are missing")


def test_a_label_with_the_separator_inside(tiny_bert, tmp_path, capsys):
    rows = [{"text": "good film", "labels": ["good", "very, very good"]}, {"text": "bad", "labels": ["bad"]}] * 5
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = fails(train_args(tmp_path / "d.jsonl", tiny_bert, tmp_path, "--label-column", "labels"), capsys)
    assert line == (f"error: {tmp_path / 'd.jsonl'} (train), row 1: label 'very, very good' contains the separator ','; choose "
                    "another --label-separator")


def test_label_columns_that_are_not_zero_one(tiny_bert, tmp_path, capsys):
    pd.DataFrame({"text": ["a b", "c d"] * 5, "good": [1, 0] * 5, "stars": [4, 1] * 5}).to_csv(tmp_path / "d.csv",
                                                                                         index=False)
    line = fails(train_args(tmp_path / "d.csv", tiny_bert, tmp_path, "--label-columns", "good,stars"), capsys)
    assert line == (f"error: --label-columns stars holds values other than 0 and 1 in {tmp_path / 'd.csv'} (train) (row 1: '4', "
                    "5 rows in all); name only columns that mark each label with 1 and its absence with 0")


def test_threshold_outside_zero_one_and_on_a_single_label_checkpoint(multi_run, trained_run, capsys):
    result, _ = multi_run
    line = fails(["predict", result.best_dir, "good", "--threshold", "1.5"], capsys)
    assert line == "error: --threshold must be between 0 and 1 (exclusive), got 1.5"
    for bound in ("0", "1"):  # the bounds themselves mean "every label" and "no label": refused too
        line = fails(["predict", result.best_dir, "good", "--threshold", bound], capsys)
        assert line == f"error: --threshold must be between 0 and 1 (exclusive), got {bound}"
    line = fails(["predict", trained_run.best_dir, "good", "--threshold", "0.3"], capsys)
    assert line == ("error: --threshold applies to multi-label checkpoints; this one is classification: drop "
                    "--threshold")


def test_a_stray_fraction_among_integer_labels_is_refused(tiny_bert, tmp_path, capsys):
    labels = [0, 1] * 30
    labels[7] = 1.5
    pd.DataFrame({"text": ["good film", "bad film"] * 30, "label": labels}).to_csv(tmp_path / "d.csv", index=False)
    line = fails(train_args(tmp_path / "d.csv", tiny_bert, tmp_path), capsys)
    assert line == ("error: the labels are integer classes (0, 1) except 1 rows (row 8: '1.5', counting training "
                    "rows first); fix those rows, or pass --task regression if the labels are scores (--task "
                    "classification reads every value as a class name)")


def test_label_sets_read_as_single_labels_name_the_multi_label_task(tiny_bert, tmp_path, capsys):
    rng = random.Random(0)
    names = [f"emotion{i}" for i in range(12)]
    train = pd.DataFrame({"text": ["a b"] * 40, "labels": [rng.choice(names) for _ in range(40)]})
    valid = pd.DataFrame({"text": ["a b"] * 30, "labels": [",".join(rng.sample(names, 2)) for _ in range(30)]})
    train.to_csv(tmp_path / "t.csv", index=False)
    valid.to_csv(tmp_path / "v.csv", index=False)
    line = fails(train_args(tmp_path / "t.csv", tiny_bert, tmp_path, "--validation", tmp_path / "v.csv",
                            "--label-column", "labels", "--task", "classification"), capsys)
    assert line.startswith("error: validation labels '") and len(line) < 400
    unseen = len(set(valid["labels"]))  # every pair is new: training rows hold one label each
    assert line.endswith(f"and {unseen - 5} more never appear in the training data, and they look like sets of "
                         "labels separated by ',': use --task multi-label")


# ---------------------------------------------------------------- class weights


def test_balanced_weights_are_n_over_k_times_count(tmp_path):
    from tunelab.tasks import get_task

    rows = pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": ["a"] * 6 + ["b"] * 4 + ["c"] * 2})
    rows.to_csv(tmp_path / "d.csv", index=False)
    rows.to_csv(tmp_path / "v.csv", index=False)
    data = load_task_data(DataSpec(str(tmp_path / "d.csv"), validation=str(tmp_path / "v.csv")))
    weights = get_task("classification").class_weights(data, "balanced")
    assert weights == {"a": pytest.approx(12 / (3 * 6)), "b": pytest.approx(12 / (3 * 4)), "c": pytest.approx(12 / (3 * 2))}
    (tmp_path / "w.json").write_text(json.dumps({"c": 5}))
    assert get_task("classification").class_weights(data, str(tmp_path / "w.json")) == {"a": 1.0, "b": 1.0, "c": 5.0}
    multi = load_task_data(DataSpec(str(write_formats(tmp_path, label_rows(40))["strings"]), label_column="labels"))
    positives = np.sum(np.array(multi.train["label"].tolist()), axis=0)
    pos_weight = get_task("multi-label").class_weights(multi, "balanced")
    assert list(pos_weight.values()) == pytest.approx([(len(multi.train) - p) / p for p in positives])


def test_class_weights_change_the_loss_and_are_recorded(sentiment_csv, tiny_bert, tmp_path):
    import torch
    import yaml

    from tunelab.collate import Collator
    from tunelab.modeling import load_model, load_tokenizer
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings
    from tunelab.train import TrainConfig, train

    data = load_task_data(DataSpec(str(sentiment_csv)))
    task = get_task("classification")
    tokenizer = load_tokenizer(tiny_bert)
    torch.manual_seed(0)
    model = load_model(tiny_bert, task, data).eval()
    encoded = task.encode(tokenizer, data.train.head(8), Settings(task="classification", max_length=32), True)
    batch = Collator(tokenizer.pad_token_id)([encoded[i] for i in range(8)])
    plain = task.loss(model, batch)
    task.class_weights(data, str(_weights(tmp_path, {"positive": 3.0})))
    weighted = task.loss(model, batch)
    logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "row_index")}).logits
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor(
        [1.0 if n != "positive" else 3.0 for n in data.label_names]))
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5) and weighted.item() != pytest.approx(plain.item())
    run = train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "run"), max_steps=2,
                            class_weights="balanced", progress=False))
    resolved = yaml.safe_load((run.run_dir / "config.yaml").read_text())["resolved"]
    assert resolved["class_weights"] == {"negative": pytest.approx(1.0, abs=0.1), "positive": pytest.approx(1.0, abs=0.1)}


def _weights(tmp_path, values: dict):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(values))
    return path


def test_a_weights_file_with_an_unknown_label(sentiment_csv, tiny_bert, tmp_path, capsys):
    path = _weights(tmp_path, {"positive": 2, "neutral": 1})
    line = fails(train_args(sentiment_csv, tiny_bert, tmp_path, "--class-weights", path), capsys)
    assert line == (f"error: --class-weights {path}: label 'neutral' is not in the data (labels: negative, "
                    "positive)")


def test_serve_answers_label_sets_with_the_stored_or_given_threshold(multi_run, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from tunelab.serve import ServeConfig, create_app

    result, _ = multi_run
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(result.best_dir, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["label_thresholds"] = {"bad": 1.0, "good": 1.0}  # stored: nothing is ever on
    (checkpoint / "config.json").write_text(json.dumps(config))
    text = f"{POSITIVE[0]} {NEGATIVE[0]} {FILLER[0]}"
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint)))) as client:
        stored = client.post("/v1/classify", json={"texts": [text]}).json()["predictions"][0]
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), threshold=0.0001))) as client:
        given = client.post("/v1/classify", json={"texts": [text]}).json()["predictions"][0]
    assert set(stored) == {"labels", "scores", "probabilities"} and set(stored["probabilities"]) == {"bad", "good"}
    assert stored["labels"] == [] and sorted(given["labels"]) == ["bad", "good"]


def test_bad_class_weights_and_label_options_are_one_line(sentiment_csv, tiny_bert, tmp_path, capsys):
    line = fails(train_args(sentiment_csv, tiny_bert, tmp_path, "--class-weights", tmp_path / "none.json"), capsys)
    assert line == (f"error: --class-weights must be none, balanced or a JSON file of label: weight; "
                    f"{tmp_path / 'none.json'} is not a file")
    path = _weights(tmp_path, {"positive": -1})
    line = fails(train_args(sentiment_csv, tiny_bert, tmp_path, "--class-weights", path), capsys)
    assert line == f"error: --class-weights {path}: the weight of 'positive' must be a positive number, got -1"
    line = fails(train_args(sentiment_csv, tiny_bert, tmp_path, "--label-columns", "a,b", "--task",
                            "classification"), capsys)
    assert line == ("error: --label-columns marks multi-label data; drop it or use --task multi-label, not "
                    "classification")


def test_the_playground_shows_the_label_set(multi_run):
    import tunelab
    from test_serve_live import playground

    result, _ = multi_run
    text = "the movie was great and superb fun but the plot was awful and dull"
    expected = tunelab.load(result.best_dir).predict(text)[0]
    assert expected.labels  # a text with labels, so the page has a set to show
    with playground(result.best_dir, "document.getElementById('model-info').textContent.includes('multi-label')") as page:
        page.fill("#text", text)
        page.click("#classify")
        page.wait_for_function("document.getElementById('label').textContent !== '–'")
        assert page.inner_text("#label") == ", ".join(expected.labels)
        assert page.inner_text("#score") == f"({len(expected.labels)} of 2 labels over their thresholds)"
        shown = page.eval_on_selector_all(".bar-row", "rows => rows.map(r => [r.firstChild.textContent, "
                                          "r.classList.contains('top')])")
        ranked = sorted(expected.probabilities, key=expected.probabilities.get, reverse=True)
        assert shown == [[name, name in expected.labels] for name in ranked]
