"""Multiple choice on tiny models: layouts and label forms, padding choices, cut contexts, bad rows, and one
checkpoint read alike by predict, evaluate, serve, ONNX Runtime and transformers alone."""

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
from conftest import FILLER, NEGATIVE, POSITIVE, SPECIAL, build_tiny_bert, fails, run_cli


def build_pad_lover(path):
    """A multiple-choice checkpoint with no layers whose score is highest for a choice made of padding: were
    padding choices not masked, it would pick them."""
    from transformers import BertConfig, BertForMultipleChoice, BertTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + POSITIVE + NEGATIVE + FILLER)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=0, num_attention_heads=2,
                        intermediate_size=8, max_position_embeddings=64)
    model = BertForMultipleChoice(config).eval()
    with torch.no_grad():
        for module in (model.bert.embeddings.word_embeddings, model.bert.embeddings.position_embeddings,
                       model.bert.embeddings.token_type_embeddings):
            module.weight.zero_()
        model.bert.embeddings.word_embeddings.weight[vocab["[PAD]"], :2] = torch.tensor([10.0, -10.0])
        model.bert.pooler.dense.weight.copy_(torch.eye(8))
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.weight[0, :2] = torch.tensor([10.0, -10.0])
    model.save_pretrained(path)
    return path, tokenizer, model


def items(counts=(2, 4, 5)) -> list[dict]:
    return [{"context": "the movie was", "question": "", "choices": [" ".join([w, "fun"]) for w in POSITIVE[:n]]}
            for n in counts]


def test_rows_of_two_four_and_five_choices_share_a_batch_and_padding_is_never_chosen(tmp_path):
    from tunelab.collate import model_inputs
    from tunelab.tasks.multiple_choice import ChoiceCollator, MultipleChoiceTask, encode_choices

    path, tokenizer, model = build_pad_lover(tmp_path / "mc")
    task = MultipleChoiceTask()
    encoded = encode_choices(tokenizer, items(), 32)
    encoded.labels = [1, 3, 4]
    batch = ChoiceCollator(tokenizer.pad_token_id)([encoded[i] for i in range(3)])
    assert batch["input_ids"].shape[:2] == (3, 5) and batch["choice_mask"].sum(1).tolist() == [2, 4, 5]
    with torch.no_grad():
        outputs = model(**model_inputs(batch, leave=("labels", "choice_mask")))
    assert outputs.logits.argmax(-1).tolist()[:2] == [2, 4]  # unmasked, the padding choices win the short rows
    logits, labels = task.outputs(outputs, batch)
    assert all(int(row.argmax()) < n for row, n in zip(logits, [2, 4, 5]))
    # The loss weighs each row's own choices only: the same as each row's cross-entropy on its own.
    own = [torch.nn.functional.cross_entropy(outputs.logits[i, :n][None], torch.tensor([label]))
           for i, (n, label) in enumerate(zip([2, 4, 5], [1, 3, 4]))]
    assert float(task.evaluation_loss(outputs, batch)) == pytest.approx(float(torch.stack(own).mean()), rel=1e-5)
    # Through a saved checkpoint: every prediction is one of its row's choices.
    (path / "tunelab.json").write_text(json.dumps({"settings": {"task": "multiple-choice", "max_length": 32}}))
    predictions = tunelab.load(path).predict(items())
    assert [len(p.probabilities) for p in predictions] == [2, 4, 5]
    assert all(p.index < n and p.choice == item["choices"][p.index] for p, item, n in
               zip(predictions, items(), [2, 4, 5]))


def test_every_label_form_and_layout_reads_to_the_same_rows():
    from tunelab.tasks.multiple_choice import rows_of

    choices = ["a dull film", "a great film", "a weak film", "an awful film"]
    forms = [2, "2", "C", "c", "a weak film"]
    frame = pd.DataFrame({"context": ["it was"] * 5, "question": ["what"] * 5, "choices": [choices] * 5,
                          "label": forms})
    assert rows_of(frame, {}, "x")["label"].tolist() == [2] * 5
    swag = pd.DataFrame({"sent1": ["it was"], "sent2": ["what"], **{f"ending{i}": [c] for i, c in enumerate(choices)},
                         "label": [2]})
    race = pd.DataFrame({"article": ["it was"], "question": ["what"], "options": [choices], "answer": ["C"]})
    named = pd.DataFrame({"passage": ["it was"], "q": ["what"], "opts": [json.dumps(choices)], "right": ["C"]})
    expected = [(1, "it was", "what", choices, 2)]
    for frame, options in ((swag, {}), (race, {}), (named, {"question_column": "q", "choices_column": "opts",
                                                            "label_column": "right"})):
        rows = rows_of(frame, options, "x")
        assert list(rows.itertuples(index=False, name=None)) == expected, frame.columns


