"""Extractive question answering on tiny models: windows, offsets, spans, no-answer thresholds, the data
layouts, bad rows, and the checkpoint read by transformers alone, by ONNX Runtime and by the server."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import tunelab
from conftest import SPECIAL, fails, run_cli

WORDS = ["where", "is", "the", "cat", "dog", "sat", "on", "a", "mat", "and", "then", "ran", "to", "it", "was", "le",
         "de", "est", "tres", "bon", "cafe", "au", "lait", "what", "did", "see", "paris", "london", "superb", "fun",
         "nothing", "here", "who"]
FILLER = ["the", "cat", "dog", "sat", "on", "a", "mat", "and", "then", "ran", "to", "it", "was"]


def tokenizer_and_config(path, layers: int = 0, hidden: int = 8):
    from transformers import BertConfig, BertTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 64
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64)
    tokenizer.save_pretrained(path)
    return tokenizer, config


def build_finder(path, starts=("superb",), ends=("superb",), max_length: int = 16, stride: int = 4,
                 max_answer_length: int = 30):
    """A question-answering checkpoint with no layers that marks where answers start and end by word alone:
    a high start logit on the words in `starts`, a high end logit on those in `ends`, 0 everywhere else
    (the first token included: the no-answer score is 0). Its tunelab.json says how it reads windows."""
    from transformers import BertForQuestionAnswering

    tokenizer, config = tokenizer_and_config(path)
    model = BertForQuestionAnswering(config).eval()
    with torch.no_grad():
        for module in (model.bert.embeddings.word_embeddings, model.bert.embeddings.position_embeddings,
                       model.bert.embeddings.token_type_embeddings):
            module.weight.zero_()
        vocab = tokenizer.get_vocab()
        for word in starts:
            model.bert.embeddings.word_embeddings.weight[vocab[word], :2] = torch.tensor([10.0, -10.0])
        for word in ends:
            model.bert.embeddings.word_embeddings.weight[vocab[word], 2:4] = torch.tensor([10.0, -10.0])
        model.qa_outputs.weight.zero_()
        model.qa_outputs.bias.zero_()
        model.qa_outputs.weight[0, :2] = torch.tensor([1.0, -1.0])
        model.qa_outputs.weight[1, 2:4] = torch.tensor([1.0, -1.0])
    model.save_pretrained(path)
    settings = {"task": "question-answering", "max_length": max_length, "stride": stride,
                "info": {"max_answer_length": max_answer_length}}
    (path / "tunelab.json").write_text(json.dumps({"settings": settings}))
    return path


def filler(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(FILLER) for _ in range(n)]


def windows_of(tokenizer, question: str, context: str, max_length: int, stride: int) -> list[str]:
    out = tokenizer(question, context, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    return [" ".join(tokenizer.convert_ids_to_tokens(ids)) for ids in out["input_ids"]]


# ---------------------------------------------------------------- windows and spans


def test_an_answer_in_the_second_of_three_windows_is_found_at_its_characters(tmp_path):
    path = build_finder(tmp_path / "finder")
    predictor = tunelab.load(path)
    # With the question ("where is it", 3 pieces) a 16-piece window holds 10 context pieces and the next one
    # starts 6 later (stride 4): words 0-9, 6-15, 12-21, 18-27. Word 11 is in the second window only.
    words = filler(28, seed=1)
    words[11] = "superb"
    context = " ".join(words)
    windows = windows_of(predictor.tokenizer, "where is it", context, 16, 4)
    assert len(windows) >= 3 and ["superb" in w for w in windows[:3]] == [False, True, False]
    answer = predictor.predict("where is it", context)[0]
    start = context.index("superb")
    assert (answer.answer, answer.start, answer.end) == ("superb", start, start + len("superb"))


def test_an_answer_across_a_window_edge_is_predicted_from_the_window_that_holds_it_whole(tmp_path):
    path = build_finder(tmp_path / "finder", starts=("superb",), ends=("fun",))
    predictor = tunelab.load(path)
    words = filler(30, seed=2)
    # With the question "what" a window holds 12 context pieces: words 0-11, then 8-19. Word 11 ends the first.
    words[11:13] = ["superb", "fun"]
    context = " ".join(words)
    windows = windows_of(predictor.tokenizer, "what", context, 16, 4)
    assert windows[0].split()[-2:] == ["superb", "[SEP]"] and "superb fun" in windows[1]
    answer = predictor.predict("what", context)[0]
    assert answer.answer == "superb fun" and context[answer.start:answer.end] == "superb fun"


def test_training_labels_an_answer_only_in_the_windows_that_hold_it_whole(tmp_path):
    from tunelab.tasks.question_answering import QuestionAnsweringTask
    from tunelab.tasks.base import Settings

    tokenizer, _ = tokenizer_and_config(tmp_path)
    words = filler(30, seed=2)
    words[11:13] = ["superb", "fun"]
    context = " ".join(words)
    frame = pd.DataFrame({"question": ["what"], "context": [context],
                          "answers": [[{"text": "superb fun", "answer_start": context.index("superb fun")}]]})
    encoded = QuestionAnsweringTask().encode(tokenizer, frame, Settings("question-answering", max_length=16,
                                                                        stride=4), training=True)
    labels = list(zip(encoded.features["start_positions"], encoded.features["end_positions"]))
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in encoded.features["input_ids"]]
    # The first window holds "superb" only: "no answer here" (the first token). Windows holding both pieces
    # point at them; windows past the answer say no answer.
    held = [("superb" in t and "fun" in t) for t in tokens]
    assert labels[0] == (0, 0) and held[1]
    for (start, end), row, whole in zip(labels, tokens, held):
        assert (row[start], row[end]) == (("superb", "fun") if whole else ("[CLS]", "[CLS]"))


def test_offsets_map_back_to_the_exact_characters_of_a_context_with_accents_and_extra_spaces(tmp_path):
    path = build_finder(tmp_path / "finder", starts=("paris",), ends=("paris",), max_length=32)
    predictor = tunelab.load(path)
    context = "Le  café   au lait  est très   bon à  Paris ,   le  café"
    answer = predictor.predict("where is it", context)[0]
    assert context[answer.start:answer.end] == "Paris" == answer.answer
    assert answer.start == context.index("Paris")


def test_no_span_outside_the_context_or_longer_than_the_limit(tmp_path):
    # "superb" starts answers and "fun" ends them; both are in the question too, and the context's "superb" is
    # 5 words before its "fun": a limit of 3 pieces leaves only single words, and the question is never read.
    path = build_finder(tmp_path / "finder", starts=("superb",), ends=("fun",), max_length=32, max_answer_length=3)
    predictor = tunelab.load(path)
    context = "the cat sat superb on a mat and fun then ran"
    answer = predictor.predict("superb fun", context)[0]
    assert answer.start is not None and answer.start >= 0 and answer.end <= len(context)
    assert len(predictor.tokenizer.tokenize(answer.answer)) <= 3
    assert answer.answer in ("superb", "fun") or len(answer.answer.split()) <= 3
    wide = tunelab.load(path, max_answer_length=8).predict("superb fun", context)[0]
    assert wide.answer == "superb on a mat and fun"  # the same logits, a longer limit
    # The span search itself: question positions (offsets None) and spans past the limit never come back.
    from tunelab.tasks.question_answering import Window, window_spans

    window = Window(0, [None, None, (0, 3), (4, 7), (8, 11), None], 0)
    start = np.array([0.0, 9.0, 1.0, 0.5, 0.0, 9.0])
    end = np.array([0.0, 9.0, 0.0, 0.0, 2.0, 9.0])
    spans = window_spans(start, end, window, longest=2)
    assert spans[0] == (2.5, 4, 11) and all(s < e for _, s, e in spans)
    assert {(s, e) for _, s, e in spans} == {(0, 3), (0, 7), (4, 7), (4, 11), (8, 11)}


# ---------------------------------------------------------------- data layouts and bad rows


QUESTIONS = [("the cat sat on a mat", "where is the cat", "on a mat", 12),
             ("le cafe au lait est tres bon", "what is bon", "le cafe au lait", 0),
             ("it ran to paris then london", "where did it run", "paris", 10),
             ("nothing here", "who was it", None, None)]


def write_layouts(folder) -> dict:
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [] if a is None else
                                [{"text": a, "answer_start": s}], "is_impossible": a is None}]}
        for i, (c, q, a, s) in enumerate(QUESTIONS)]}]}
    (folder / "squad.json").write_text(json.dumps(squad))
    hub = [{"id": f"q{i}", "context": c, "question": q,
            "answers": {"text": [] if a is None else [a], "answer_start": [] if a is None else [s]}}
           for i, (c, q, a, s) in enumerate(QUESTIONS)]
    (folder / "hub.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hub))
    pd.DataFrame([{"id": f"q{i}", "context": c, "question": q, "answer": a or ""} for i, (c, q, a, s) in
                  enumerate(QUESTIONS)]).to_csv(folder / "flat.csv", index=False)
    pd.DataFrame(hub).to_parquet(folder / "hub.parquet")
    return {name: folder / name for name in ("squad.json", "hub.jsonl", "flat.csv", "hub.parquet")}


def test_squad_json_flat_rows_and_hub_answers_read_to_the_same_examples(tmp_path):
    from tunelab.data import DataSpec, read_splits
    from tunelab.tasks import detect_task
    from tunelab.tasks.question_answering import examples

    expected = [(c, q, [] if a is None else [{"text": a, "answer_start": s}]) for c, q, a, s in QUESTIONS]
    for name, path in write_layouts(tmp_path).items():
        spec = DataSpec(str(path))
        splits = read_splits(spec)
        assert detect_task(spec, splits).name == "question-answering", name
        frame = examples(splits.train, spec, name)
        got = list(zip(frame["context"], frame["question"], frame["answers"]))
        assert got == expected, name
        assert frame["id"].tolist() == [f"q{i}" for i in range(4)], name


@pytest.mark.parametrize("row,expected", [
    ({"context": "the cat sat", "question": "where", "answer": "on a mat"},
     "row 2: the answer 'on a mat' is not in its context; fix the answer (or its start) or drop the row"),
    ({"context": "the cat sat", "question": "  ", "answer": "cat"},
     "row 2: the question is empty; write the question or drop the row"),
    ({"context": "", "question": "where", "answer": "cat"},
     "row 2: the context is empty or missing; give every question its context"),
], ids=["answer-not-in-context", "empty-question", "no-context"])
def test_bad_rows_are_refused_with_their_row_number(tmp_path, capsys, row, expected):
    good = {"context": "the dog ran to paris", "question": "where did it run", "answer": "paris"}
    path = tmp_path / "qa.csv"
    pd.DataFrame([good, row, good]).to_csv(path, index=False)
    line = fails(["train", "--data", path, "--model", tmp_path, "--output", tmp_path / "run"], capsys)
    assert line == f"error: {path} (train), {expected}"


def test_a_question_too_long_for_the_window_is_refused_with_its_row(tmp_path, capsys):
    tokenizer_and_config(tmp_path / "model")
    build_finder(tmp_path / "model")
    rows = [{"context": "the dog ran to paris", "question": "where did it run", "answer": "paris"}] * 4
    rows[2] = {"context": "the dog ran to paris", "question": " ".join(["what"] * 20), "answer": "paris"}
    path = tmp_path / "qa.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    line = fails(["train", "--data", path, "--validation", path, "--model", tmp_path / "model", "--max-length", "32",
                  "--stride", "8", "--output", tmp_path / "run", "--no-progress"], capsys)
    assert line == ("error: row 3: the question is 20 pieces, more than the 16 a window of --max-length 32 leaves a "
                    "question (half the window, and more room for the context than the --stride 8 pieces windows "
                    "share); shorten the question or raise --max-length")


def test_squad_metrics_normalize_and_take_the_best_reference():
    from tunelab.tasks.question_answering import normalize_answer, squad_metrics

    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    metrics = squad_metrics(["the Cat", "a mat on", "", "paris"], [["cat"], ["on a mat", "mat"], [""], [""]])
    assert metrics["exact_match"] == 0.5  # "cat", "" right; "mat on" and "paris" not
    assert metrics["f1"] == pytest.approx((1 + 1 + 1 + 0) / 4)  # "mat on" has every word of "on a mat"
    assert metrics["no_answer_accuracy"] == 0.5 and metrics["has_answer_f1"] == 1.0


# ---------------------------------------------------------------- training, the threshold, the paths that read it


def qa_rows(n: int, seed: int, unanswerable: bool) -> list[dict]:
    """Questions whose answer is the place word of their context ("paris" or "london"); with `unanswerable`,
    every third context has no place word and no answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = filler(rng.randint(4, 12), seed * 1000 + i)
        place = rng.choice(["paris", "london"])
        if unanswerable and i % 3 == 2:
            rows.append({"context": " ".join(words), "question": "where did it run", "answer": ""})
            continue
        at = rng.randrange(len(words) + 1)
        words.insert(at, place)
        rows.append({"context": " ".join(words), "question": "where did it run", "answer": place})
    return rows


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("qa")
    _, config = tokenizer_and_config(folder / "model", layers=2, hidden=32)
    from transformers import BertModel

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder / "model")
    pd.DataFrame(qa_rows(240, 1, unanswerable=True)).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(qa_rows(60, 2, unanswerable=True)).to_json(folder / "dev.jsonl", orient="records", lines=True)
    result = train(TrainConfig(data=str(folder / "train.jsonl"), validation=str(folder / "dev.jsonl"),
                               model=str(folder / "model"), output=str(folder / "run"), epochs=6, batch_size=16,
                               learning_rate=3e-3, max_length=24, stride=6, progress=False, logging_steps=5))
    return result, folder


