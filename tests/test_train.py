"""Training on tiny models: the loss falls, weights change, checkpoints are what the metrics say."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import sentiment_rows
from tunelab.train import TrainConfig, make_scheduler, train


def quick(data, model, out, **overrides) -> TrainConfig:
    options = dict(data=str(data), model=model, output=str(out), epochs=3, batch_size=16, learning_rate=3e-3,
                   progress=False, logging_steps=2, warmup_ratio=0.0)
    return TrainConfig(**{**options, **overrides})


def test_run_folder_loss_falls_and_weights_change(trained_run, tiny_bert):
    run = trained_run.run_dir
    assert {"config.yaml", "metrics.jsonl", "summary.json", "best", "last"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    assert len(evals) == 4  # one per epoch
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.8
    assert trained_run.best_metrics["accuracy"] >= 0.9
    before = load_file(f"{tiny_bert}/model.safetensors")
    after = load_file(run / "best" / "model.safetensors")
    # The base checkpoint is a BertModel; the classifier prefixes its keys with "bert.".
    changed = [name for name in before if not torch.equal(before[name], after[f"bert.{name}"])]
    assert len(changed) > len(before) // 2
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["resolved"]["label_names"] == ["negative", "positive"] and config["epochs"] == 4
    saved = json.loads((run / "best" / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}


def test_best_checkpoint_is_the_one_its_metrics_describe(trained_run):
    from tunelab.data import DataSpec
    from tunelab.evaluation import evaluate_checkpoint
    from tunelab.predict import load

    info = json.loads((trained_run.best_dir / "tunelab.json").read_text())
    assert info["step"] == trained_run.best_step
    # Re-create the validation rows exactly as training did, and score the saved checkpoint.
    spec = yaml.safe_load((trained_run.run_dir / "config.yaml").read_text())
    from tunelab.tasks import load_task_data

    data = load_task_data(DataSpec(spec["data"], seed=spec["seed"]))
    validation = trained_run.run_dir / "val.csv"
    data.validation.assign(label=[data.label_names[i] for i in data.validation["label"]]).to_csv(validation, index=False)
    result = evaluate_checkpoint(load(trained_run.best_dir), DataSpec(str(validation)))
    assert result.metrics["accuracy"] == pytest.approx(info["metrics"]["accuracy"], abs=1e-6)


def test_pairs_train_with_token_type_ids(pairs_tsv, tiny_bert, tmp_path):
    result = train(quick(pairs_tsv, tiny_bert, tmp_path / "run", text_column="sentence1",
                         text_pair_column="sentence2", epochs=2))
    assert result.steps == 2 * 7
    from transformers import AutoModelForSequenceClassification

    from tunelab.predict import load

    predictor = load(result.best_dir)
    encoded = predictor.tokenizer("good movie", "bad movie")
    assert set(encoded["token_type_ids"]) == {0, 1}
    # The pair's logits are the model's on tokenizer(text, pair), not on the first text alone.
    model = AutoModelForSequenceClassification.from_pretrained(result.best_dir).eval()
    with torch.no_grad():
        paired = model(**predictor.tokenizer("good fun", "great fine", return_tensors="pt")).logits[0].numpy()
        single = model(**predictor.tokenizer("good fun", return_tensors="pt")).logits[0].numpy()
    ours = predictor.logits(["good fun"], ["great fine"])[0]
    np.testing.assert_allclose(ours, paired, atol=1e-6)
    # The briefly trained model barely separates them, but far more than float noise does.
    assert np.abs(ours - single).max() > 1e-5


def test_freeze_encoder_trains_only_the_head(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", freeze_encoder=True, epochs=1))
    # The same run with a vanishing rate: the head as it was initialized (the seed fixes it).
    still = train(quick(sentiment_csv, tiny_bert, tmp_path / "still", freeze_encoder=True, epochs=1,
                        learning_rate=1e-12))
    before = load_file(f"{tiny_bert}/model.safetensors")
    after = load_file(result.last_dir / "model.safetensors")
    initial = load_file(still.last_dir / "model.safetensors")
    encoder = [n for n in before if n.startswith(("embeddings", "encoder"))]
    assert encoder and all(torch.equal(before[n], after["bert." + n]) for n in encoder)
    for head in ("classifier.weight", "classifier.bias", "bert.pooler.dense.weight"):
        assert (after[head] - initial[head]).abs().max() > 1e-3, head


def test_freeze_embeddings_keeps_only_the_token_embeddings(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", freeze_embeddings=True, epochs=1))
    before = load_file(f"{tiny_bert}/model.safetensors")
    after = load_file(result.last_dir / "model.safetensors")
    words = "embeddings.word_embeddings.weight"
    assert torch.equal(before[words], after["bert." + words])
    # Everything else still trains: position embeddings and the encoder.
    for name in ("embeddings.position_embeddings.weight", "encoder.layer.0.attention.self.query.weight"):
        assert not torch.equal(before[name], after["bert." + name])


def test_freeze_embeddings_without_embeddings_says_so():
    from tunelab.errors import TunelabError
    from tunelab.modeling import freeze_input_embeddings

    class NoEmbeddings(torch.nn.Module):
        def get_input_embeddings(self):
            raise NotImplementedError

    with pytest.raises(TunelabError) as error:
        freeze_input_embeddings(NoEmbeddings())
    assert str(error.value) == ("cannot find the input embeddings of NoEmbeddings to freeze; "
                                "train without --freeze-embeddings")


def tiny_batch(labels: list[int]) -> dict[str, torch.Tensor]:
    """Two rows of the tiny vocabulary, the second one padded."""
    return {"input_ids": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), "labels": torch.tensor(labels)}


def test_label_smoothing_is_cross_entropy_against_smoothed_targets(tiny_bert):
    from tunelab.modeling import load_classifier
    from tunelab.train import training_loss

    torch.manual_seed(0)
    model = load_classifier(tiny_bert, ["negative", "positive", "neutral"]).eval()
    batch = tiny_batch([2, 0])
    assert torch.equal(training_loss(model, batch), model(**batch).loss)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    # By hand: the true class gets 1 - 0.3 + 0.3/3, each other class 0.3/3.
    targets = torch.full((2, 3), 0.1)
    targets[0, 2] = targets[1, 0] = 0.8
    expected = -(targets * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(training_loss(model, batch, 0.3), expected, atol=1e-6)


def test_label_smoothing_trains_and_evaluates_with_the_plain_loss(tiny_bert, tmp_path):
    pd.DataFrame(sentiment_rows(320, seed=1)).to_csv(tmp_path / "train.csv", index=False)
    result = train(quick(tmp_path / "train.csv", tiny_bert, tmp_path / "run", epochs=4, label_smoothing=0.1))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.8
    # With 10% smoothing over two classes the training loss cannot go below the targets' entropy, 0.1985 nats;
    # the evaluation loss is plain cross-entropy, which can.
    assert min(losses) > 0.1985 and result.best_metrics["accuracy"] >= 0.9
    assert result.best_metrics["loss"] < 0.1985


def _backward_once(tiny_bert):
    from accelerate import Accelerator

    from tunelab.modeling import freeze_input_embeddings, load_classifier

    torch.manual_seed(0)
    model = load_classifier(tiny_bert, ["negative", "positive"])
    freeze_input_embeddings(model)
    model(**tiny_batch([1, 0])).loss.backward()
    return Accelerator(cpu=True), model


def test_clip_gradients_matches_torch_and_leaves_small_gradients_alone(tiny_bert):
    from tunelab.train import clip_gradients

    accelerator, model = _backward_once(tiny_bert)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert "bert.embeddings.word_embeddings.weight" not in grads  # frozen: no gradient, not in the norm
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])).item()

    # Measuring only, or a bound above the norm: the norm comes back, the gradients stay as they were.
    assert clip_gradients(accelerator, model, 0.0, measure=False) is None
    assert clip_gradients(accelerator, model, 0.0) == pytest.approx(norm, rel=1e-6)
    assert clip_gradients(accelerator, model, norm * 2) == pytest.approx(norm, rel=1e-6)
    assert all(torch.equal(p.grad, grads[name]) for name, p in model.named_parameters() if p.grad is not None)

    # A bound below the norm: the same gradients as torch's clip_grad_norm_ on an identical model.
    assert clip_gradients(accelerator, model, norm / 4) == pytest.approx(norm, rel=1e-6)
    _, reference = _backward_once(tiny_bert)
    torch.nn.utils.clip_grad_norm_(reference.parameters(), norm / 4)
    expected = {name: p.grad for name, p in reference.named_parameters() if p.grad is not None}
    clipped = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert clipped.keys() == expected.keys() and all(torch.equal(clipped[n], expected[n]) for n in expected)
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in clipped.values()])).item()
    assert total == pytest.approx(norm / 4, rel=1e-3)  # torch divides by norm + 1e-6


def test_logged_steps_carry_the_gradient_norm_and_how_often_clipping_bound(sentiment_csv, tiny_bert, tmp_path):
    tight = train(quick(sentiment_csv, tiny_bert, tmp_path / "tight", epochs=1, max_grad_norm=1e-6))
    free = train(quick(sentiment_csv, tiny_bert, tmp_path / "free", epochs=1, max_grad_norm=0.0))
    tight_logs = [r for r in tight.history if "loss" in r and "eval_loss" not in r]
    free_logs = [r for r in free.history if "loss" in r and "eval_loss" not in r]
    assert tight_logs and all(r["clipped"] == 1.0 and r["grad_norm"] > 1e-6 for r in tight_logs)
    assert free_logs and all("clipped" not in r and r["grad_norm"] > 0 for r in free_logs)


def rates(name: str, warmup: int, total: int) -> list[float]:
    """The rate under make_scheduler before each of `total` steps and after the last, for a peak of 1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, name, warmup, total)
    out = [scheduler.get_last_lr()[0]]
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def test_lr_schedulers_warm_up_alike_then_take_their_shape():
    linear, cosine, constant = (rates(name, 2, 10) for name in ("linear", "cosine", "constant"))
    assert linear[:3] == cosine[:3] == constant[:3] == [0.0, 0.5, 1.0]
    # Two, four and six steps after the warm-up, of eight: linear falls evenly, cosine stays higher
    # first and lower at the end, constant stays at the peak.
    assert linear[4] == pytest.approx(0.75) and cosine[4] == pytest.approx(0.5 + 0.5 ** 0.5 / 2)
    assert linear[6] == pytest.approx(0.5) and cosine[6] == pytest.approx(0.5)
    assert linear[8] == pytest.approx(0.25) and cosine[8] == pytest.approx(0.5 - 0.5 ** 0.5 / 2)
    assert linear[10] == cosine[10] == 0.0 and constant[3:] == [1.0] * 8


