"""Preference tuning (DPO, SimPO, ORPO) with a tiny random Llama: the losses against hand computations, the
answers alone scored on both sides, the reference model (the adapter-free base under LoRA, the starting
weights otherwise, computed once), resume, the formats read alike, and the refusals."""

from __future__ import annotations

import gc
import json
import logging
import random

import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, fails, launch_train, run_cli
from test_language_models import build_tiny_llama, tokenizer_of, write_jsonl


def preference_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentiment questions: the right label word chosen, the wrong one rejected."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        text = " ".join(rng.sample(FILLER, 3) + rng.sample(POSITIVE if positive else NEGATIVE, 2))
        right, wrong = ("positive", "negative") if positive else ("negative", "positive")
        rows.append({"prompt": f"{text} is it ?", "chosen": right, "rejected": wrong})
    return rows


def conversational(rows: list[dict]) -> list[dict]:
    """The same rows in TRL's conversational form with an implicit prompt (whole conversations)."""
    out = []
    for r in rows:
        user = {"role": "user", "content": r["prompt"]}
        out.append({"chosen": [user, {"role": "assistant", "content": r["chosen"]}],
                    "rejected": [user, {"role": "assistant", "content": r["rejected"]}]})
    return out


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-preference"))


def task_with(info: dict):
    """The preference task and a run's settings with its switches, as setup makes them."""
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    return get_task("preference"), Settings(task="preference", max_length=64, info={
        "preference_loss": "dpo", "beta": 0.1, "simpo_gamma": 0.5, **info})


def encoded_batch(run, tokenizer, rows):
    import pandas as pd

    from tunelab.tasks.preference import pair_frame

    task, settings = run
    frame = pair_frame(pd.DataFrame(rows), {}, "rows")
    encoded = task.encode(tokenizer, frame, settings, True)
    return encoded, task.collator(tokenizer, settings)([encoded[i] for i in range(len(encoded))])


def answer_logps_by_hand(model, batch) -> torch.Tensor:
    """Each side's summed log-probability of its labeled tokens from the full logits, one sequence at a time."""
    out = torch.zeros(batch["input_ids"].shape[:2], dtype=torch.float64)
    for b in range(out.shape[0]):
        for side in range(2):
            ids, labels = batch["input_ids"][b, side], batch["labels"][b, side]
            length = int(batch["attention_mask"][b, side].sum())
            logits = model(ids[None, :length]).logits[0].double().log_softmax(-1)
            for t in range(1, length):
                if labels[t] != -100:
                    out[b, side] += logits[t - 1, labels[t]]
    return out


def test_the_three_losses_equal_hand_computations_on_two_rows(tiny_llama):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    rows = preference_rows(2)
    rows[1]["chosen"] = "negative negative"  # answers of different lengths: SimPO and ORPO average per token
    with torch.no_grad():
        for how in ("dpo", "simpo", "orpo"):
            run = task_with({"preference_loss": how, "beta": 0.3})
            _, batch = encoded_batch(run, tokenizer_of(tiny_llama), rows)
            batch["reference"] = torch.tensor([[-3.0, -4.5], [-2.0, -1.0]], dtype=torch.float64)
            logps = answer_logps_by_hand(model, batch)
            counts = (batch["labels"][:, :, 1:] != -100).sum(-1).double()
            assert counts.tolist() == [[2, 2], [3, 2]]  # the answer word and the end-of-turn token
            if how == "dpo":
                z = 0.3 * ((logps[:, 0] - batch["reference"][:, 0]) - (logps[:, 1] - batch["reference"][:, 1]))
                expected = -torch.nn.functional.logsigmoid(z).mean()
            elif how == "simpo":
                mean = logps / counts
                expected = -torch.nn.functional.logsigmoid(0.3 * (mean[:, 0] - mean[:, 1]) - 0.3 * 0.5).mean()
            else:
                mean = logps / counts
                odds = mean - torch.log1p(-mean.exp())
                expected = (-mean[:, 0] - 0.3 * torch.nn.functional.logsigmoid(odds[:, 0] - odds[:, 1])).mean()
            assert float(run[0].loss(model, batch)) == pytest.approx(float(expected), abs=1e-5), how


