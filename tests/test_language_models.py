"""Causal and masked language modeling with tiny random models: which tokens carry the loss, blocks of plain
text, packed causal rows, LoRA (only the adapters train; merged equals base + adapter), masked-LM checkpoints
that load in the fill-mask pipeline and seed a classifier, and the refusals."""

from __future__ import annotations

import json
import logging
import random

import pandas as pd
import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, build_tiny_bert, build_tiny_gpt2, fails, launch_train, run_cli, \
    sentiment_rows

# A ChatML-like template: every turn "<|im_start|>ROLE CONTENT<|im_end|> ".
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
WORDS = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "positive", "negative", "is", "it",
         "?", "once", "upon", "time"] + POSITIVE + NEGATIVE + FILLER


def build_tiny_llama(path, model_type: str = "llama"):
    """A 2-layer Llama (hidden 32) with a word-level tokenizer and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", bos_token="<|im_start|>",
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = TEMPLATE
    config = AutoConfig.for_model(model_type, vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentiment questions answered with the label word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        text = " ".join(rng.sample(FILLER, 3) + rng.sample(POSITIVE if positive else NEGATIVE, 2))
        rows.append({"messages": [{"role": "user", "content": f"{text} is it ?"},
                                  {"role": "assistant", "content": "positive" if positive else "negative"}]})
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def lora_run(tiny_llama, tmp_path_factory):
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("lora")
    data = write_jsonl(folder / "chat.jsonl", chat_rows(48))
    config = TrainConfig(data=data, task="causal-lm", model=tiny_llama, lora=True, output=str(folder / "run"),
                         epochs=2, batch_size=8, learning_rate=5e-3, progress=False, warmup_ratio=0.0)
    return train(config)


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------- which tokens carry the loss


def test_only_the_answer_and_its_end_of_turn_carry_loss(tiny_llama):
    from tunelab.tasks.causal_lm import ChatWriter

    tokenizer = tokenizer_of(tiny_llama)
    ids_of = tokenizer.convert_tokens_to_ids
    messages = [{"role": "system", "content": "good"}, {"role": "user", "content": "the movie is it ?"},
                {"role": "assistant", "content": "positive"}, {"role": "user", "content": "and the plot"},
                {"role": "assistant", "content": "very dull"}]
    ids, labels = ChatWriter(tokenizer).tokens(messages)
    words = ("<|im_start|> system good <|im_end|> <|im_start|> user the movie is it ? <|im_end|> "
             "<|im_start|> assistant positive <|im_end|> <|im_start|> user and the plot <|im_end|> "
             "<|im_start|> assistant very dull <|im_end|>").split()
    assert ids == ids_of(words)
    answers = {14, 15, 24, 25, 26}  # "positive <|im_end|>" and "very dull <|im_end|>"
    assert labels == [t if i in answers else -100 for i, t in enumerate(ids)]
    # --train-on-prompt: every token is a target.
    assert ChatWriter(tokenizer).tokens(messages, train_on_prompt=True) == (ids, ids)


def test_prompt_completion_rows_read_as_one_user_turn_and_its_answer(tiny_llama, tmp_path):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "the movie is it ?", "completion": "positive"}] * 4)
    chats = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "the movie is it ?"},
                                                                {"role": "assistant", "content": "positive"}]}] * 4)
    task, tokenizer = get_task("causal-lm"), tokenizer_of(tiny_llama)
    encoded = []
    for path in (pairs, chats):
        data = load_task_data(DataSpec(source=path))  # detected from the columns
        assert data.task.name == "causal-lm"
        settings = Settings("causal-lm", max_length=64, info=data.info)
        encoded.append(task.encode(tokenizer, data.train, settings, training=True))
    assert encoded[0].features["input_ids"] == encoded[1].features["input_ids"]
    assert encoded[0].labels == encoded[1].labels
    assert encoded[0].labels[0][-2:] == tokenizer.convert_tokens_to_ids(["positive", "<|im_end|>"])
    assert set(encoded[0].labels[0][:-2]) == {-100}


def test_long_conversations_are_cut_and_said_and_answerless_ones_dropped(tiny_llama, caplog):
    from tunelab.tasks.causal_lm import ChatWriter, cut_rows

    writer = ChatWriter(tokenizer_of(tiny_llama))
    short = [{"role": "user", "content": "good"}, {"role": "assistant", "content": "positive"}]
    late = [{"role": "user", "content": " ".join(["very"] * 20)}, {"role": "assistant", "content": "positive"}]
    rows = [writer.tokens(m) for m in (short, late, short)]
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        encoded = cut_rows([r[0] for r in rows], [r[1] for r in rows], 12, "training")
    assert len(encoded) == 2 and encoded.lengths == [8, 8]
    assert [r.getMessage() for r in caplog.records] == [
        "training: 1 of 3 conversations are longer than --max-length 12 tokens and were cut to it (the longest "
        "has 27); raise --max-length to keep them whole",
        "training: dropped 1 of 3 conversations whose answer starts after --max-length 12 tokens; raise "
        "--max-length to keep them"]


# ---------------------------------------------------------------- plain text


def test_documents_are_joined_with_eos_and_cut_into_full_blocks(tiny_llama, tmp_path):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    text = tmp_path / "docs.txt"
    text.write_text("once upon a time\n\n\nthe movie was good\n  \nvery dull\n", encoding="utf-8")
    data = load_task_data(DataSpec(source=str(text), task="causal-lm", validation=str(text)))
    assert data.train["text"].tolist() == ["once upon a time", "the movie was good", "very dull"]
    tokenizer = tokenizer_of(tiny_llama)
    encoded = get_task("causal-lm").encode(tokenizer, data.train, Settings("causal-lm", max_length=5, info=data.info),
                                           training=True)
    stream = "once upon a time <|im_end|> the movie was good <|im_end|> very dull <|im_end|>".split()
    ids = tokenizer.convert_tokens_to_ids(stream)
    assert encoded.features["input_ids"] == [ids[0:5], ids[5:10], ids[10:13]]
    assert encoded.labels == encoded.features["input_ids"]  # every token is a target
    # One document a line.
    lines = load_task_data(DataSpec(source=str(text), task="causal-lm", validation=str(text), line_per_document=True))
    assert lines.train["text"].tolist() == ["once upon a time", "the movie was good", "very dull"]


def test_packed_causal_rows_give_the_padded_loss(tiny_llama):
    from transformers import AutoModelForCausalLM

    from tunelab.collate import Collator, PackingCollator, packing_matches

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids}
            for ids in ([5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15], [16, 17, 18], [20, 21])]
    packed, padded = PackingCollator(2, causal=True)(rows), Collator(2)(rows)
    assert packed["input_ids"].shape == (2, 8)
    # Each packed row's first label is ignored: padded, it is never predicted either.
    assert packed["labels"].tolist() == [[-100, 6, 7, 8, 9, 10, 11, 12], [-100, 14, 15, -100, 17, 18, -100, 21]]
    with torch.no_grad():
        loss_packed = model(**{k: v for k, v in packed.items() if k != "row_index"}).loss
        loss_padded = model(**{k: v for k, v in padded.items() if k != "row_index"}).loss
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5)
    assert packing_matches(model, rows, PackingCollator(2, causal=True))
    assert not packing_matches(model, rows, PackingCollator(2))  # attending forward is caught


def lm_batch(task_name: str, model_path: str, seed: int) -> tuple:
    """A padded batch of three rows of different lengths with labels at some positions, and its model."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from tunelab.collate import Collator

    model = (AutoModelForCausalLM if task_name == "causal-lm" else AutoModelForMaskedLM).from_pretrained(model_path)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for length in (9, 5, 12):
        ids = torch.randint(5, model.config.vocab_size, (length,), generator=generator).tolist()
        labels = [t if torch.rand(1, generator=generator) < 0.4 else -100 for t in ids]
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return model, {k: v for k, v in Collator(0)(rows).items() if k != "row_index"}