def test_a_run_follows_the_chosen_schedule(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", max_steps=8, warmup_steps=2, logging_steps=1,
                         lr_scheduler="cosine", layer_decay=0.5, head_learning_rate=1e-2))
    logged = [r["learning_rate"] for r in result.history if "loss" in r and "eval_loss" not in r]
    # Each log comes after its step, so it shows the rate of the step that follows; it is the
    # --learning-rate's, whatever the head and the lower layers run at.
    assert logged == pytest.approx([3e-3 * r for r in rates("cosine", 2, 8)[1:]])
    assert (yaml.safe_load((result.run_dir / "config.yaml").read_text())["lr_scheduler"]) == "cosine"


def test_from_scratch_starts_from_random_weights(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", from_scratch=True, epochs=1, max_steps=1,
                         learning_rate=1e-9))
    before = load_file(f"{tiny_bert}/model.safetensors")
    after = load_file(result.last_dir / "model.safetensors")
    name = "embeddings.word_embeddings.weight"
    assert not torch.allclose(before[name], after["bert." + name], atol=1e-3)


def test_gradient_accumulation_max_steps_and_eval_every(sentiment_csv, tiny_bert, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="tunelab.train.loop"):
        result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", grad_accum=2, max_steps=5, eval_every=2))
    assert result.steps == 5
    evals = [r["step"] for r in result.history if "eval_loss" in r]
    assert evals == [2, 4, 5]
    first = next(r for r in result.history if "eval_loss" in r)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 3 and lines[0].startswith("step 2 (epoch 0.50): ")
    assert f"accuracy {first['eval_accuracy']:.4f}" in lines[0]
    # Each optimizer step consumed two micro-batches of 16 rows: 5 steps, 160 rows.
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["steps"] == 5
    logged = [r for r in result.history if "loss" in r and "eval_loss" not in r]
    assert [r["step"] for r in logged] == [2, 4, 5]
    # 108 training rows in micro-batches of 16 accumulated in pairs: 4 optimizer steps an epoch (the last one
    # of a single micro-batch), so step 5 is epoch 1.25
    assert [r["epoch"] for r in logged] == [0.5, 1.0, 1.25]
    assert all(r["samples_per_s"] > 0 for r in logged)
    # When the last step is an evaluation step, the run does not evaluate it a second time.
    even = train(quick(sentiment_csv, tiny_bert, tmp_path / "even", grad_accum=2, max_steps=4, eval_every=2))
    assert [r["step"] for r in even.history if "eval_loss" in r] == [2, 4]