def test_the_threshold_tuned_on_the_validation_rows_is_stored_and_evaluate_reproduces_training(qa_run, capsys):
    from tunelab.evaluation import evaluate_checkpoint, spec_for
    from tunelab.tasks.question_answering import best_spans, tune_null_threshold

    result, folder = qa_run
    assert result.best_metrics["f1"] > 0.9 and set(result.best_metrics) >= {"has_answer_f1", "no_answer_accuracy"}
    config = json.loads((result.best_dir / "config.json").read_text())
    predictor = tunelab.load(result.best_dir)
    frame = pd.read_json(folder / "dev.jsonl", lines=True)
    items = [{"question": q, "context": c} for q, c in zip(frame["question"], frame["context"])]
    encoded = predictor.task.encode_items(predictor, items)
    rows = [(o["start_logits"], o["end_logits"]) for o in predictor.run(encoded)]
    spans = best_spans(rows, encoded.meta, frame["context"].tolist(), 30)
    tuned = tune_null_threshold(spans, [[a] if a else [""] for a in frame["answer"].fillna("")])
    assert config["qa_null_threshold"] == pytest.approx(tuned, abs=1e-3)
    evaluation = evaluate_checkpoint(predictor, spec_for(predictor, str(folder / "dev.jsonl")))
    assert evaluation.rows == 60
    for name in ("exact_match", "f1", "has_answer_f1", "no_answer_accuracy"):
        assert evaluation.metrics[name] == result.best_metrics[name], name