@pytest.mark.parametrize("task_name", ["causal-lm", "masked-lm"])
def test_the_vocabulary_head_at_labeled_positions_gives_the_full_loss_and_gradients(task_name, tiny_llama, tiny_bert,
                                                                                     tmp_path):
    from tunelab.tasks import get_task
    from tunelab.tasks.language import projection_at

    path = tiny_llama if task_name == "causal-lm" else build_tiny_bert(tmp_path / "mlm")
    if task_name == "masked-lm":
        from transformers import BertForMaskedLM

        BertForMaskedLM.from_pretrained(path).save_pretrained(path)  # the tiny encoder with an MLM head
    task = get_task(task_name)
    model, batch = lm_batch(task_name, path, seed=3)
    model.eval()  # no dropout: both passes see the same network
    full = model(**batch).loss  # the model's own loss, over every position's logits
    expected = torch.autograd.grad(full, list(model.parameters()))
    labeled = (batch["labels"][:, 1:] if task_name == "causal-lm" else batch["labels"]) != -100
    keep, targets = task.labeled(batch["labels"])
    # The head sees only the labeled positions: as many logits as targets, not batch x length.
    with projection_at(model, keep) as selected:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    assert selected and logits.shape == (int(labeled.sum()), model.config.vocab_size) == (len(targets), logits.shape[1])
    loss = task.loss(model, batch)
    got = torch.autograd.grad(loss, list(model.parameters()))
    assert abs(float(loss) - float(full)) < 1e-5
    assert all(torch.allclose(g, e, atol=1e-5, rtol=1e-4) for g, e in zip(got, expected))
    # Evaluation: each row's summed negative log-likelihood and token count, as from the full logits.
    with torch.no_grad():
        outputs = task.evaluation_forward(model, batch)
        reference = task.outputs({"logits": model(**batch).logits}, batch)
    assert torch.allclose(outputs["nll"], reference[0], atol=1e-4)
    assert outputs["tokens"].tolist() == reference[1].tolist() == labeled.sum(dim=1).tolist()
    assert abs(float(outputs["loss"]) - float(model(**batch).loss)) < 1e-5