def test_two_accumulated_batches_of_8_equal_one_batch_of_16(sentiment_csv, tmp_path):
    from conftest import build_tiny_bert
    from transformers import BertModel

    model = build_tiny_bert(tmp_path / "no-dropout")
    config = BertModel.from_pretrained(model).config
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(model)
    common = dict(max_steps=3, batching="random", warmup_ratio=0.0, learning_rate=1e-3)
    one = train(quick(sentiment_csv, str(model), tmp_path / "one", batch_size=16, **common))
    two = train(quick(sentiment_csv, str(model), tmp_path / "two", batch_size=8, grad_accum=2, **common))
    half = train(quick(sentiment_csv, str(model), tmp_path / "half", batch_size=8, **common))
    a, b, c = (load_file(r.last_dir / "model.safetensors") for r in (one, two, half))
    assert all(torch.allclose(a[k], b[k], atol=2e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=2e-6) for k in a)  # without accumulation: other weights


def test_early_stopping_with_patience(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", learning_rate=1e-12, epochs=10,
                         patience=2, metric="accuracy"))
    evals = [r for r in result.history if "eval_loss" in r]
    assert len(evals) == 3  # the first sets the best, two more without improvement stop it
    assert result.steps < 10 * 7


def test_overwrite_replaces_the_run(sentiment_csv, tiny_bert, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    train(quick(sentiment_csv, tiny_bert, out, overwrite=True, max_steps=1))
    assert not (out / "old.txt").exists() and (out / "best" / "model.safetensors").exists()


def test_regression_on_scores(tmp_path, tiny_bert):
    rows = sentiment_rows(200)
    frame = pd.DataFrame({"text": [r["text"] for r in rows],
                          "label": [4.5 if r["label"] == "positive" else 0.5 for r in rows]})
    frame.loc[0, "label"] = 2.25
    frame.to_csv(tmp_path / "scores.csv", index=False)
    result = train(quick(tmp_path / "scores.csv", tiny_bert, tmp_path / "run", epochs=6))
    assert result.metric == "pearson" and result.best_metrics["pearson"] > 0.5
    from tunelab.predict import load

    prediction = load(result.best_dir).predict("great superb fun")[0]
    assert prediction.label is None and prediction.score > 2.0

    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError) as error:
        train(quick(tmp_path / "scores.csv", tiny_bert, tmp_path / "run2", label_smoothing=0.1))
    assert str(error.value) == (f"--label-smoothing applies to classification, but {tmp_path / 'scores.csv'} "
                                "has numeric labels (regression); drop --label-smoothing")


