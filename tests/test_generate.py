"""Generation with a tiny GPT-2: seeds, streaming, options, the chat template, bad input."""

from __future__ import annotations

import pytest

from conftest import build_tiny_gpt2, run_cli
from tunelab.errors import TunelabError
from tunelab.generate import GenerationOptions, build_inputs, generate, load_generator


def test_same_seed_same_text_and_token_count(tiny_gpt2):
    model, tokenizer = load_generator(tiny_gpt2)
    options = GenerationOptions(max_new_tokens=12, seed=7, repetition_penalty=1.0)
    first = generate(model, tokenizer, "once upon a time", options)
    again = generate(model, tokenizer, "once upon a time", options)
    assert first.texts == again.texts and first.new_tokens <= 12
    others = {generate(model, tokenizer, "once upon a time", GenerationOptions(max_new_tokens=12, seed=s)).texts[0]
              for s in range(4)}
    assert len(others) > 1  # different seeds sample different texts


def test_streamed_pieces_make_the_text(tiny_gpt2):
    model, tokenizer = load_generator(tiny_gpt2)
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    pieces: list[tuple[str, int]] = []
    options = GenerationOptions(max_new_tokens=8, greedy=True, repetition_penalty=1.0)
    result = generate(model, tokenizer, "the movie", options, lambda text: pieces.append((text, len(forwards))))
    assert "".join(t for t, _ in pieces).strip() == result.texts[0].strip()
    # Several pieces, the first while the model still had tokens to compute (streamed, not sent at the end).
    assert len(pieces) >= 3 and result.new_tokens == 8
    assert pieces[0][1] < len(forwards) and pieces[0][1] <= 3


def test_several_sequences_top_k_and_greedy(tiny_gpt2):
    model, tokenizer = load_generator(tiny_gpt2)
    result = generate(model, tokenizer, "good", GenerationOptions(max_new_tokens=5, num_return_sequences=3, top_k=5,
                                                                 seed=1))
    assert len(result.texts) == 3
    greedy = [generate(model, tokenizer, "good", GenerationOptions(max_new_tokens=5, greedy=True, seed=s)).texts[0]
              for s in (1, 2)]
    assert greedy[0] == greedy[1]


def test_chat_template_is_used_when_the_model_has_one(tmp_path):
    path = build_tiny_gpt2(tmp_path / "chat", chat_template="{% for m in messages %}user : {{ m['content'] }} "
                                                             "{% endfor %}assistant :")
    model, tokenizer = load_generator(str(path))
    ids = build_inputs(tokenizer, "good movie", chat=None)["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(ids) == ["user", ":", "good", "movie", "assistant", ":"]
    plain = build_inputs(tokenizer, "good movie", chat=False)["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(plain) == ["good", "movie"]


def test_cli_generates_and_streams(tiny_gpt2, capsys, monkeypatch):
    import sys

    writes: list[str] = []
    real = sys.stdout

    class Recorder:
        def write(self, text):
            writes.append(text)
            return real.write(text)

        def flush(self):
            real.flush()

    monkeypatch.setattr("tunelab.cli.generate.sys.stdout", Recorder())
    code, out, err = run_cli(["generate", tiny_gpt2, "once upon a time", "--max-new-tokens", "6", "--seed", "3",
                              "--repetition-penalty", "1.0"], capsys)
    assert code == 0, err
    assert out.strip() and "tokens/s]" in err
    assert len([w for w in writes if w.strip()]) >= 3  # written piece by piece, then the newline
    assert "".join(writes) == out
    monkeypatch.undo()
    code, again, _ = run_cli(["generate", tiny_gpt2, "once upon a time", "--max-new-tokens", "6", "--seed", "3"], capsys)
    assert again == out


def test_bad_input(tiny_gpt2, tiny_bert, trained_run, capsys):
    code, _, err = run_cli(["generate", tiny_gpt2, "   "], capsys)
    assert code == 1 and "error: the prompt is empty; give some text to continue" in err
    code, _, err = run_cli(["generate", tiny_gpt2, "good", "--max-new-tokens", "0"], capsys)
    assert code == 1 and "error: --max-new-tokens must be at least 1, got 0" in err
    code, _, err = run_cli(["generate", str(trained_run.best_dir), "good"], capsys)
    assert code == 1
    assert "is a BertForSequenceClassification, not a causal language model, so it cannot generate text" in err
    with pytest.raises(TunelabError, match="--top-p must be in"):
        GenerationOptions(top_p=1.5).check()