def stored_threshold(checkpoint, value: float) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    config["qa_null_threshold"] = value
    (checkpoint / "config.json").write_text(json.dumps(config))


def test_the_stored_threshold_is_used_by_predict_evaluate_and_serve(qa_run, tmp_path, capsys):
    import shutil

    from fastapi.testclient import TestClient

    from tunelab.serve import ServeConfig, create_app

    result, folder = qa_run
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(result.best_dir, checkpoint)
    stored_threshold(checkpoint, -1e6)  # the no-answer score always wins by more than this: never answer
    context = "the dog ran to paris and then sat"
    code, out, err = run_cli(["predict", checkpoint, "--context", context, "where did it run", "-f", "jsonl"], capsys)
    assert code == 0, err
    assert json.loads(out)["answer"] == "" and json.loads(out)["start"] is None
    code, out, _ = run_cli(["predict", checkpoint, "--context", context, "where did it run", "-f", "jsonl",
                            "--null-threshold", "1e6"], capsys)
    assert json.loads(out) | {"score": 0} == {"question": "where did it run", "context": context, "answer": "paris",
                                              "start": 15, "end": 20, "score": 0}
    code, out, _ = run_cli(["evaluate", checkpoint, folder / "dev.jsonl", "--json"], capsys)
    metrics = json.loads(out)["metrics"]
    assert metrics["no_answer_accuracy"] == 1.0 and metrics["has_answer_f1"] == 0.0
    code, out, _ = run_cli(["evaluate", checkpoint, folder / "dev.jsonl", "--json", "--null-threshold", "1e6"], capsys)
    given = json.loads(out)["metrics"]  # always answers: right on unanswerable ones only when the span is an article
    assert given["no_answer_accuracy"] < 0.5 and given["has_answer_f1"] > 0.9
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint)))) as client:
        stored = client.post("/v1/answer", json={"question": "where did it run", "context": context}).json()
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), null_threshold=1e6))) as client:
        given = client.post("/v1/answer", json={"questions": ["where did it run"], "context": context}).json()
        models = client.get("/v1/models").json()["classifier"]
    assert stored["predictions"][0]["answer"] == "" and given["predictions"][0]["answer"] == "paris"
    assert models["endpoint"] == "/v1/answer" and models["view"] == "answer" and models["null_threshold"] == 1e6


