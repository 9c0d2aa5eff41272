"""Real-model tests: the bundled MiniLM and the built-in corpora (marked slow)."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_bundled_model_resolves_offline_and_loads_with_labels():
    from tunelab.modeling import load_classifier, load_tokenizer, resolve_model

    path = resolve_model("minilm")
    model = load_classifier(path, ["negative", "positive"])
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.config.id2label == {0: "negative", 1: "positive"}
    tokens = load_tokenizer(path).tokenize("Tokenization works")
    assert tokens == ["token", "##ization", "works"]


def test_short_fine_tune_on_rotten_tomatoes_beats_chance_and_loads_in_pipeline(tmp_path, capsys):
    from transformers import pipeline

    code, out, err = run_cli(["train", "--data", "rotten-tomatoes", "--limit", "600", "--epochs", "1",
                              "--learning-rate", "1e-4", "--output", tmp_path / "run", "--no-progress"], capsys)
    assert code == 0, err
    assert "validation accuracy:" in out and f"checkpoint: {tmp_path / 'run' / 'best'}" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_metrics"]["accuracy"] > 0.6
    classifier = pipeline("text-classification", model=str(tmp_path / "run" / "best"))
    labels = {r["label"] for r in classifier(["A wonderful, moving film.", "Dull, lifeless and far too long."])}
    assert labels <= {"negative", "positive"}
