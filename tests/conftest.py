"""Shared fixtures: tiny random models saved with save_pretrained, small data files."""

from __future__ import annotations

import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"  # a hub id would otherwise hang before failing
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# --precision auto is fp32 in tests on every CPU (bf16 where the CPU has it would change every low digit):
# the tests of the bf16 path set it themselves.
os.environ["TUNELAB_NATIVE_BF16"] = "0"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # a tiny model's step is 20-90x slower on two threads

# CI sets TUNELAB_STRICT_SKIPS=1: a skipped test fails the run unless its reason is in allowed_skips.txt
# (a failed apt-get of chromium or openmpi must not turn their tests into silent skips).
ALLOWED_SKIPS = os.path.join(os.path.dirname(__file__), "allowed_skips.txt")
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("TUNELAB_STRICT_SKIPS") != "1":
        return
    with open(ALLOWED_SKIPS, encoding="utf-8") as handle:
        allowed = {line.strip() for line in handle if line.strip() and not line.startswith("#")}
    refused = [(node, reason) for node, reason in _skipped if reason not in allowed]
    if refused:
        for node, reason in refused:
            print(f"\nskipped without an allowed reason: {node}: {reason}")
        print(f"\n{len(refused)} test(s) skipped without an allowed reason (tests/allowed_skips.txt); "
              "install what they need or add the reason to the list")
        session.exitstatus = 1


def free_port() -> int:
    """A TCP port nothing listens on now (tests run in parallel workers: never a fixed port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_train(*launcher: str) -> list[str]:
    """`accelerate launch` of two processes running `tunelab train` (its options follow), each launch on its
    own free port so that launches in parallel test workers do not meet. `launcher`: how the processes start
    (default torchrun-style processes joined in a gloo group)."""
    import sys
    from pathlib import Path

    accelerate = Path(sys.executable).with_name("accelerate")
    return [str(accelerate), "launch", "--num_processes", "2", "--num_machines", "1", "--main_process_port",
            str(free_port()), *(launcher or ("--multi_gpu",)), "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", "tunelab.cli", "train"]


POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "very", "film", "really", "story"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """Synthetic sentiment: the label is which word list the sentence draws from."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, rng.randint(2, 6)) + rng.sample(POSITIVE if i % 2 == 0 else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """Synthetic paraphrase pairs: label 1 when both sentences share the sentiment word list."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = rng.choice([POSITIVE, NEGATIVE])
        same = i % 2 == 0
        b = a if same else (NEGATIVE if a is POSITIVE else POSITIVE)
        rows.append({
            "sentence1": " ".join(rng.sample(FILLER, 3) + rng.sample(a, 2)),
            "sentence2": " ".join(rng.sample(FILLER, 3) + rng.sample(b, 2)),
            "label": int(same),
        })
    return rows


def build_tiny_bert(path, num_labels: int | None = None):
    """A 2-layer BERT with hidden size 32 and a word-level vocab, saved like any checkpoint."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + POSITIVE + NEGATIVE + FILLER)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 64
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_gpt2(path, chat_template: str | None = None):
    """A 2-layer GPT-2 (hidden 32) with a word-level tokenizer, saved like any checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>"] + POSITIVE + NEGATIVE + FILLER + ["once", "upon", "time", "user", "assistant", ":"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>",
                                        pad_token="<eos>")
    if chat_template:
        tokenizer.chat_template = chat_template
    config = GPT2Config(vocab_size=len(words), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                        bos_token_id=1, eos_token_id=1)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    return str(build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2")))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture
def sentiment_csv(tmp_path):
    path = tmp_path / "sentiment.csv"
    pd.DataFrame(sentiment_rows(120)).to_csv(path, index=False)
    return path


@pytest.fixture
def pairs_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    frame = pd.DataFrame(pair_rows(120))
    lines = ["sentence1\tsentence2\tlabel"] + [f"{r.sentence1}\t{r.sentence2}\t{r.label}" for r in frame.itertuples()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_bert):
    """One short training run shared by the prediction and evaluation tests."""
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("trained")
    data = folder / "train.csv"
    pd.DataFrame(sentiment_rows(320, seed=1)).to_csv(data, index=False)
    config = TrainConfig(data=str(data), model=tiny_bert, output=str(folder / "run"), epochs=4,
                         batch_size=16, learning_rate=3e-3, progress=False, logging_steps=5, warmup_ratio=0.0)
    return train(config)


def fails(args, capsys) -> str:
    """Run the CLI expecting a refusal: exit 1, no traceback, one `error:` line, which is returned."""
    code, out, err = run_cli([str(a) for a in args], capsys)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the tunelab CLI in-process; return (exit code, stdout, stderr)."""
    from tunelab.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- token classification

PEOPLE = ["alice", "bob", "carol", "dave"]
PLACES = ["paris", "london", "berlin", "washington"]  # "washington" has no word of its own: wash ##ing ##ton
FIRMS = ["acme", "globex"]
NER_FILLER = ["visited", "with", "and", "met", "in", "works", "at", "today", "the", "new", "york"]


def build_tiny_ner_bert(path):
    """A 2-layer BERT (no head) with a WordPiece vocab for the entity sentences, saved like any checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = SPECIAL + PEOPLE + PLACES[:3] + FIRMS + NER_FILLER + ["wash", "##ing", "##ton", ".", ","]
    vocab = {token: i for i, token in enumerate(words)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 64
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences of (word, IOB2 tag): people, places (one of two words: "new york") and firms."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        person, other = rng.sample(PEOPLE, 2)
        place = rng.choice(PLACES + ["new york"])
        firm = rng.choice(FIRMS)
        words = [(person, "B-PER"), ("visited", "O")]
        words += [(w, ("B-LOC" if i == 0 else "I-LOC")) for i, w in enumerate(place.split())]
        if rng.random() < 0.5:
            words += [("with", "O"), (other, "B-PER")]
        words += [("and", "O"), ("works", "O"), ("at", "O"), (firm, "B-ORG"), (".", "O")]
        out.append(words)
    return out


def iob1(tags: list[str]) -> list[str]:
    """IOB2 tags as CoNLL-2003 writes them: I- everywhere, B- only where two entities of a type touch."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") and not (i and tags[i - 1] != "O" and tags[i - 1][2:] == tag[2:]):
            tag = "I-" + tag[2:]
        out.append(tag)
    return out


def write_conll(path, sentences, scheme=iob1) -> None:
    """A CoNLL-2003 style file: word POS chunk NER, -DOCSTART- first, blank lines between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words in sentences:
        tags = scheme([t for _, t in words])
        lines += [f"{w} NN I-NP {t}" for (w, _), t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_ner_bert(tmp_path_factory):
    return str(build_tiny_ner_bert(tmp_path_factory.mktemp("tiny-ner-bert")))


@pytest.fixture(scope="session")
def ner_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    write_conll(folder / "train.conll", ner_sentences(240, seed=1))
    write_conll(folder / "valid.conll", ner_sentences(40, seed=2))
    return folder / "train.conll", folder / "valid.conll"


@pytest.fixture(scope="session")
def ner_run(ner_files, tiny_ner_bert, tmp_path_factory):
    """One token-classification run on IOB1 CoNLL files, shared by the NER tests."""
    from tunelab.train import TrainConfig, train

    train_file, valid_file = ner_files
    config = TrainConfig(data=str(train_file), validation=str(valid_file), model=tiny_ner_bert,
                         output=str(tmp_path_factory.mktemp("ner-run") / "run"), epochs=6, batch_size=16,
                         learning_rate=5e-3, progress=False, logging_steps=5, warmup_ratio=0.0, max_length=24)
    return train(config)