def test_predict_reads_jsonl_rows_and_refuses_questions_without_a_context(qa_run, tmp_path, capsys):
    result, _ = qa_run
    rows = [{"context": "the cat ran to london", "question": "where did it run"},
            {"context": "it sat on a mat in paris", "question": "where did it run"}]
    path = tmp_path / "ask.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_cli(["predict", result.best_dir, "--input", path, "-f", "jsonl", "--null-threshold", "1e6"],
                             capsys)
    assert code == 0, err
    assert [json.loads(line)["answer"] for line in out.splitlines()] == ["london", "paris"]
    assert tunelab.load(result.best_dir, null_threshold=1e6).predict(
        [r["question"] for r in rows], [r["context"] for r in rows])[1].answer == "paris"
    assert fails(["predict", result.best_dir, "where did it run"], capsys) == (
        "error: a question-answering checkpoint answers questions about a context: give it with --context \"...\" "
        "(once, or once per question)")
    assert fails(["predict", result.best_dir, "--context", "a", "--context", "b", "--context", "c", "q1", "q2"],
                 capsys) == "error: 2 questions but 3 contexts; give one context, or one per question"


def test_serve_limits_a_context_and_refuses_a_request_without_one(qa_run):
    from fastapi.testclient import TestClient

    from tunelab.serve import ServeConfig, create_app

    result, _ = qa_run
    with TestClient(create_app(ServeConfig(checkpoint=str(result.best_dir), max_chars=20,
                                           max_context_chars=30))) as client:
        long = client.post("/v1/answer", json={"question": "where", "context": "the cat " * 5})
        none = client.post("/v1/answer", json={"question": "where"})
        ok = client.post("/v1/answer", json={"question": "where did it run", "context": "it ran to paris"})
    assert long.status_code == 422 and long.json()["error"] == ("context 1 has 40 characters, the limit is 30; "
                                                                "shorten it")
    assert none.status_code == 422 and none.json()["error"].startswith("give 'question'")
    assert ok.status_code == 200