def test_run_writes_loss_metric_and_confusion_plots(trained_run):
    from PIL import Image

    plots = trained_run.run_dir / "plots"
    for name in ("loss.png", "metrics.png", "confusion_matrix.png"):
        with Image.open(plots / name) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def _rates(model, groups) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g.get("lr", "default") for g in groups for p in g["params"]}


def test_layer_decay_lowers_the_rate_layer_by_layer(tiny_bert, tiny_gpt2):
    from transformers import AutoModelForSequenceClassification

    from tunelab.train import _param_groups

    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    rates = _rates(bert, _param_groups(bert, 0.01, head_learning_rate=1e-3, learning_rate=1e-4, layer_decay=0.5))
    assert rates["classifier.weight"] == rates["bert.pooler.dense.weight"] == 1e-3
    assert rates["bert.encoder.layer.1.output.dense.weight"] == "default"  # the top layer: the base rate
    assert rates["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(0.5e-4)
    assert rates["bert.embeddings.word_embeddings.weight"] == pytest.approx(0.25e-4)
    assert rates["bert.embeddings.LayerNorm.weight"] == pytest.approx(0.25e-4)

    gpt2 = AutoModelForSequenceClassification.from_pretrained(tiny_gpt2, num_labels=2)
    rates = _rates(gpt2, _param_groups(gpt2, 0.01, learning_rate=1e-4, layer_decay=0.5))
    assert rates["transformer.wte.weight"] == pytest.approx(0.25e-4)
    assert rates["transformer.h.0.attn.c_attn.weight"] == pytest.approx(0.5e-4)
    assert rates["transformer.h.1.attn.c_attn.weight"] == rates["score.weight"] == "default"

    untouched = _rates(bert, _param_groups(bert, 0.01))
    assert set(untouched.values()) == {"default"}


def test_layer_decay_reaches_the_optimizer(sentiment_csv, tiny_bert, tmp_path):
    # With a tiny decay the embeddings (two layers below the top) barely move; the top layer trains.
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", epochs=1, layer_decay=1e-4))
    before = load_file(f"{tiny_bert}/model.safetensors")
    after = load_file(result.last_dir / "model.safetensors")
    embedding = "embeddings.word_embeddings.weight"
    top = "encoder.layer.1.output.dense.weight"
    assert (after[f"bert.{embedding}"] - before[embedding]).abs().max() < 1e-6
    assert (after[f"bert.{top}"] - before[top]).abs().max() > 1e-3


def test_warmup_ratio_sets_the_warmup_steps(sentiment_csv, tiny_bert, tmp_path):
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", max_steps=10, warmup_ratio=0.3, logging_steps=1))
    resolved = yaml.safe_load((result.run_dir / "config.yaml").read_text())["resolved"]
    assert resolved["warmup_steps"] == 3
    logged = [r["learning_rate"] for r in result.history if "loss" in r and "eval_loss" not in r]
    assert logged[:3] == pytest.approx([1e-3, 2e-3, 3e-3])  # up to the peak of 3e-3 in three steps


def test_no_weight_decay_on_biases_and_layer_norm(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from tunelab.train import _param_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in _param_groups(model, 0.01) for p in g["params"]}
    assert decay["bert.encoder.layer.0.attention.self.query.bias"] == 0.0
    assert decay["bert.embeddings.LayerNorm.weight"] == 0.0
    assert decay["bert.encoder.layer.0.output.LayerNorm.bias"] == 0.0
    assert decay["bert.encoder.layer.0.attention.self.query.weight"] == 0.01
    assert decay["classifier.weight"] == 0.01


def test_length_grouped_batches_are_used_and_can_be_turned_off(sentiment_csv, tiny_bert, tmp_path, monkeypatch):
    import tunelab.collate as collate

    widths = {}
    original = collate.Collator.__call__

    def record(self, rows):
        batch = original(self, rows)
        if "labels" in batch and len(rows) == 8:  # training batches (evaluation uses 128)
            widths.setdefault(current, []).append(int(batch["attention_mask"].sum()) / batch["attention_mask"].numel())
        return batch

    monkeypatch.setattr(collate.Collator, "__call__", record)
    for current in ("grouped", "random"):
        train(quick(sentiment_csv, tiny_bert, tmp_path / current, batch_size=8, epochs=1,
                    batching=current))
    # Real tokens per padded position: grouped batches are nearly all real, random ones are not.
    assert np.mean(widths["grouped"]) > 0.95 and np.mean(widths["random"]) < 0.9


def test_with_a_progress_bar_the_evaluation_lines_are_written_above_it(sentiment_csv, tiny_bert, tmp_path, capsys):
    """Runs from a terminal show a bar; each evaluation's line is written above it (tqdm.write), not lost."""
    result = train(quick(sentiment_csv, tiny_bert, tmp_path / "run", max_steps=2, eval_every=1, progress=True))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    evals = [r for r in result.history if "eval_loss" in r]
    assert [line.split(" (")[0] for line in lines] == ["step 1", "step 2"]
    assert f"accuracy {evals[1]['eval_accuracy']:.4f}" in lines[1] and "train:" in err  # the bar itself


def test_the_warmup_default_is_the_task_s(sentiment_csv, tiny_bert, ner_files, tiny_ner_bert, tmp_path):
    """Sequence classification starts at its peak rate (measured best untuned); other tasks warm up for 10%."""
    classified = train(quick(sentiment_csv, tiny_bert, tmp_path / "cls", max_steps=10, warmup_ratio=None))
    train_file, valid_file = ner_files
    tagged = train(TrainConfig(data=str(train_file), validation=str(valid_file), model=tiny_ner_bert,
                               output=str(tmp_path / "ner"), max_steps=10, progress=False, max_length=24))
    steps = [yaml.safe_load((r.run_dir / "config.yaml").read_text())["resolved"]["warmup_steps"]
             for r in (classified, tagged)]
    assert steps == [0, 1]
    card = (classified.run_dir / "best" / "README.md").read_text()
    assert "| --warmup-steps | 0 |" in card and "--warmup-ratio" not in card  # what ran, not an unset option
