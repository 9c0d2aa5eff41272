"""Token classification (NER) on tiny models: schemes, alignment, windows, metrics, prediction, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import tunelab
from conftest import fails, ner_sentences, run_cli, write_conll
from tunelab.tasks.schemes import detect_scheme, entities, to_iob2
from tunelab.tasks.token_classification import encode_words, owners, score_tags, windows


def test_iob1_bioes_and_plain_tags_become_iob2():
    iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    assert detect_scheme(iob1) == "IOB1"
    assert to_iob2(iob1).tags == [["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]]
    bioes = [["S-PER", "O", "B-LOC", "E-LOC", "B-ORG", "I-ORG", "E-ORG"]]
    assert detect_scheme(bioes) == "BIOES"
    assert to_iob2(bioes).tags == [["B-PER", "O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-ORG"]]
    plain = [["PER", "PER", "O", "LOC"]]
    assert to_iob2(plain).scheme == "IO" and to_iob2(plain).tags == [["B-PER", "I-PER", "O", "B-LOC"]]
    # IOB2 with one tag that breaks it: repaired as B- and counted, with where it was first.
    broken = to_iob2([["B-PER", "O"], ["B-LOC", "I-PER", "O"], ["B-ORG", "I-ORG"]])
    assert broken.scheme == "IOB2" and broken.repaired == 1
    assert broken.first_repair == "sentence 2: I-PER after B-LOC"
    assert broken.tags[1] == ["B-LOC", "B-PER", "O"]
    assert entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)]


def test_a_word_in_three_pieces_is_labeled_on_its_first_piece(tiny_ner_bert):
    from tunelab.modeling import load_tokenizer

    tokenizer = load_tokenizer(tiny_ner_bert)
    encoded = encode_words(tokenizer, [["alice", "visited", "washington"]], 24, 8, [[4, 0, 1]], training=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded.features["input_ids"][0])
    assert tokens == ["[CLS]", "alice", "visited", "wash", "##ing", "##ton", "[SEP]"]
    assert encoded.labels == [[-100, 4, 0, 1, -100, -100, -100]]
    assert encoded.meta[0].owned == [0, 1, 2] and encoded.meta[0].positions == [1, 2, 3]
    # --label-all-tokens: the later pieces carry the I- tag (B-LOC id 1 -> I-LOC id 2).
    inside = [0, 2, 2, 3, 4]
    encoded = encode_words(tokenizer, [["alice", "visited", "washington"]], 24, 8, [[4, 0, 1]], True, inside)
    assert encoded.labels == [[-100, 4, 0, 1, 2, 2, -100]]


def test_windows_overlap_and_each_word_is_owned_once():
    counts = [1, 3, 1, 1, 2, 1, 1, 1, 1, 1]  # 13 pieces
    spans = windows(counts, budget=6, stride=2)
    # Each window is full (6 pieces); the next starts at the first word within 2 pieces of its end.
    assert spans == [(0, 4), (2, 7), (5, 10)]
    assert [sum(counts[s:e]) for s, e in spans] == [6, 6, 5]
    # Word 2 is the first window's third word but the second's first: it belongs to the first.
    assert owners(spans, 10) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert windows([9], budget=6, stride=2) == [(0, 1)]  # one word longer than a window gets its own
    assert windows([1, 1, 1], budget=6, stride=2) == [(0, 3)]


def test_a_sentence_three_times_max_length_gets_one_tag_per_word(ner_run):
    predictor = tunelab.load(ner_run.best_dir)
    assert predictor.max_length == 24  # what the run was trained with, from the checkpoint
    words = "alice visited paris and works at acme .".split() * 9  # 72 words, 3x the window
    encoded = encode_words(predictor.tokenizer, [words], 24, predictor.settings.stride, None, False)
    assert len(encoded) >= 3
    owned = [w for window in encoded.meta for w in window.owned]
    assert sorted(owned) == list(range(72))  # every word predicted exactly once
    tagging = predictor.predict([words])[0]
    assert tagging.tokens == words and len(tagging.tags) == 72
    assert tagging.tags == ["B-PER", "O", "B-LOC", "O", "O", "O", "B-ORG", "O"] * 9


def test_seqeval_figures_on_a_hand_made_example():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    scores = score_tags(truth, guess)
    assert scores.metrics == pytest.approx({"f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3, "accuracy": 4 / 6})
    per = scores.details["per_class"]
    assert per["LOC"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert per["PER"]["f1-score"] == 1.0 and per["ORG"]["support"] == 1
    assert scores.details["confusion_labels"] == ["LOC", "ORG", "PER", "O"]
    assert scores.details["confusion_matrix"] == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
    # Strict mode: an I- tag that starts an entity is not an entity.
    assert score_tags([["B-PER", "O"]], [["I-PER", "O"]]).metrics["recall"] == 0.0


def test_training_reads_iob1_and_keeps_names(ner_run):
    config = __import__("yaml").safe_load((ner_run.run_dir / "config.yaml").read_text())
    assert config["resolved"]["task"] == "token-classification" and config["resolved"]["tag_scheme"] == "IOB1"
    assert config["resolved"]["label_names"] == ["O", "B-LOC", "I-LOC", "B-ORG", "B-PER"]
    saved = json.loads((ner_run.best_dir / "config.json").read_text())
    assert saved["architectures"] == ["BertForTokenClassification"]
    assert saved["id2label"]["4"] == "B-PER"
    assert ner_run.metric == "f1" and ner_run.best_metrics["f1"] == 1.0
    assert (ner_run.run_dir / "plots" / "confusion_matrix.png").stat().st_size > 1000


def test_transformers_pipeline_loads_the_checkpoint_with_label_names(ner_run):
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(ner_run.best_dir), aggregation_strategy="simple")
    found = tagger("Alice visited Paris and works at Acme.")
    assert [(e["entity_group"], e["word"]) for e in found] == [("PER", "alice"), ("LOC", "paris"), ("ORG", "acme")]


def test_predict_offsets_slice_the_original_text(ner_run):
    text = "  Bob  visited New York, and works at Globex today."
    tagging = tunelab.load(ner_run.best_dir).predict(text)[0]
    assert [(e.type, e.text) for e in tagging.entities] == [("PER", "Bob"), ("LOC", "New York"), ("ORG", "Globex")]
    for entity in tagging.entities:
        assert text[entity.start:entity.end] == entity.text and 0 < entity.score <= 1


def test_evaluate_reproduces_the_figure_training_recorded(ner_run, ner_files, capsys):
    recorded = json.loads((ner_run.best_dir / "tunelab.json").read_text())["metrics"]
    code, out, err = run_cli(["evaluate", ner_run.best_dir, ner_files[1], "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 40
    for name in ("f1", "precision", "recall", "accuracy"):
        assert report["metrics"][name] == recorded[name]
    assert report["confusion_labels"] == ["LOC", "ORG", "PER", "O"]
    code, out, _ = run_cli(["evaluate", ner_run.best_dir, ner_files[1]], capsys)
    assert "confusion matrix (rows: true, columns: predicted)" in out and "PER" in out


def test_classification_evaluate_uses_the_trained_max_length(sentiment_csv, tiny_bert, tmp_path, capsys):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.train import TrainConfig, train

    result = train(TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(tmp_path / "run"), epochs=2,
                               batch_size=16, learning_rate=3e-3, max_length=4, progress=False, warmup_ratio=0.0))
    data = load_task_data(DataSpec(str(sentiment_csv)))
    validation = tmp_path / "val.csv"
    data.validation.assign(label=[data.label_names[i] for i in data.validation["label"]]).to_csv(validation, index=False)
    code, out, err = run_cli(["evaluate", result.best_dir, validation, "--json"], capsys)
    assert code == 0, err
    recorded = json.loads((result.best_dir / "tunelab.json").read_text())["metrics"]
    assert json.loads(out)["metrics"]["accuracy"] == recorded["accuracy"]
    assert tunelab.load(result.best_dir).max_length == 4


def test_cli_trains_from_conll_and_predicts_in_every_format(ner_files, tiny_ner_bert, tmp_path, capsys):
    train_file, valid_file = ner_files
    code, out, err = run_cli(["train", "--data", train_file, "--validation", valid_file, "--model", tiny_ner_bert,
                              "--output", tmp_path / "run", "--epochs", "1", "--max-steps", "3", "--no-progress",
                              "--max-length", "24"], capsys)
    assert code == 0, err
    assert "validation f1:" in out
    best = tmp_path / "run" / "best"
    code, out, err = run_cli(["predict", best, "Alice visited Paris.", "-f", "jsonl"], capsys)
    row = json.loads(out)
    assert row["text"] == "Alice visited Paris." and row["tokens"] == ["Alice", "visited", "Paris", "."]
    assert len(row["tags"]) == 4 and set(row) == {"text", "entities", "tokens", "tags", "scores"}
    code, out, err = run_cli(["predict", best, "--input", valid_file, "--format", "conll"], capsys)
    assert code == 0, err
    written = [line.split() for line in out.splitlines() if line.strip()]
    original = [line.split() for line in valid_file.read_text().splitlines()[2:] if line.strip()]
    assert len(written) == len(original) and all(w[:4] == o for w, o in zip(written, original))
    assert all(len(w) == 5 for w in written)
    code, _, err = run_cli(["predict", best, "Alice", "-f", "csv"], capsys)
    assert code == 1 and "error: --format must be one of table, jsonl, conll for a token-classification" in err


def test_list_columns_and_class_label_ids_keep_their_names(tiny_ner_bert, tmp_path):
    import datasets

    from tunelab.data import DataSpec

    from tunelab.tasks import load_task_data

    sentences = ner_sentences(30, seed=3)
    names = ["O", "B-PER", "B-LOC", "I-LOC", "B-ORG"]
    features = datasets.Features({"words": datasets.Sequence(datasets.Value("string")),
                                  "ner": datasets.Sequence(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"words": [[w for w, _ in s] for s in sentences],
                                     "ner": [[names.index(t) for _, t in s] for s in sentences]}, features=features)
    ds.train_test_split(test_size=0.2, seed=0).save_to_disk(str(tmp_path / "saved"))
    data = load_task_data(DataSpec(str(tmp_path / "saved"), tokens_column="words", tags_column="ner",
                                   validation="test"))
    assert data.task.name == "token-classification" and data.info["tag_scheme"] == "IOB2"
    assert data.label_names == ["O", "B-LOC", "I-LOC", "B-ORG", "B-PER"]
    jsonl = tmp_path / "ner.jsonl"
    jsonl.write_text("".join(json.dumps({"tokens": [w for w, _ in s], "tags": [t for _, t in s]}) + "\n"
                             for s in sentences), encoding="utf-8")
    again = load_task_data(DataSpec(str(jsonl)))
    assert again.task.name == "token-classification" and again.label_names == data.label_names


def test_resume_gives_the_run_an_uninterrupted_one_gives(ner_files, tiny_ner_bert, tmp_path):
    from tunelab.train import TrainConfig, train

    options = dict(data=str(ner_files[0]), validation=str(ner_files[1]), model=tiny_ner_bert, epochs=2,
                   batch_size=16, learning_rate=5e-3, progress=False, max_steps=20, save_every=6, max_length=24)
    straight = train(TrainConfig(output=str(tmp_path / "a"), **options))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for name in ("last", "best", "summary.json"):
        target = tmp_path / "b" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(tmp_path / "b" / "state" / "step-00000018")  # the newest state left is step 12
    resumed = train(TrainConfig(output=str(tmp_path / "b"), **options), resume=True)
    assert resumed.steps == straight.steps == 20
    a, b = load_file(tmp_path / "a" / "last" / "model.safetensors"), load_file(tmp_path / "b" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_serve_tags_and_onnx_export_matches_torch(ner_run, tmp_path):
    from fastapi.testclient import TestClient

    from tunelab.export import export_onnx
    from tunelab.serve import ServeConfig, create_app

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(ner_run.best_dir, checkpoint)
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint)))) as client:
        models = client.get("/v1/models").json()["classifier"]
        assert models["task"] == "token-classification" and models["endpoint"] == "/v1/tag"
        body = client.post("/v1/tag", json={"text": "Carol visited Berlin with Dave."}).json()
        found = [(e["type"], e["text"], e["start"]) for e in body["predictions"][0]["entities"]]
        assert found == [("PER", "Carol", 0), ("LOC", "Berlin", 14), ("PER", "Dave", 26)]
        response = client.post("/v1/tag", json={"text": "Carol", "text_pair": "Dave"})
        assert response.status_code == 422 and "tags single texts" in response.json()["error"]
    export_onnx(checkpoint)
    fast, slow = tunelab.load(checkpoint), tunelab.load(checkpoint, backend="torch")
    assert fast.backend == "onnx"
    texts = ["Alice visited Washington with Bob and works at Acme.", "Dave works at Globex in London."]
    assert [t.tags for t in fast.predict(texts)] == [t.tags for t in slow.predict(texts)]
    from tunelab import attention

    model, tokenizer = attention.load_encoder(str(checkpoint))
    assert attention.inspect(model, tokenizer, "alice visited paris").attentions.shape == (2, 4, 5, 5)


def test_sweep_ranks_token_classification_trials_by_f1(ner_files, tiny_ner_bert, tmp_path):
    from tunelab.sweep import SweepConfig, run_sweep

    base = {"data": str(ner_files[0]), "validation": str(ner_files[1]), "model": tiny_ner_bert, "batch_size": 16,
            "threads": 1, "max_length": 24, "max_steps": 4}
    result = run_sweep(SweepConfig(base=base, study_dir=str(tmp_path / "study"),
                                   space={"learning_rate": [1e-4, 5e-3]}))
    assert result.metric == "f1" and len(result.trials) == 2
    assert result.trials[0].value >= result.trials[1].value


# ---------------------------------------------------------------- bad input, one line each


def ner_args(data, model, tmp_path, *extra):
    return ["train", "--data", data, "--model", model, "--output", tmp_path / "run", "--no-progress", *extra]


def test_conll_line_with_other_columns(tiny_ner_bert, tmp_path, capsys):
    path = tmp_path / "bad.conll"
    path.write_text("alice NN I-NP I-PER\nvisited NN I-NP O\nparis I-LOC\n\n", encoding="utf-8")
    assert fails(ner_args(path, tiny_ner_bert, tmp_path), capsys) == (
        f"error: {path}, line 3: 2 columns, but line 1 and the lines after it have 4; every token line needs "
        "the same columns (word ... tag)")


def test_tokens_and_tags_of_unequal_length(tiny_ner_bert, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tokens": ["a", "b"], "tags": ["O", "O"]}\n{"tokens": ["alice", "met", "bob"], '
                    '"tags": ["B-PER", "O"]}\n', encoding="utf-8")
    assert fails(ner_args(path, tiny_ner_bert, tmp_path), capsys) == (
        f"error: {path} (train), row 2: 3 tokens but 2 tags; give one tag per token")


def test_a_conll_file_without_sentences(tiny_ner_bert, tmp_path, capsys):
    path = tmp_path / "empty.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\n\n", encoding="utf-8")
    assert fails(ner_args(path, tiny_ner_bert, tmp_path), capsys) == (
        f"error: {path} holds no sentences; a CoNLL file has one token a line (word ... tag) and a blank line "
        "between sentences")


def test_validation_tag_never_seen_in_training(tiny_ner_bert, ner_files, tmp_path, capsys):
    valid = tmp_path / "valid.conll"
    write_conll(valid, [[("alice", "B-PER"), ("visited", "O"), ("expo", "B-MISC")]])
    assert fails(ner_args(ner_files[0], tiny_ner_bert, tmp_path, "--validation", valid), capsys) == (
        "error: validation tag 'B-MISC' (1 words) never appears in the training data; remove those sentences from "
        "the validation data or add training sentences with that tag")


def test_tags_that_break_the_scheme_are_repaired_and_counted(tiny_ner_bert, tmp_path, capsys, caplog):
    rows = [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in ner_sentences(40, seed=4)]
    assert rows[2]["tags"][2:4] == ["B-LOC", "O"]
    rows[2]["tags"][3] = "I-PER"  # right after the place: I-PER after B-LOC
    path = tmp_path / "ner.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with caplog.at_level("WARNING"):
        code, _, err = run_cli(ner_args(path, tiny_ner_bert, tmp_path, "--max-steps", "1", "--max-length", "24"),
                               capsys)
    assert code == 0, err
    assert (f"{path} (train): 1 tags break the IOB2 scheme (an I- tag that starts an entity; first in sentence 3: I-PER after "
            "B-LOC); repaired as B- tags") in caplog.text


def test_token_classification_on_data_without_tokens(tiny_bert, sentiment_csv, tmp_path, capsys):
    assert fails(ner_args(sentiment_csv, tiny_bert, tmp_path, "--task", "token-classification"), capsys) == (
        "error: --task token-classification needs words: a CoNLL file, or a column of token lists (--tokens-column "
        f"'tokens' not found in {sentiment_csv} (train); columns found: text, label); pass --task classification "
        "for whole-text labels")


def test_pairs_for_a_token_classification_checkpoint(ner_run, capsys):
    assert fails(["predict", ner_run.best_dir, "Alice", "--pair", "Bob"], capsys) == (
        "error: a token-classification checkpoint tags single texts, but 1 second texts of pairs were given; drop "
        "--pair (or the TAB-separated second texts)")


def test_the_loss_weighs_every_word_alike_whatever_the_batch(tiny_ner_bert):
    """Summed over the batch's words and divided by the words an average training batch holds."""
    from tunelab.collate import Collator
    from tunelab.modeling import load_tokenizer
    from tunelab.tasks.token_classification import TokenClassificationTask
    from transformers import AutoModelForTokenClassification

    tokenizer = load_tokenizer(tiny_ner_bert)
    sentences = [["alice", "visited", "paris"], ["bob"], ["carol", "met", "dave", "in", "berlin", "today"]]
    tags = [[4, 0, 1], [4], [4, 0, 4, 0, 1, 0]]
    encoded = encode_words(tokenizer, sentences, 24, 8, tags, True)
    task = TokenClassificationTask()
    task.prepare(encoded, batch_size=2)
    assert task.words_per_batch == pytest.approx(10 / 3 * 2)  # 10 labeled words in 3 rows, 2 rows a batch
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_ner_bert, num_labels=5).eval()
    batch = Collator(tokenizer.pad_token_id)([encoded[0], encoded[1]])
    ours = task.loss(model, batch)
    mean = model(**{k: v for k, v in batch.items() if k != "row_index"}).loss  # the mean over these 4 words
    assert ours.item() == pytest.approx(mean.item() * 4 / (20 / 3), rel=1e-5)