def test_only_the_answers_and_their_end_of_turn_carry_the_loss_on_both_sides(tiny_llama):
    tokenizer = tokenizer_of(tiny_llama)
    encoded, batch = encoded_batch(task_with({}), tokenizer, preference_rows(1))
    chosen, rejected = (encoded.labels[0][side] for side in (0, 1))
    assert tokenizer.decode([t for t in chosen if t != -100]) == "positive <|im_end|>"
    assert tokenizer.decode([t for t in rejected if t != -100]) == "negative <|im_end|>"
    ids = encoded.features["input_ids"][0]
    start = next(i for i, t in enumerate(chosen) if t != -100)
    assert ids[0][:start] == ids[1][:start] and start == next(i for i, t in enumerate(rejected) if t != -100)
    assert batch["input_ids"].shape == (1, 2, len(ids[0]))


def test_trls_conversational_rows_read_as_the_same_pairs_as_text_columns(tiny_llama):
    tokenizer, run = tokenizer_of(tiny_llama), task_with({})
    rows = preference_rows(4)
    as_text, _ = encoded_batch(run, tokenizer, rows)
    as_turns, _ = encoded_batch(run, tokenizer, conversational(rows))
    explicit = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "chosen": [{"role": "assistant", "content": r["chosen"]}],
                 "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    as_explicit, _ = encoded_batch(run, tokenizer, explicit)
    assert as_text.features["input_ids"] == as_turns.features["input_ids"] == as_explicit.features["input_ids"]
    assert as_text.labels == as_turns.labels == as_explicit.labels


def lora_model(tiny_llama):
    """The tiny Llama with LoRA adapters whose B matrices are not zero, so the adapters change the outputs."""
    from transformers import AutoModelForCausalLM

    from tunelab.lora import LoraOptions, apply_lora

    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), "CAUSAL_LM", LoraOptions(4, 8, 0.0, None))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    return model


def test_the_reference_under_lora_is_the_base_without_adapters_and_no_copy_is_made(tiny_llama, monkeypatch):
    import copy

    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    tokenizer, (task, settings) = tokenizer_of(tiny_llama), task_with({})
    # Rows of lengths out of order, more than one reference batch of them: the pass batches rows by length and
    # must hand each row its own values back.
    rows = preference_rows(20)
    for row, extra in zip(rows, random.Random(3).sample(range(20), 20)):
        row["prompt"] = "very " * extra + row["prompt"]
    encoded, batch = encoded_batch((task, settings), tokenizer, rows)
    from tunelab.train.loop import reset_accelerate_precision

    reset_accelerate_precision("no")  # fp32, whatever precision an earlier test left in accelerate's state
    model, accelerator = lora_model(tiny_llama), Accelerator(cpu=True, mixed_precision="no")
    gc.collect()
    models = sum(type(o) is LlamaForCausalLM for o in gc.get_objects())

    def no_copies(*args, **kwargs):
        raise AssertionError("the reference model must not be a copy")

    monkeypatch.setattr(copy, "deepcopy", no_copies)
    task.before_training(model, [encoded], task.collator(tokenizer, settings), settings, accelerator)
    monkeypatch.undo()
    gc.collect()
    assert sum(type(o) is LlamaForCausalLM for o in gc.get_objects()) == models
    reference = torch.tensor(encoded.features["reference"], dtype=torch.float64)
    with torch.no_grad():
        base = answer_logps_by_hand(AutoModelForCausalLM.from_pretrained(tiny_llama), batch)
        adapted = answer_logps_by_hand(model, batch)
    torch.testing.assert_close(reference, base, rtol=0, atol=1e-5)
    assert (reference - adapted).abs().max() > 0.1  # the adapters were on everywhere else
    assert model.training  # left as it was found