def test_a_long_context_is_cut_from_its_start_the_choices_whole_and_the_cut_counted(tmp_path, caplog):
    import logging

    from tunelab.tasks.multiple_choice import MultipleChoiceTask
    from tunelab.tasks.base import Settings

    path = build_tiny_bert(tmp_path / "bert")
    from tunelab.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(path))
    context = " ".join(FILLER * 3) + " superb"  # 31 words, the last one what the choices follow
    frame = pd.DataFrame({"row": [1, 2], "context": [context, "the movie"], "question": ["", ""],
                          "choices": [["great fun", "awful dull weak boring"], ["good", "bad"]], "label": [0, 1]})
    with caplog.at_level(logging.WARNING):
        encoded = MultipleChoiceTask().encode(tokenizer, frame, Settings("multiple-choice", max_length=16), True)
    for ids, choice in zip(encoded.features["input_ids"][0], frame["choices"][0]):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert len(ids) <= 16 and tokens[-1] == "[SEP]"
        assert tokens[-1 - len(choice.split()):-1] == choice.split()  # the whole choice
        assert tokens[tokens.index("[SEP]") - 1] == "superb"  # the context's end stays, its start went
    assert encoded.long.as_dict()["long_rows"] == 1 and encoded.long.excess == [31 + 4 + 3 - 16]
    assert [r.getMessage() for r in caplog.records] == [
        "1 of 2 training rows (50.0%) have a context too long for --max-length 16 beside their choices: cut from "
        "its start by 22 pieces on average (at most 22); the choices are whole"]


@pytest.mark.parametrize("row,expected", [
    ({"context": "x", "choices": [], "label": 0}, "row 2: no choices; give each row at least two"),
    ({"context": "x", "choices": ["great"], "label": 0}, "row 2: one choice ('great'); give each row at least two"),
    ({"context": "x", "choices": ["great", "bad"], "label": "D"},
     "row 2: the label 'D' names none of its 2 choices; give an index 0-1, a letter A-B or a choice's text"),
    ({"context": "x", "choices": ["great", "bad", "great"], "label": 0},
     "row 2: the choice 'great' is given twice; a row's choices must differ"),
], ids=["no-choices", "one-choice", "label-names-no-choice", "duplicate-choices"])
def test_bad_rows_are_refused_with_one_line_naming_the_row(tmp_path, capsys, row, expected):
    good = {"context": "the movie", "choices": ["great fun", "awful"], "label": 0}
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (good, row, good)))
    line = fails(["train", "--data", path, "--model", tmp_path, "--output", tmp_path / "run"], capsys)
    assert line == f"error: {path} (train), {expected}"


# ---------------------------------------------------------------- one checkpoint, every reader