def test_evaluate_refuses_tags_the_checkpoint_does_not_know(ner_run, tmp_path, capsys):
    other = tmp_path / "other.conll"
    write_conll(other, [[("alice", "B-PER"), ("visited", "O"), ("expo", "B-MISC"), ("fair", "I-MISC")]])
    assert fails(["evaluate", ner_run.best_dir, other], capsys) == (
        "error: tag 'B-MISC' (1 words), 'I-MISC' (1 words) is not one the checkpoint knows (O, B-LOC, I-LOC, B-ORG, "
        "B-PER); check --tag-column / --tags-column or evaluate on data with the same tags")


def test_options_that_do_not_fit_token_classification(tiny_ner_bert, ner_files, tmp_path, capsys):
    train_file = ner_files[0]
    assert fails(ner_args(train_file, tiny_ner_bert, tmp_path, "--tag-column", "7"), capsys) == (
        f"error: --tag-column 7 is not a tag column of {train_file} (train), which has 4 columns (the word is "
        "column 0); pass 1 to 3 or -1 (the last)")
    assert fails(ner_args(train_file, tiny_ner_bert, tmp_path, "--metric", "mcc"), capsys) == (
        "error: --metric mcc is not reported for token-classification; use one of loss, f1, precision, recall, "
        "accuracy")
    assert fails(ner_args(train_file, tiny_ner_bert, tmp_path, "--label-smoothing", "0.1"), capsys) == (
        f"error: --label-smoothing applies to classification, but {train_file} has token-classification data; "
        "drop --label-smoothing")
    assert fails(ner_args(train_file, tiny_ner_bert, tmp_path, "--task", "token-classification", "--stride", "-1",
                          "--label-smoothing", "0.1"), capsys) == (
        "error: --stride must not be negative, got -1; --label-smoothing applies to classification; drop it for "
        "--task token-classification")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- packed batches