def test_a_full_weight_run_scores_against_its_starting_weights_computed_once(tiny_llama, tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    from tunelab.train import TrainConfig, train

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(40))
    with caplog.at_level(logging.INFO, logger="tunelab"):
        result = train(TrainConfig(data=data, model=tiny_llama, output=str(tmp_path / "run"), epochs=2,
                                   batch_size=8, learning_rate=1e-3, eval_before=True, progress=False))
    assert "reference log-probabilities of 40 pairs computed once (the starting weights) in " in caplog.text
    assert sum("reference log-probabilities" in r.message for r in caplog.records) == 1
    evaluations = [r for r in result.history if "eval_loss" in r]
    # Before the first step the policy is the reference: every reward is 0 and the loss is log 2.
    assert evaluations[0]["eval_reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert evaluations[0]["eval_loss"] == pytest.approx(0.693147, abs=1e-5)
    assert evaluations[-1]["eval_reward_accuracy"] == 1.0 and evaluations[-1]["eval_reward_margin"] > 0.01
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "best")  # a plain causal LM folder


def test_a_run_resumed_mid_epoch_ends_with_the_same_weights(tiny_llama, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from tunelab.train import TrainConfig, resume_config, train

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(54))
    straight = tmp_path / "straight"
    train(TrainConfig(data=data, model=tiny_llama, output=str(straight), epochs=2, batch_size=8, learning_rate=1e-3,
                      save_every=4, keep_states=5, progress=False))
    states = sorted(p.name for p in (straight / "state").glob("step-*"))
    assert states == ["step-00000004", "step-00000006", "step-00000008"]  # 6 steps an epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for name in states[:2]:  # as if killed after step 8: two batches into the second epoch
        shutil.rmtree(resumed / "state" / name)
    shutil.rmtree(resumed / "last")
    train(resume_config(resumed), resume=True)
    a, b = (load_file(run / "last" / "model.safetensors") for run in (straight, resumed))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_the_data_is_detected_and_bad_rows_are_refused_with_their_row(tiny_llama, tmp_path, capsys, caplog):
    def refused(rows, *extra) -> str:
        path = write_jsonl(tmp_path / "bad.jsonl", rows)
        return fails(["train", "--data", path, "--model", tiny_llama, "--output", tmp_path / "out", "--no-progress",
                      *extra], capsys)

    good = preference_rows(6)
    same = [*good[:2], {**good[2], "rejected": good[2]["chosen"]}]
    assert refused(same) == (f"error: {tmp_path / 'bad.jsonl'} (train), row 3: the chosen and rejected answers are the same "
                             "text, so there is no preference to learn; remove the row or fix one answer")
    assert refused([good[0], {**good[1], "rejected": " "}]) == (
        f"error: {tmp_path / 'bad.jsonl'} (train), row 2: the rejected answer is empty; give both answers, or remove the row")
    mixed = [good[0], conversational(good[1:2])[0]]
    assert refused(mixed) == (f"error: {tmp_path / 'bad.jsonl'} (train), row 2: the answers are conversations but row 1's "
                              "are texts; use one format in a file (text columns, or TRL's conversations)")
    differ = json.loads(json.dumps(conversational(good[:2])))
    differ[1]["rejected"][0]["content"] = "another question"
    assert refused(differ) == (f"error: {tmp_path / 'bad.jsonl'} (train), row 2: the chosen and rejected conversations differ "
                               "before their last answer; both must share the prompt turns")
    assert refused(good, "--beta", "0") == "error: --beta must be positive, got 0.0"
    assert refused(good, "--preference-loss", "kto") == ("error: --preference-loss must be one of dpo, simpo, orpo, "
                                                         "got 'kto'")
    # A prompt too long for --max-length: the pair is dropped and counted.
    long = [*good, {"prompt": " ".join(["movie"] * 40) + " is it ?", "chosen": "positive", "rejected": "negative"}]
    path = write_jsonl(tmp_path / "long.jsonl", long)
    with caplog.at_level(logging.INFO, logger="tunelab"):
        code, _, err = run_cli(["train", "--data", path, "--model", tiny_llama, "--output", tmp_path / "long",
                                "--validation", path, "--max-length", "24", "--epochs", "1", "--no-progress"], capsys)
    assert code == 0, err
    assert "training: dropped 1 of 7 pairs whose prompt leaves no room for an answer within --max-length 24 tokens; " \
           "raise --max-length to keep them" in caplog.text
    assert "runs past" not in caplog.text  # the dropped pair is not counted as cut too
    assert "(preference)" in caplog.text and "DPO, beta 0.1" in caplog.text