# ---------------------------------------------------------------- LoRA


def test_lora_trains_only_the_adapters_and_the_merged_checkpoint_equals_base_plus_adapter(lora_run, tiny_llama):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, pipeline

    best = lora_run.best_dir
    base_weights = load_file(f"{tiny_llama}/model.safetensors")
    adapter = load_file(best / "adapter" / "adapter_model.safetensors")
    assert sorted({k.rsplit(".", 2)[0].rsplit(".", 1)[-1] for k in adapter}) == ["q_proj", "v_proj"]
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at zero: it trained
    # Before merging, every base weight is the pretrained one.
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), best / "adapter")
    for name, value in with_adapter.get_base_model().state_dict().items():
        plain = name.replace(".base_layer", "")
        if "lora_" not in name and plain in base_weights:
            assert torch.equal(value, base_weights[plain]), name
    # Merged: the q/v projections changed, everything else did not; its logits are base + adapter's.
    merged = AutoModelForCausalLM.from_pretrained(best).eval()
    changed = sorted(k for k, v in merged.state_dict().items() if k in base_weights and not torch.equal(v, base_weights[k]))
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    ids = torch.tensor([[1, 3, 18, 19, 8, 9, 10, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter.eval()(ids).logits, atol=1e-5)
    # A plain text-generation pipeline loads best/ without tunelab or peft.
    generator = pipeline("text-generation", model=str(best))
    assert generator("the movie", max_new_tokens=2, do_sample=False)[0]["generated_text"].startswith("the movie")


def test_lora_on_an_architecture_peft_does_not_know_names_the_option(tmp_path, capsys):
    model = build_tiny_llama(tmp_path / "olmo", model_type="olmo")
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(20))
    line = fails(["train", "--task", "causal-lm", "--model", model, "--data", data, "--lora", "--output",
                  tmp_path / "run", "--no-progress"], capsys)
    assert line == ("error: --lora: no known target modules for OlmoForCausalLM (model type 'olmo'); name them with "
                    "--lora-target-modules, for example --lora-target-modules down_proj,gate_proj (its linear "
                    "layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)")
    # Named, they are used.
    code, _, err = run_cli(["train", "--task", "causal-lm", "--model", model, "--data", data, "--lora",
                            "--lora-target-modules", "q_proj,k_proj", "--output", tmp_path / "run", "--epochs", "1",
                            "--no-progress"], capsys)
    assert code == 0, err
    adapter = json.loads((tmp_path / "run" / "best" / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "q_proj"]


# ---------------------------------------------------------------- masked LM


def test_whole_word_masking_takes_all_pieces_of_a_word_or_none():
    from tunelab.tasks.masked_lm import MaskingCollator

    masker = MaskingCollator(pad_token_id=0, mask_token_id=4, vocab_size=30, special_ids=(0, 2, 3),
                             probability=0.5, whole_word=True)
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 3]])
    words = torch.tensor([[-1, 0, 0, 1, 2, 2, 2, 3, 4, -1]])
    for seed in range(20):
        masked, labels = masker.mask(ids, words, torch.Generator().manual_seed(seed))
        chosen = (labels != -100)[0].tolist()
        assert not chosen[0] and not chosen[-1]  # [CLS] and [SEP] never
        for word in range(5):
            assert len({chosen[i] for i in range(10) if words[0, i] == word}) == 1
        assert torch.equal(labels[labels != -100], ids[labels != -100])
        assert torch.equal(masked[labels == -100], ids[labels == -100])