def mc_rows(n: int, seed: int) -> list[dict]:
    """Which ending praises: the right choice is the one of positive words, among 2 to 5."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        count = rng.choice([2, 3, 4, 5])
        wrong = [" ".join(rng.sample(NEGATIVE, 2)) for _ in range(count - 1)]
        if len(set(wrong)) < len(wrong):
            continue
        at = rng.randrange(count)
        choices = wrong[:at] + [" ".join(rng.sample(POSITIVE, 2))] + wrong[at:]
        rows.append({"context": " ".join(rng.sample(FILLER, 5)), "question": "it was", "choices": choices,
                     "label": "ABCDE"[at]})
    return rows


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory):
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("mc")
    build_tiny_bert(folder / "bert")
    for name, n, seed in (("train", 160, 1), ("dev", 40, 2)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc_rows(n, seed)))
    result = train(TrainConfig(data=str(folder / "train.jsonl"), validation=str(folder / "dev.jsonl"),
                               model=str(folder / "bert"), output=str(folder / "run"), epochs=4, batch_size=16,
                               learning_rate=3e-3, max_length=24, progress=False, logging_steps=5))
    return result, folder


def test_predict_evaluate_serve_and_onnx_agree_on_one_checkpoint(mc_run, tmp_path, capsys):
    import shutil

    from fastapi.testclient import TestClient

    from tunelab.export import OnnxRunner, onnx_path
    from tunelab.serve import ServeConfig, create_app

    result, folder = mc_run
    assert result.best_metrics["accuracy"] > 0.9
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(result.best_dir, checkpoint)
    rows = [json.loads(line) for line in (folder / "dev.jsonl").read_text().splitlines()]
    code, out, err = run_cli(["predict", checkpoint, "--input", folder / "dev.jsonl", "-f", "jsonl"], capsys)
    assert code == 0, err
    predicted = [json.loads(line) for line in out.splitlines()]
    accuracy = np.mean([p["index"] == "ABCDE".index(r["label"]) for p, r in zip(predicted, rows)])
    code, out, _ = run_cli(["evaluate", checkpoint, folder / "dev.jsonl", "--json"], capsys)
    evaluation = json.loads(out)
    assert evaluation["metrics"]["accuracy"] == accuracy == result.best_metrics["accuracy"]
    positions = {row[0]: row[1:] for row in evaluation["table"]["rows"]}
    assert sum(chosen for chosen, _, _ in positions.values()) == 40
    assert [positions[p][1] for p in "ABCDE"] == [sum(r["label"] == p for r in rows) for p in "ABCDE"]
    with TestClient(create_app(ServeConfig(checkpoint=str(checkpoint)))) as client:
        served = client.post("/v1/choose", json={"items": rows[:6]}).json()["predictions"]
        one = client.post("/v1/choose", json={"choices": rows[0]["choices"], "context": rows[0]["context"],
                                              "question": rows[0]["question"]}).json()["predictions"][0]
        bad = client.post("/v1/choose", json={"choices": ["only one"]})
    assert [p["index"] for p in served] == [p["index"] for p in predicted[:6]] and one["index"] == served[0]["index"]
    for got, want in zip(served, predicted):
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-6)
    assert bad.status_code == 422 and bad.json()["error"] == "input 1: one choice ('only one'); give each row at least two"
    code, _, err = run_cli(["export", checkpoint], capsys)
    assert code == 0, err
    torch_side = tunelab.load(checkpoint, backend="torch")
    encoded = torch_side.task.encode_items(torch_side, [{**r, "choices": r["choices"]} for r in rows[:5]])
    batch = torch_side.collator([encoded[i] for i in range(len(encoded))])
    expected = torch_side.forward(batch)["logits"]
    got = OnnxRunner(onnx_path(checkpoint, quantized=False))(batch)["logits"]
    mask = batch["choice_mask"].numpy()
    np.testing.assert_allclose(got[mask], expected[mask], atol=1e-4)
    fast = tunelab.load(checkpoint, backend="onnx")
    assert [p.index for p in fast.predict(rows)] == [p["index"] for p in predicted]


def test_predict_from_flags_and_the_card_scores_choices_with_transformers_alone(mc_run, capsys):
    result, folder = mc_run
    row = mc_rows(1, 9)[0]
    args = ["predict", result.best_dir, "--context", row["context"], "--question", row["question"]]
    for choice in row["choices"]:
        args += ["--choice", choice]
    code, out, err = run_cli(args + ["-f", "jsonl"], capsys)
    assert code == 0, err
    ours = json.loads(out)
    card = (result.best_dir / "README.md").read_text()
    code_block = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("PATH_OR_HUB_ID", str(result.best_dir))
    code_block = re.sub(r"^context, question = .*$", f"context, question = {row['context']!r}, {row['question']!r}",
                        code_block, flags=re.M)
    code_block = re.sub(r"^choices = .*$", f"choices = {row['choices']!r}", code_block, flags=re.M)
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['tunelab'] = None\n" + code_block],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chosen, probabilities = done.stdout.strip().split(" [", 1)
    assert chosen == ours["choice"]
    np.testing.assert_allclose(json.loads("[" + probabilities), ours["probabilities"], atol=1e-5)
    assert fails(["predict", result.best_dir, "--choice", "great fun"], capsys) == (
        "error: input 1: one choice ('great fun'); give each row at least two")
