"""--precision auto: bf16 autocast with fp32 weights where the device computes bf16 natively, fp32 elsewhere;
said in the start line, stored with the run and the checkpoint, kept on resume, and used by prediction.
The device's support is forced with TUNELAB_NATIVE_BF16 (conftest sets 0), so these hold on any CPU."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunelab.train import TrainConfig, train

STEPS = 12


def run(sentiment_csv, model, folder, caplog, **options):
    config = TrainConfig(data=str(sentiment_csv), model=model, output=str(folder), max_steps=STEPS, batch_size=8,
                         learning_rate=3e-3, progress=False, warmup_ratio=0.0, **options)
    with caplog.at_level(logging.INFO, logger="tunelab.train.loop"):
        train(config)
    start = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training "))
    caplog.clear()
    return start


@pytest.mark.parametrize("native,expected,said", [
    ("0", "fp32", "fp32 (TUNELAB_NATIVE_BF16=0)"),
    ("1", "bf16", "bf16 autocast with fp32 weights (TUNELAB_NATIVE_BF16=1)"),
])
def test_auto_follows_the_device_says_so_and_stores_it(native, expected, said, sentiment_csv, tiny_bert, tmp_path,
                                                      caplog, monkeypatch):
    monkeypatch.setenv("TUNELAB_NATIVE_BF16", native)
    start = run(sentiment_csv, tiny_bert, tmp_path / "run", caplog)
    assert start.endswith(", " + said)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["resolved"]["precision"] == expected
    info = json.loads((tmp_path / "run" / "best" / "tunelab.json").read_text())
    assert info["precision"] == expected
    weights = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # loads anywhere, whatever it trained in


def test_bf16_training_moves_the_weights_as_fp32_training_does(sentiment_csv, tiny_bert, tmp_path, caplog):
    start = load_file(str(tiny_bert) + "/model.safetensors")
    run(sentiment_csv, tiny_bert, tmp_path / "fp32", caplog, precision="fp32")
    said = run(sentiment_csv, tiny_bert, tmp_path / "bf16", caplog, precision="bf16")
    assert said.endswith(", bf16 autocast with fp32 weights (asked for)")
    single, half = (load_file(str(tmp_path / name / "last" / "model.safetensors")) for name in ("fp32", "bf16"))
    encoder = [k for k in start if k.startswith("encoder.")]  # the pretrained body (a BertModel)
    moved = torch.cat([(single["bert." + k] - start[k]).flatten() for k in encoder])
    moved_half = torch.cat([(half["bert." + k] - start[k]).flatten() for k in encoder])
    assert moved.norm() > 0.1  # training moved the weights...
    # ...and bf16's update is fp32's within 10% of its size (bf16 keeps 8 bits of mantissa), not another one.
    assert float((moved_half - moved).norm() / moved.norm()) < 0.1
    assert not torch.equal(moved_half, moved)  # it did compute in bf16


def test_resume_keeps_the_precision_the_run_started_in(sentiment_csv, tiny_bert, tmp_path, monkeypatch):
    from tunelab.train.loop import run_precision

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"precision": "auto", "resolved": {"precision": "bf16"}}))
    config = TrainConfig(data=str(sentiment_csv), model=tiny_bert, output=str(folder))
    monkeypatch.setenv("TUNELAB_NATIVE_BF16", "0")
    assert run_precision(config, folder, resume=True).name == "bf16"  # moved to a CPU without bf16: kept
    assert run_precision(config, folder, resume=False).name == "fp32"


def test_a_config_from_before_precision_reads_mixed_precision_no_as_fp32(tmp_path):
    from tunelab.train.config import read_config_file

    (tmp_path / "config.yaml").write_text("data: x.csv\nmixed_precision: 'no'\n")
    assert read_config_file(tmp_path / "config.yaml") == {"data": "x.csv", "precision": "fp32"}


def test_prediction_follows_the_same_rule(trained_run, monkeypatch):
    from tunelab.predict import load

    texts = ["a wonderful and brilliant film", "a dull , boring mess"]
    path = trained_run.run_dir / "best"
    plain = load(path, backend="torch")
    assert plain.precision.name == "fp32"
    expected = plain.logits(texts)
    monkeypatch.setenv("TUNELAB_NATIVE_BF16", "1")
    half = load(path, backend="torch")
    assert half.precision.name == "bf16"
    got = half.logits(texts)
    assert not torch.equal(torch.as_tensor(got), torch.as_tensor(expected))  # computed in bf16...
    assert torch.allclose(torch.as_tensor(got), torch.as_tensor(expected), atol=0.05)  # ...to bf16's precision


def test_predict_evaluate_and_serve_take_precision(trained_run, sentiment_csv, monkeypatch, capsys):
    """--precision fp32 computes in fp32 on a bf16 device (the same output as a device without bf16), the
    default follows the device; a bad value is one line."""
    from fastapi.testclient import TestClient

    import tunelab.predict
    from conftest import fails, run_cli
    from tunelab.serve import ServeConfig, create_app

    path = trained_run.run_dir / "best"
    texts = ["a wonderful and brilliant film", "a dull , boring mess", "fine"]
    loaded = []  # the precision of each predictor the commands load (evaluate's metrics hide bf16's digits)
    load = tunelab.predict.load

    def spy(*args, **kwargs):
        predictor = load(*args, **kwargs)
        loaded.append(predictor.precision.name)
        return predictor

    monkeypatch.setattr(tunelab.predict, "load", spy)

    def outputs(precision="auto"):
        loaded.clear()
        options = ["--backend", "torch", "--precision", precision]
        predicted = run_cli(["predict", path, *texts, "-f", "jsonl", *options], capsys)
        scored = run_cli(["evaluate", path, sentiment_csv, "--json", "--no-progress", *options], capsys)
        config = ServeConfig(checkpoint=str(path), backend="torch", precision=precision)
        with TestClient(create_app(config)) as client:
            served = client.post("/v1/classify", json={"texts": texts}).json()
        assert predicted[0] == 0 and scored[0] == 0
        return loaded[:], predicted[1], json.loads(scored[1])["metrics"], served

    plain = outputs()  # conftest: TUNELAB_NATIVE_BF16=0
    assert plain[0] == ["fp32"] * 3
    monkeypatch.setenv("TUNELAB_NATIVE_BF16", "1")
    assert outputs("fp32") == plain
    half = outputs()
    assert half[0] == ["bf16"] * 3
    assert half[1] != plain[1] and half[3] != plain[3]  # bf16 probabilities
    assert fails(["predict", path, "fine", "--precision", "half"], capsys) == \
        "error: --precision must be one of auto, fp32, bf16, fp16, got 'half'"