def test_masked_lm_run_loads_in_fill_mask_and_seeds_a_classifier(tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import pipeline

    model = build_tiny_bert(tmp_path / "bert")
    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(r["text"] for r in sentiment_rows(200)) + "\n", encoding="utf-8")
    code, _, err = run_cli(["train", "--task", "masked-lm", "--model", model, "--data", text, "--line-per-document",
                            "--output", tmp_path / "mlm", "--epochs", "2", "--block-size", "16", "--whole-word-mask",
                            "--no-progress"], capsys)
    assert code == 0, err
    fill = pipeline("fill-mask", model=str(tmp_path / "mlm" / "best"))
    assert len(fill("the movie was [MASK]", top_k=3)) == 3
    adapted = load_file(tmp_path / "mlm" / "best" / "model.safetensors")
    base = load_file(tmp_path / "bert" / "model.safetensors")
    assert not torch.equal(adapted["bert.encoder.layer.0.attention.self.query.weight"],
                           base["encoder.layer.0.attention.self.query.weight"])
    # A classifier from the adapted encoder: its head is new, its encoder starts as the adapted one.
    labeled = tmp_path / "labeled.csv"
    pd.DataFrame(sentiment_rows(64)).to_csv(labeled, index=False)
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data
    from tunelab.modeling import load_model
    from tunelab.tasks import get_task

    data = load_task_data(DataSpec(source=str(labeled)))
    classifier = load_model(str(tmp_path / "mlm" / "best"), get_task("classification"), data)
    assert torch.equal(classifier.bert.encoder.layer[0].attention.self.query.weight,
                       adapted["bert.encoder.layer.0.attention.self.query.weight"])
    code, _, err = run_cli(["train", "--model", tmp_path / "mlm" / "best", "--data", labeled, "--output",
                            tmp_path / "cls", "--epochs", "1", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "cls" / "best" / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"]


def test_validation_blocks_are_masked_the_same_way_every_time(tiny_bert):
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    task, tokenizer = get_task("masked-lm"), tokenizer_of(tiny_bert)
    frame = pd.DataFrame({"text": [r["text"] for r in sentiment_rows(40)]})
    settings = Settings("masked-lm", max_length=16, info={"mlm_probability": 0.3})
    first, second = (task.encode(tokenizer, frame, settings, training=False) for _ in range(2))
    assert first.features["input_ids"] == second.features["input_ids"] and first.labels == second.labels
    targets = sum(t != -100 for row in first.labels for t in row)
    assert targets > 0


# ---------------------------------------------------------------- refusals, one line each


@pytest.mark.parametrize("row,expected", [
    ({"messages": [{"role": "bot", "content": "hi"}]},
     "error: {data} (train), row 3: unknown role 'bot'; roles are system, user, assistant, tool"),
    ({"messages": [{"role": "user", "content": "hi"}]},
     "error: {data} (train), row 3: no assistant turn, so nothing to learn from; add the answer as "
     '{{"role": "assistant", "content": ...}} or remove the row'),
])
def test_malformed_chat_rows_are_refused_with_their_row(row, expected, tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(2) + [row] + chat_rows(4))
    line = fails(["train", "--task", "causal-lm", "--model", tiny_llama, "--data", data, "--output", tmp_path / "r",
                  "--no-progress"], capsys)
    assert line == expected.format(data=data)


def test_chat_data_for_a_model_without_a_template_says_what_was_done(tmp_path, caplog):
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings

    tokenizer = tokenizer_of(build_tiny_gpt2(tmp_path / "gpt2"))
    frame = pd.DataFrame(chat_rows(2))
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        encoded = get_task("causal-lm").encode(tokenizer, frame, Settings("causal-lm", max_length=64,
                                                                          info={"format": "chat"}), training=True)
    assert [r.getMessage() for r in caplog.records] == [
        "the model has no chat template: each turn is written as a 'role: content' line and each answer ends with "
        "the end-of-text token <eos>; give a model with a chat template to train in its format"]
    answer = [t for t in encoded.labels[0] if t != -100]
    assert answer == tokenizer.convert_tokens_to_ids(["<unk>", "<eos>"])  # "positive<eos>" is one unknown word here


def test_text_that_is_empty_once_stripped_is_refused(tiny_llama, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\t\n", encoding="utf-8")
    line = fails(["train", "--task", "causal-lm", "--model", tiny_llama, "--data", empty, "--output", tmp_path / "r",
                  "--no-progress"], capsys)
    assert line == f"error: {empty} holds no text once blank lines and spaces are stripped; pass a file with text"


def test_block_size_beyond_the_context_is_refused(tiny_llama, tmp_path, capsys):
    text = tmp_path / "docs.txt"
    text.write_text("once upon a time\n\nthe movie was good\n\nvery dull\n", encoding="utf-8")
    line = fails(["train", "--task", "causal-lm", "--model", tiny_llama, "--data", text, "--block-size", "100",
                  "--output", tmp_path / "r", "--no-progress"], capsys)
    assert line == f"error: --block-size 100 is more than {tiny_llama} takes (64 positions); use --block-size 64 or less"


def test_a_language_model_option_on_a_classifier_is_refused(tiny_bert, sentiment_csv, tmp_path, capsys):
    line = fails(["train", "--model", tiny_bert, "--data", sentiment_csv, "--whole-word-mask", "--train-on-prompt",
                  "--output", tmp_path / "r", "--no-progress"], capsys)
    assert line == ("error: --train-on-prompt applies to causal-lm; --whole-word-mask applies to masked-lm: drop them "
                    "for classification")


# ---------------------------------------------------------------- evaluation by generated answers, resume


def test_eval_generate_scores_greedy_answers_and_keeps_samples(tiny_llama, tmp_path, caplog):
    from tunelab.train import TrainConfig, train

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(40))
    with caplog.at_level(logging.INFO, logger="tunelab"):
        result = train(TrainConfig(data=data, task="causal-lm", model=tiny_llama, output=str(tmp_path / "run"),
                                   epochs=2, batch_size=8, learning_rate=5e-3, eval_generate=4, metric="exact_match",
                                   progress=False))
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    evaluations = [r for r in result.history if "eval_loss" in r]
    assert [s["step"] for s in samples] == [e["step"] for e in evaluations for _ in range(4)]
    # Three of each evaluation's answers in the log, the prompt's last 80 characters first.
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sample at step")]
    expected = [f"sample at step {s['step']}: {s['prompt'][-80:]!r} -> {s['answer']!r} (reference {s['reference']!r})"
                for e in evaluations for s in [s for s in samples if s["step"] == e["step"]][:3]]
    assert logged == expected and len(expected) == 3 * len(evaluations)
    references = [row["messages"][-1]["content"] for row in chat_rows(40)]
    for evaluation in evaluations:
        mine = [s for s in samples if s["step"] == evaluation["step"]]
        assert all(s["reference"] in references for s in mine)
        assert evaluation["eval_exact_match"] == pytest.approx(sum(s["answer"] == s["reference"] for s in mine) / 4)
        assert evaluation["eval_token_f1"] == pytest.approx(sum(s["token_f1"] for s in mine) / 4)
    assert result.metric == "exact_match"


def test_token_f1_and_exact_match_normalize_case_and_punctuation():
    from tunelab.tasks.causal_lm import exact_match, normalize, token_f1

    assert normalize("  Positive! ") == normalize("positive") == "positive"
    assert exact_match("Positive.", "positive") == 1.0
    assert exact_match("", "negative") == exact_match("positive review", "positive") == 0.0
    assert token_f1("the film is good", "good film") == pytest.approx(2 * (2 / 4) * 1.0 / (2 / 4 + 1.0))
    assert token_f1("bad", "good") == 0.0 and token_f1("", "") == 1.0


def test_generation_metrics_need_chat_data_and_eval_generate(tiny_llama, tmp_path, capsys):
    text = tmp_path / "docs.txt"
    text.write_text("once upon a time\n\nthe movie was good\n\nvery dull\n", encoding="utf-8")
    line = fails(["train", "--task", "causal-lm", "--model", tiny_llama, "--data", text, "--eval-generate", "2",
                  "--output", tmp_path / "r", "--no-progress"], capsys)
    assert line == ("error: --eval-generate answers chat prompts, but the data is plain text; drop --eval-generate "
                    "(plain text is scored by perplexity)")
    chat = write_jsonl(tmp_path / "chat.jsonl", chat_rows(10))
    line = fails(["train", "--task", "causal-lm", "--model", tiny_llama, "--data", chat, "--metric", "exact_match",
                  "--output", tmp_path / "r", "--no-progress"], capsys)
    assert line == ("error: --metric exact_match is not reported for causal-lm without --eval-generate N (answers "
                    "generated for N validation prompts); use one of loss, perplexity")


def test_language_model_checkpoints_point_predict_elsewhere(lora_run, capsys):
    line = fails(["predict", lora_run.best_dir, "the movie"], capsys)
    assert line == ('error: this checkpoint is a causal-lm model, which tunelab predict, evaluate and serve do not '
                    'read; generate with it: tunelab generate CHECKPOINT "a prompt", or serve it: tunelab serve '
                    '--generator CHECKPOINT')
    code, out, err = run_cli(["generate", lora_run.best_dir, "the movie is it ?", "--greedy", "--max-new-tokens", "2"],
                             capsys)
    assert code == 0, err


def test_a_lora_run_resumed_mid_epoch_ends_with_the_same_weights(tiny_llama, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from tunelab.train import TrainConfig, resume_config, train

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(48))
    straight = tmp_path / "straight"
    train(TrainConfig(data=data, task="causal-lm", model=tiny_llama, lora=True, output=str(straight), epochs=2,
                      batch_size=8, learning_rate=5e-3, save_every=4, keep_states=5, progress=False))
    states = sorted(p.name for p in (straight / "state").glob("step-*"))
    assert states == ["step-00000004", "step-00000006", "step-00000008"]  # 6 steps an epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for name in states[:2]:  # as if killed after step 8: two batches into the second epoch, with its order
        shutil.rmtree(resumed / "state" / name)
    shutil.rmtree(resumed / "last")
    train(resume_config(resumed), resume=True)
    a = load_file(straight / "last" / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "last" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    merged_a, merged_b = (load_file(run / "last" / "model.safetensors") for run in (straight, resumed))
    for name in merged_a:
        torch.testing.assert_close(merged_a[name], merged_b[name], rtol=1e-5, atol=1e-6)


def test_eval_before_scores_the_pretrained_model_token_weighted(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunelab.train import TrainConfig, train

    text, validation = tmp_path / "docs.txt", tmp_path / "valid.txt"
    text.write_text("once upon a time the movie was good\n\nthe plot was dull and boring\n\nvery weak story\n" * 6)
    validation.write_text("the movie was good\n\nthe plot was very dull\n\nfine film once upon a time\n")
    result = train(TrainConfig(data=str(text), validation=str(validation), task="causal-lm", model=tiny_llama,
                               output=str(tmp_path / "run"), epochs=1, block_size=8, eval_before=True, progress=False))
    first = [r for r in result.history if "eval_loss" in r][0]
    assert first["step"] == 0
    # By hand: the validation stream in blocks of 8; each block predicts its next 7 tokens.
    tokenizer, model = tokenizer_of(tiny_llama), AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    stream = [t for doc in ("the movie was good", "the plot was very dull", "fine film once upon a time")
              for t in tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]]
    total, count = 0.0, 0
    for start in range(0, len(stream), 8):
        block = torch.tensor([stream[start:start + 8]])
        with torch.no_grad():
            loss = model(block, labels=block).loss
        total, count = total + float(loss) * (block.shape[1] - 1), count + block.shape[1] - 1
    assert first["eval_loss"] == pytest.approx(total / count, rel=1e-5)
    assert first["eval_perplexity"] == pytest.approx(float(torch.exp(torch.tensor(total / count))), rel=1e-5)


def test_language_models_evaluate_in_batches_whose_logits_fit_the_budget(tiny_llama, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from transformers import AutoConfig

    from tunelab.tasks import get_task, language
    from tunelab import collate
    from tunelab.train import TrainConfig, train

    # SmolLM2 (49,152 pieces) at 256 tokens: 10 rows make 480 MiB of logits; MiniLM's MLM head at 128: 34 rows.
    assert get_task("causal-lm").eval_batch_size(SimpleNamespace(vocab_size=49152), 256) == 10
    assert get_task("masked-lm").eval_batch_size(SimpleNamespace(vocab_size=30522), 128) == 34
    assert get_task("causal-lm").eval_batch_size(SimpleNamespace(vocab_size=40), 8) == 128  # never above 128
    assert get_task("classification").eval_batch_size(SimpleNamespace(vocab_size=49152), 256) == 128
    # A run uses it unless --eval-batch-size is given: here a budget of 3 rows of 8 tokens.
    vocab = AutoConfig.from_pretrained(tiny_llama).vocab_size
    monkeypatch.setattr(language, "LOGITS_BUDGET", 3 * 8 * vocab * 4)
    sizes, make_loader = [], collate.make_loader
    monkeypatch.setattr(collate, "make_loader", lambda encoded, size, *a, **k: sizes.append(size) or make_loader(
        encoded, size, *a, **k))
    text = tmp_path / "docs.txt"
    text.write_text("once upon a time the movie was good\n\nthe plot was dull and boring\n\nvery weak story\n" * 6)
    common = dict(data=str(text), task="causal-lm", model=tiny_llama, epochs=1, block_size=8, batch_size=2,
                  progress=False)
    train(TrainConfig(output=str(tmp_path / "run"), **common))
    train(TrainConfig(output=str(tmp_path / "given"), eval_batch_size=5, **common))
    assert sizes == [2, 3, 2, 5]


def test_a_run_counts_the_tokens_it_trained_on(tiny_llama, tmp_path, caplog):
    import logging

    from tunelab.data import DataSpec

    from tunelab.tasks import load_task_data
    from tunelab.tasks import get_task
    from tunelab.tasks.base import Settings
    from tunelab.train import TrainConfig, train

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(30))
    with caplog.at_level(logging.INFO):
        result = train(TrainConfig(data=data, task="causal-lm", model=tiny_llama, output=str(tmp_path / "run"),
                                   epochs=2, batch_size=4, progress=False))
    started = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training "))
    # a language model's output layer is pretrained: no head rate to print
    assert started.split(": ", 1)[1].startswith("learning rate 0.001 (default for hidden size 32), linear schedule")
    read = load_task_data(DataSpec(source=data, task="causal-lm"))
    encoded = get_task("causal-lm").encode(tokenizer_of(tiny_llama), read.train,
                                           Settings("causal-lm", max_length=128, info=read.info), training=True)
    assert result.rows_trained == 2 * len(encoded)
    assert result.tokens_trained == 2 * sum(encoded.lengths)  # packed batches: real tokens, no padding
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tokens_trained"] == result.tokens_trained and summary["tokens_per_second"] > 0


def test_a_bf16_run_checks_packing_in_fp32_and_packs(tiny_llama, tmp_path, monkeypatch):
    """Whether a model can take packed rows is checked in fp32 whatever the run computes in: bf16's rounding
    (up to 1% of SmolLM2's logits between batch shapes) failed the check, so bf16 runs fell back to grouped
    batches."""
    import yaml

    import tunelab.collate
    from tunelab.train import TrainConfig, train

    checked, original = [], tunelab.collate.packing_matches

    def spy(model, *args, **kwargs):  # the dtype the check's forward passes compute in
        hook = model.get_output_embeddings().register_forward_hook(lambda m, i, out: checked.append(out.dtype))
        try:
            return original(model, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(tunelab.collate, "packing_matches", spy)
    monkeypatch.setenv("TUNELAB_NATIVE_BF16", "1")
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(30))
    train(TrainConfig(data=data, task="causal-lm", model=tiny_llama, output=str(tmp_path / "run"), max_steps=2,
                      batch_size=4, progress=False))
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["resolved"]
    assert (resolved["precision"], resolved["batching"]) == ("bf16", "packed")
    assert checked == [torch.float32] * 2  # padded and packed, in fp32


def test_chat_rows_from_parquet_and_json_strings_read_as_from_jsonl(tmp_path):
    from tunelab.data import DataSpec
    from tunelab.tasks import load_task_data

    rows = chat_rows(12)
    jsonl = write_jsonl(tmp_path / "chat.jsonl", rows)
    pd.DataFrame(rows).to_parquet(tmp_path / "chat.parquet")
    pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in rows]}).to_csv(tmp_path / "chat.csv", index=False)
    frames = [load_task_data(DataSpec(source=str(path), seed=3)).train["messages"].tolist()
              for path in (jsonl, tmp_path / "chat.parquet", tmp_path / "chat.csv")]
    assert frames[0] == frames[1] == frames[2]
    assert all(isinstance(m, list) and isinstance(m[0], dict) for m in frames[1])


