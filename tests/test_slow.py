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

    code, out, err = run_cli(["train", "--data", "rotten-tomatoes", "--limit", "1500", "--epochs", "2",
                              "--learning-rate", "1e-4", "--output", tmp_path / "run", "--no-progress"], capsys)
    assert code == 0, err
    assert "validation accuracy:" in out and f"checkpoint: {tmp_path / 'run' / 'best'}" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # Always answering the majority class scores about 0.57 on this split; the fine-tuned model must do far better.
    assert summary["best_metrics"]["accuracy"] > 0.75
    classifier = pipeline("text-classification", model=str(tmp_path / "run" / "best"))
    labels = [r["label"] for r in classifier(["A wonderful, moving film.", "Dull, lifeless and far too long."])]
    assert labels == ["positive", "negative"]


def test_bundled_attention_grid_is_6_by_12_with_wordpiece_tokens(tmp_path):
    from tunelab import attention

    model, tokenizer = attention.load_encoder("minilm")
    found = attention.inspect(model, tokenizer, "Tokenization is fun")
    assert found.tokens == ["[CLS]", "token", "##ization", "is", "fun", "[SEP]"]
    assert found.attentions.shape == (6, 12, 6, 6)
    picture = attention.plot_attention(found, tmp_path / "grid.png")
    assert picture.stat().st_size > 50_000


def test_bundled_generator_is_deterministic_for_a_seed(tmp_path, monkeypatch):
    from tunelab.generate import GenerationOptions, generate, load_generator

    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))  # the GGUF file is converted here, not taken from a cache

    model, tokenizer = load_generator()
    options = GenerationOptions(max_new_tokens=24, top_p=0.9, seed=1)
    first = generate(model, tokenizer, "Once upon a time", options)
    assert first.texts == generate(model, tokenizer, "Once upon a time", options).texts
    assert len(first.texts[0].split()) >= 5
    assert (tmp_path / "SmolLM2-135M-Instruct" / "model.safetensors").exists()
