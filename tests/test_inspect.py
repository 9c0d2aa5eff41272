"""Tokens, attention maps and hidden states of tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from tunelab import attention
from tunelab.errors import TunelabError


def test_attention_shapes_and_rows_sum_to_one(tiny_bert):
    model, tokenizer = attention.load_encoder(tiny_bert)
    found = attention.inspect(model, tokenizer, "the movie was good", pair="bad plot")
    assert found.tokens == ["[CLS]", "the", "movie", "was", "good", "[SEP]", "bad", "plot", "[SEP]"]
    assert found.attentions.shape == (2, 4, 9, 9)
    np.testing.assert_allclose(found.attentions.sum(-1), np.ones((2, 4, 9)), atol=1e-5)
    assert found.hidden_states.shape == (3, 9, 32)


def test_attention_of_a_fine_tuned_checkpoint(trained_run):
    model, tokenizer = attention.load_encoder(str(trained_run.best_dir))
    found = attention.inspect(model, tokenizer, "great fun")
    assert found.attentions.shape == (2, 4, 4, 4)


def test_layer_and_head_out_of_range(tiny_bert):
    model, tokenizer = attention.load_encoder(tiny_bert)
    found = attention.inspect(model, tokenizer, "good")
    with pytest.raises(TunelabError, match=r"--layer 2 is out of range: the model has 2 layers \(0 to 1\)"):
        found.check(2, None)
    with pytest.raises(TunelabError, match=r"--head 4 is out of range: each layer has 4 heads \(0 to 3\)"):
        found.check(0, 4)


def test_attention_cli_writes_png_and_tensors(tiny_bert, tmp_path, capsys):
    from PIL import Image

    code, out, err = run_cli(["attention", tiny_bert, "the movie was good", "-o", tmp_path / "grid.png",
                              "--save-attentions", tmp_path / "att.npz", "--hidden-states", tmp_path / "h.npz"], capsys)
    assert code == 0, err
    assert "attention: 2 layers x 4 heads" in out
    assert "hidden_states (3, 6, 32) (layers + embeddings, tokens, hidden)" in out
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size[0] > 400
    saved = np.load(tmp_path / "att.npz")
    assert saved["attentions"].shape == (2, 4, 6, 6) and list(saved["tokens"])[0] == "[CLS]"
    hidden = np.load(tmp_path / "h.npz")
    assert hidden["hidden_states"].shape == (3, 6, 32) and list(hidden["tokens"]) == [
        "[CLS]", "the", "movie", "was", "good", "[SEP]"]
    # Each view is a picture of its own size: one layer's 4 heads and their average side by side, one
    # head alone, one head-averaged map per layer.
    sizes = {}
    for name, extra in (("layer", ["--layer", "1"]), ("head", ["--layer", "1", "--head", "3"]),
                        ("average", ["--average"])):
        picture = tmp_path / f"{name}.png"
        code, out, err = run_cli(["attention", tiny_bert, "good", "-o", picture, *extra,
                                  "--hidden-states", tmp_path / f"{name}.npz"], capsys)
        assert code == 0, err
        with Image.open(picture) as image:
            assert image.format == "PNG"
            sizes[name] = image.size
        assert np.load(tmp_path / f"{name}.npz")["hidden_states"].shape == (3, 3, 32)
    assert sizes["layer"][0] > 2 * sizes["layer"][1]  # five panels in a row
    assert sizes["average"][0] > sizes["average"][1]  # two layers in a row
    assert sizes["head"][0] < 1.5 * sizes["head"][1]  # one square map
    code, _, err = run_cli(["attention", tiny_bert, "good", "--layer", "5", "-o", tmp_path / "x.png"], capsys)
    assert code == 1 and "error: --layer 5 is out of range: the model has 2 layers (0 to 1)" in err
    assert not (tmp_path / "x.png").exists()


def test_tokenize_cli_single_pair_and_strategies(tiny_bert, capsys):
    code, out, _ = run_cli(["tokenize", tiny_bert, "The movie", "--pair", "was good"], capsys)
    assert code == 0
    assert "[CLS]" in out and "[SEP]" in out and "round trip: differs" in out  # the vocab is lower-cased
    code, out, _ = run_cli(["tokenize", tiny_bert, "good", "the movie was really very good", "--max-length", "5",
                            "--json"], capsys)
    report = json.loads(out)
    assert report["encodings"][0]["tokens"] == ["[CLS]", "good", "[SEP]"]
    assert report["encodings"][0]["special"] == [True, False, True]
    names = [s["name"] for s in report["strategies"]]
    assert names[0] == "padding='longest'"
    longest, max_length, truncation = (s["rows"] for s in report["strategies"])
    assert len(longest[0]["ids"]) == len(longest[1]["ids"]) == 8 and longest[0]["attention_mask"][3:] == [0] * 5
    assert [len(r["ids"]) for r in max_length] == [5, 5]
    assert [len(r["ids"]) for r in truncation] == [3, 5]
    assert report["round_trip"][1] == {"text": "the movie was really very good",
                                       "decoded": "the movie was really very good", "exact": True}
    code, _, err = run_cli(["tokenize", tiny_bert, " "], capsys)
    assert code == 1 and "error: a text is empty" in err