def test_a_lora_chat_run_trains_in_two_processes(tiny_llama, tmp_path):
    """`accelerate launch` (torchrun-style processes joined in a gloo group) runs a causal-LM LoRA run: each
    process takes every other batch, evaluations are written once, and best/ is the merged checkpoint."""
    import os
    import subprocess

    import yaml
    from transformers import pipeline

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(40))
    validation = write_jsonl(tmp_path / "valid.jsonl", chat_rows(8, seed=5))
    run = tmp_path / "ddp"
    command = launch_train() + ["--task", "causal-lm",
               "--model", tiny_llama, "--data", train_file, "--validation", validation, "--lora", "--epochs", "2",
               "--batch-size", "4", "--threads", "1", "--no-progress", "--output", str(run)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["resolved"]["num_processes"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_loss" in r]
    # 40 rows in batches of 4 are 10 batches an epoch, 5 for each process: evaluations at steps 5 and 10, once each.
    assert [r["step"] for r in evals] == [5, 10]
    assert (run / "best" / "adapter" / "adapter_config.json").exists()
    generator = pipeline("text-generation", model=str(run / "best"))
    assert generator("the movie", max_new_tokens=2, do_sample=False)[0]["generated_text"].startswith("the movie")


def test_a_sweep_over_a_chat_run_ranks_trials_by_the_lowest_loss(tiny_llama, tmp_path):
    import csv

    from tunelab.sweep import SweepConfig, run_sweep

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(24))
    base = {"data": data, "task": "causal-lm", "model": tiny_llama, "lora": True, "epochs": 1, "batch_size": 4,
            "progress": False}
    result = run_sweep(SweepConfig(base=base, study_dir=str(tmp_path / "study"),
                                   space={"learning_rate": [1e-6, 5e-3]}))
    with open(result.table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) == 2 and losses == sorted(losses) and rows[0]["rank"] == "1"  # "auto" minimizes the loss
    assert float(rows[0]["learning_rate"]) == 5e-3  # the rate that moves the adapters learns more in one epoch