def card_code(checkpoint, question: str, context: str) -> str:
    """The model card's transformers-only Python, for this checkpoint, question and context."""
    card = (checkpoint / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = code.replace("PATH_OR_HUB_ID", str(checkpoint))
    return re.sub(r"^question, context = .*$", f"question, context = {question!r}, {context!r}", code, flags=re.M)


def test_the_card_answers_with_transformers_alone_as_tunelab_does(qa_run):
    """transformers 5 has no question-answering pipeline: the card shows the lines that answer with
    AutoModelForQuestionAnswering alone. Run without tunelab, they give tunelab's answers on the same windows."""
    result, _ = qa_run
    checkpoint = result.best_dir
    predictor = tunelab.load(checkpoint, null_threshold=1e6)
    for seed in range(4):
        words = filler(30, seed)
        words.insert(5 + 7 * seed, "london")
        context, question = " ".join(words), "where did it run"
        assert len(windows_of(predictor.tokenizer, question, context, 24, 6)) > 1
        code = card_code(checkpoint, question, context).replace("threshold = getattr(", "threshold = 1e6 or getattr(")
        done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['tunelab'] = None\n" + code],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        ours = predictor.predict(question, context)[0]
        assert done.stdout.split() == [ours.answer, str(ours.start), str(ours.end)] or \
            done.stdout.strip() == f"{ours.answer} {ours.start} {ours.end}"


def test_onnx_gives_torch_s_logits_and_answers(qa_run, tmp_path, capsys):
    import shutil

    from tunelab.export import OnnxRunner, onnx_path

    result, _ = qa_run
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(result.best_dir, checkpoint)
    code, _, err = run_cli(["export", checkpoint], capsys)
    assert code == 0, err
    torch_side = tunelab.load(checkpoint, backend="torch")
    items = [{"question": "where did it run", "context": " ".join(filler(25, s)) + " to paris"} for s in range(3)]
    encoded = torch_side.task.encode_items(torch_side, items)
    batch = torch_side.collator([encoded[i] for i in range(len(encoded))])
    expected = torch_side.forward(batch)
    fp32 = OnnxRunner(onnx_path(checkpoint, quantized=False))(batch)
    for name in ("start_logits", "end_logits"):
        np.testing.assert_allclose(fp32[name], expected[name], atol=1e-4)
    fast = tunelab.load(checkpoint, backend="onnx")
    assert fast.backend == "onnx"
    assert [a.answer for a in fast.predict(items)] == [a.answer for a in torch_side.predict(items)]