def mixed_length_conll(tmp_path):
    """Sentences of 1 to 3 entity sentences joined: 8 to 36 words, so batches pack several into a row."""
    base = ner_sentences(150, seed=3)
    joined = [sum(base[i : i + 1 + i % 3], []) for i in range(0, 120, 2)]
    write_conll(tmp_path / "mixed.conll", joined)
    return tmp_path / "mixed.conll"


def no_dropout_copy(model_dir, target):
    from transformers import AutoConfig

    shutil.copytree(model_dir, target)
    config = AutoConfig.from_pretrained(target)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(target)
    return str(target)


def test_packed_batches_train_the_weights_padded_random_batches_train(tiny_ner_bert, ner_files, tmp_path):
    import yaml

    from tunelab.train import TrainConfig, train

    model = no_dropout_copy(tiny_ner_bert, tmp_path / "model")
    options = dict(data=str(mixed_length_conll(tmp_path)), validation=str(ner_files[1]), model=model, batch_size=8,
                   learning_rate=5e-3, progress=False, max_steps=4, max_length=64, warmup_ratio=0.0)
    runs = {way: train(TrainConfig(output=str(tmp_path / way), batching=way, **options))
            for way in ("auto", "random", "grouped")}
    resolved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["resolved"]
    assert resolved["batching"] == "packed"  # what auto chose for a BERT tagger
    assert runs["auto"].rows_trained == 4 * 8  # rows, not the fewer packed model rows
    weights = {way: load_file(run.last_dir / "model.safetensors") for way, run in runs.items()}
    packed, padded, grouped = weights["auto"], weights["random"], weights["grouped"]
    assert all(torch.allclose(packed[k], padded[k], atol=1e-5) for k in packed)  # the same batches, no padding
    assert not all(torch.allclose(packed[k], grouped[k], atol=1e-5) for k in packed)  # other batches
    assert runs["auto"].best_metrics["f1"] == pytest.approx(runs["random"].best_metrics["f1"], abs=1e-6)