def test_a_beta_sweep_ranks_preference_runs_and_each_run_keeps_card_runs_and_push(tiny_llama, tmp_path, capsys):
    """Preference runs go through the core like every task's: a sweep over --betas trains each trial with its
    beta (recorded in its config), ranks them by the task's metric, and `runs`, the card and `push --dry-run`
    work on what it leaves."""
    import yaml

    from tunelab.sweep import SweepConfig, run_sweep

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(40))
    base = {"data": data, "model": tiny_llama, "epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "threads": 1,
            "metric": "reward_margin"}
    result = run_sweep(SweepConfig(base=base, study_dir=str(tmp_path / "study"), space={"beta": [0.1, 1.0]},
                                   progress=False))
    assert result.metric == "reward_margin" and [t.state for t in result.trials] == ["complete", "complete"]
    assert sorted(t.params["beta"] for t in result.trials) == [0.1, 1.0]
    assert result.trials[0].value >= result.trials[1].value  # best first
    for trial in result.trials:
        run = tmp_path / "study" / "trials" / f"trial-{trial.number:03d}"
        resolved = yaml.safe_load((run / "config.yaml").read_text())["resolved"]
        assert resolved["task"] == "preference" and resolved["beta"] == trial.params["beta"]
        card = (run / "best" / "README.md").read_text()
        assert "(task: preference)" in card and 'pipeline("text-generation"' in card
        assert f"| reward_margin | {trial.value:.4f} |" in card
    code, out, err = run_cli(["runs", tmp_path / "study" / "trials"], capsys)
    assert code == 0, err
    for trial in result.trials:  # each trial a run of the preference task, with its best reward margin
        line = next(l for l in out.splitlines() if l.startswith(f"trial-{trial.number:03d} "))
        parts = line.split()
        assert (parts[1], parts[4], parts[5]) == ("preference", "reward_margin", f"{trial.value:.4f}")
    best = tmp_path / "study" / "trials" / f"trial-{result.trials[0].number:03d}"
    code, out, err = run_cli(["push", best, "--repo", "someone/tiny-dpo", "--dry-run"], capsys)
    assert code == 0 and "README.md" in out and "model.safetensors" in out, err


def test_a_lora_preference_run_trains_in_two_processes(tiny_llama, tmp_path):
    """`accelerate launch` of a DPO run: each process computes the references it needs, the run's switches
    travel with every batch to the loss, evaluations are gathered and written once."""
    import os
    import subprocess

    import yaml

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(48))
    run = tmp_path / "ddp"
    command = launch_train() + ["--data", data, "--model", tiny_llama, "--lora", "--epochs", "2", "--batch-size",
                                "4", "--beta", "0.5", "--threads", "1", "--no-progress", "--output", str(run)]
    done = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = yaml.safe_load((run / "config.yaml").read_text())["resolved"]
    assert (resolved["num_processes"], resolved["task"], resolved["beta"]) == (2, "preference", 0.5)
    assert "DPO, beta 0.5" in done.stderr
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r]
    # 43 training pairs (5 split off for validation) in batches of 4 on two processes: 6 steps an epoch.
    assert [r["step"] for r in evals] == [6, 12]
    assert all(0 <= r["eval_reward_accuracy"] <= 1 and r["eval_loss"] > 0 for r in evals)