def test_a_model_that_cannot_take_packed_rows_gets_grouped_batches(tiny_ner_bert, ner_files, tmp_path, capsys,
                                                                    caplog):
    import yaml
    from transformers import DebertaV2Config, DebertaV2Model

    from tunelab.train import TrainConfig, train

    folder = tmp_path / "deberta"
    shutil.copytree(tiny_ner_bert, folder)
    (folder / "model.safetensors").unlink()
    config = DebertaV2Config(vocab_size=len(tunelab.modeling.load_tokenizer(tiny_ner_bert)), hidden_size=32,
                             num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                             max_position_embeddings=64, relative_attention=True, position_buckets=16)
    DebertaV2Model(config).save_pretrained(folder)
    options = dict(data=str(ner_files[0]), validation=str(ner_files[1]), model=str(folder), batch_size=16,
                   progress=False, max_steps=1, max_length=24)
    with caplog.at_level("INFO", logger="tunelab.train.setup"):
        train(TrainConfig(output=str(tmp_path / "auto"), **options))
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["resolved"]["batching"] == "grouped"
    assert ("DebertaV2ForTokenClassification does not give packed rows the outputs it gives padded ones: training "
            "batches are length-grouped instead") in caplog.messages
    line = fails(ner_args(ner_files[0], folder, tmp_path, "--validation", ner_files[1], "--batching", "packed"), capsys)
    assert line == ("error: --batching packed: DebertaV2ForTokenClassification does not give packed rows the outputs "
                    "it gives padded ones; use --batching grouped")


def test_packing_is_refused_for_a_task_labeled_per_row(sentiment_csv, tiny_bert, tmp_path, capsys):
    line = fails(["train", "--data", sentiment_csv, "--model", tiny_bert, "--output", tmp_path / "run",
                  "--no-progress", "--batching", "packed"], capsys)
    assert line == ("error: --batching packed needs a task labeled per token; classification is labeled per row: "
                    "use --batching grouped or random")
