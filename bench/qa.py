"""Extractive question answering (SQuAD): tunelab against the transformers `run_qa.py` recipe, side by side.

    python -m bench qa squad --rows 2000            # must-show 1: speed and EM / F1 on all of dev.json
    python -m bench qa no-answer --rows 2000        # must-show 2: unanswerable questions (SQuAD v2.0 part)

`squad`: both sides read the same seeded sample of `train.json` questions (whole questions, their
paragraphs and articles as they are). The recipe is run_qa.py as users copy it: `prepare_train_features`
(question first, `only_second` truncation, max length 384, stride 128, padded to the max length as its
`pad_to_max_length` default says, the answer's first and last piece or the first token where the window does
not hold it), `Trainer` with learning rate 3e-5, batch 12, two epochs and its other defaults, then
`prepare_validation_features` and `postprocess_qa_predictions` (20 best starts and ends, answers of at most
30 pieces). tunelab gets the sample file and nothing else: `tunelab train --data sample.json` (its defaults;
it holds back a tenth of the sample, by article, to pick best/), then `tunelab predict best/ --input
dev.json`. Both sides' answers to every question of `dev.json` are scored by one function here, the official
SQuAD v1.1 evaluation (normalized exact match and token F1, the best over the references).

`no-answer`: tunelab trains on the sample plus one unanswerable question for every two: a sampled question
paired with another paragraph of its article that does not hold its answer. `dev-v2-part.json` is split by
article: half tunes the no-answer threshold (tunelab's --validation), half is scored: HasAns, NoAns and overall
F1 with the stored threshold, against the same checkpoint answering every question (--null-threshold 1e9).
Each side runs in its own process (for its own peak RSS).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import add_child_options, ran_as_child, commit_label, forward_flops, matmul_peaks, peak_rss_mb, run_variants, \
    tunelab_output, write_result  # noqa: E402
from tables import print_table  # noqa: E402

RECIPE = dict(learning_rate=3e-5, batch_size=12, epochs=2, max_length=384, stride=128, n_best=20, max_answer_length=30)


# ---------------------------------------------------------------- the official SQuAD v1.1 / v2.0 scoring


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def f1(prediction: str, truth: str) -> float:
    got, want = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not got or not want:  # evaluate-v2.0.py: an empty answer matches only an empty reference
        return float(got == want)
    common = sum((collections.Counter(got) & collections.Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def score(predictions: dict[str, str], questions: list[dict]) -> dict:
    """Exact match and F1 (0-100) over `questions` (id, answers), the best over each question's references;
    with unanswerable questions (no reference) also HasAns and NoAns."""
    exact, f1s, kinds = [], [], []
    for q in questions:
        references = [a["text"] for a in q["answers"]] or [""]
        got = predictions.get(q["id"], "")
        exact.append(max(float(normalize_answer(got) == normalize_answer(r)) for r in references))
        f1s.append(max(f1(got, r) for r in references))
        kinds.append(bool(q["answers"]))
    out = {"exact_match": 100 * sum(exact) / len(exact), "f1": 100 * sum(f1s) / len(f1s), "scored": len(exact)}
    for name, keep in (("has_answer", True), ("no_answer", False)):
        chosen = [i for i, k in enumerate(kinds) if k == keep]
        if chosen and not all(kinds):
            out[f"{name}_exact_match"] = 100 * sum(exact[i] for i in chosen) / len(chosen)
            out[f"{name}_f1"] = 100 * sum(f1s[i] for i in chosen) / len(chosen)
    return out


# ---------------------------------------------------------------- data


def questions_of(squad: dict) -> list[dict]:
    return [{"id": qa["id"], "title": article["title"], "context": p["context"], "question": qa["question"],
             "answers": [] if qa.get("is_impossible") else qa["answers"]}
            for article in squad["data"] for p in article["paragraphs"] for qa in p["qas"]]


def as_squad(rows: list[dict], version: str = "1.1") -> dict:
    """Questions back in the official layout (articles, paragraphs in first-seen order)."""
    articles: dict[str, dict[str, list]] = {}
    for row in rows:
        paragraphs = articles.setdefault(row["title"], {})
        qa = {"id": row["id"], "question": row["question"], "answers": row["answers"]}
        if version != "1.1":
            qa["is_impossible"] = not row["answers"]
        paragraphs.setdefault(row["context"], []).append(qa)
    return {"version": version, "data": [{"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in ps.items()]}
                                         for t, ps in articles.items()]}


def sample(path: str, rows: int, seed: int) -> list[dict]:
    questions = questions_of(json.loads(Path(path).read_text(encoding="utf-8")))
    return random.Random(seed).sample(questions, rows)


def unanswerable(chosen: list[dict], path: str, share: float, seed: int) -> list[dict]:
    """For `share` of the chosen questions, the question paired with another paragraph of its article that does
    not hold its answer: answers []."""
    by_title = collections.defaultdict(set)
    for q in questions_of(json.loads(Path(path).read_text(encoding="utf-8"))):
        by_title[q["title"]].add(q["context"])
    rng = random.Random(seed + 1)
    out = []
    for q in rng.sample(chosen, int(len(chosen) * share)):
        others = sorted(c for c in by_title[q["title"]] if c != q["context"]
                        and not any(a["text"] in c for a in q["answers"]))
        if others:
            out.append({**q, "id": q["id"] + "-none", "context": rng.choice(others), "answers": []})
    return out


# ---------------------------------------------------------------- the recipe (run_qa.py)


def run_recipe(args) -> dict:
    """run_qa.py's preprocessing and post-processing around Trainer, as users copy them."""
    import datasets
    import numpy as np
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments, \
        default_data_collator

    from tunelab.modeling import bundled_model_dir

    train_rows = json.loads(Path(args.sample).read_text())
    dev = questions_of(json.loads(Path(args.dev).read_text()))
    path = str(bundled_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    pad_on_right = tokenizer.padding_side == "right"

    def windows(examples):
        examples["question"] = [q.lstrip() for q in examples["question"]]
        return tokenizer(examples["question" if pad_on_right else "context"],
                         examples["context" if pad_on_right else "question"],
                         truncation="only_second" if pad_on_right else "only_first",
                         max_length=RECIPE["max_length"], stride=RECIPE["stride"], return_overflowing_tokens=True,
                         return_offsets_mapping=True, padding="max_length")

    def prepare_train_features(examples):
        tokenized = windows(examples)
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        offset_mapping = tokenized.pop("offset_mapping")
        tokenized["start_positions"], tokenized["end_positions"] = [], []
        for i, offsets in enumerate(offset_mapping):
            input_ids = tokenized["input_ids"][i]
            cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
            sequence_ids = tokenized.sequence_ids(i)
            answers = examples["answers"][sample_mapping[i]]
            if len(answers["answer_start"]) == 0:
                tokenized["start_positions"].append(cls_index)
                tokenized["end_positions"].append(cls_index)
                continue
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start_index = 0
            while sequence_ids[token_start_index] != (1 if pad_on_right else 0):
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != (1 if pad_on_right else 0):
                token_end_index -= 1
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                tokenized["start_positions"].append(cls_index)
                tokenized["end_positions"].append(cls_index)
            else:
                while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                    token_start_index += 1
                tokenized["start_positions"].append(token_start_index - 1)
                while offsets[token_end_index][1] >= end_char:
                    token_end_index -= 1
                tokenized["end_positions"].append(token_end_index + 1)
        return tokenized

    def prepare_validation_features(examples):
        tokenized = windows(examples)
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        tokenized["example_id"] = []
        for i in range(len(tokenized["input_ids"])):
            sequence_ids = tokenized.sequence_ids(i)
            context_index = 1 if pad_on_right else 0
            tokenized["example_id"].append(examples["id"][sample_mapping[i]])
            tokenized["offset_mapping"][i] = [o if sequence_ids[k] == context_index else None
                                              for k, o in enumerate(tokenized["offset_mapping"][i])]
        return tokenized

    def hub_rows(rows):
        return datasets.Dataset.from_list([{"id": r["id"], "context": r["context"], "question": r["question"],
                                            "answers": {"text": [a["text"] for a in r["answers"]],
                                                        "answer_start": [a["answer_start"] for a in r["answers"]]}}
                                           for r in rows])

    train = hub_rows(questions_of(train_rows))
    train_features = train.map(prepare_train_features, batched=True, remove_columns=train.column_names)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=RECIPE["batch_size"], per_device_eval_batch_size=12,
        learning_rate=RECIPE["learning_rate"], num_train_epochs=RECIPE["epochs"], seed=args.seed, eval_strategy="no",
        save_strategy="no", report_to="none", logging_steps=50, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_features,
                      data_collator=default_data_collator, processing_class=tokenizer)
    started = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - started

    examples = hub_rows(dev)
    features = examples.map(prepare_validation_features, batched=True, remove_columns=examples.column_names)
    started = time.perf_counter()
    # The Trainer drops columns the model does not take (example_id, offset_mapping): predict without them.
    predictions = trainer.predict(features.remove_columns(["example_id", "offset_mapping"]))
    answers = postprocess_qa_predictions(examples, features, predictions.predictions)
    predict_seconds = time.perf_counter() - started
    lengths = [len(ids) for ids in train_features["input_ids"]]
    return {"variant": "Trainer + run_qa.py (padded to 384)", "questions": len(train), "features": len(lengths),
            "epochs": RECIPE["epochs"], "train_s": train_seconds, "features_per_s": len(lengths) * RECIPE["epochs"] /
            train_seconds, "reported_features_per_s": output.metrics.get("train_samples_per_second"),
            "tokens_computed": sum(lengths) * RECIPE["epochs"], "predict_s": predict_seconds,
            "model_gflops": 3 * forward_flops(model.config, lengths) * RECIPE["epochs"] / train_seconds / 1e9,
            **score(answers, dev), "peak_rss_mb": peak_rss_mb()}


def postprocess_qa_predictions(examples, features, predictions) -> dict[str, str]:
    """utils_qa.py's postprocess_qa_predictions, version_2_with_negative=False."""
    import numpy as np

    all_start_logits, all_end_logits = predictions
    example_id_to_index = {k: i for i, k in enumerate(examples["id"])}
    features_per_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        features_per_example[example_id_to_index[feature["example_id"]]].append(i)
    out = {}
    for example_index, example in enumerate(examples):
        prelim = []
        for feature_index in features_per_example[example_index]:
            start_logits, end_logits = all_start_logits[feature_index], all_end_logits[feature_index]
            offset_mapping = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logits)[-1:-RECIPE["n_best"] - 1:-1].tolist()
            end_indexes = np.argsort(end_logits)[-1:-RECIPE["n_best"] - 1:-1].tolist()
            for s in start_indexes:
                for e in end_indexes:
                    if (s >= len(offset_mapping) or e >= len(offset_mapping) or offset_mapping[s] is None
                            or len(offset_mapping[s]) < 2 or offset_mapping[e] is None or len(offset_mapping[e]) < 2):
                        continue
                    if e < s or e - s + 1 > RECIPE["max_answer_length"]:
                        continue
                    prelim.append({"offsets": (offset_mapping[s][0], offset_mapping[e][1]),
                                   "score": start_logits[s] + end_logits[e]})
        best = sorted(prelim, key=lambda x: x["score"], reverse=True)[:RECIPE["n_best"]]
        context = example["context"]
        out[example["id"]] = context[best[0]["offsets"][0]:best[0]["offsets"][1]] if best else "empty"
    return out


# ---------------------------------------------------------------- tunelab, as users run it


def answers_of(checkpoint: Path, path: str, *extra: str) -> tuple[dict[str, str], float]:
    """tunelab predict's answer to every question of a SQuAD file (in file order), by id; and its wall time."""
    seconds, out = tunelab_output("predict", str(checkpoint), "--input", path, "-f", "jsonl", "--no-progress", *extra)
    ids = [q["id"] for q in questions_of(json.loads(Path(path).read_text()))]
    rows = [json.loads(line) for line in out.splitlines()]
    return {i: r["answer"] for i, r in zip(ids, rows)}, seconds


def run_tunelab(args) -> dict:
    import resource

    import yaml
    from transformers import AutoConfig

    from tunelab.modeling import bundled_model_dir

    run = Path(tempfile.mkdtemp()) / "run"
    wall, _ = tunelab_output("train", "--data", args.sample, "--output", str(run), "--no-progress")
    summary = json.loads((run / "summary.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    dev = questions_of(json.loads(Path(args.dev).read_text()))
    answers, predict_seconds = answers_of(run / "best", args.dev)
    train_seconds = summary["rows_trained"] / summary["samples_per_second"]  # evaluations excluded
    model = AutoConfig.from_pretrained(bundled_model_dir())
    flops = tokens_flops(model, summary["tokens_trained"], summary["rows_trained"])
    return {"variant": "tunelab train --data SAMPLE (its defaults)", "computed": config["resolved"]["precision"],
            "questions": config["resolved"]["train_rows"],
            "features": summary["rows_trained"] // config["epochs"], "epochs": config["epochs"],
            "train_s": train_seconds, "features_per_s": summary["samples_per_second"],
            "reported_features_per_s": summary["samples_per_second"], "tokens_computed": summary["tokens_trained"],
            "predict_s": predict_seconds, "wall_s": wall, "model_gflops": flops / train_seconds / 1e9,
            **score(answers, dev),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def tokens_flops(config, tokens: int, rows: int) -> float:
    """Training FLOPs (3x forward) of `tokens` tokens in `rows` rows, attention counted at the mean row length."""
    mean = tokens / max(rows, 1)
    return 3 * forward_flops(config, [mean]) * rows


# ---------------------------------------------------------------- no-answer


def run_no_answer(args, folder: Path) -> list[dict]:
    chosen = sample(args.train, args.rows, args.seed)
    rows = chosen + unanswerable(chosen, args.train, 0.5, args.seed)
    train_path = folder / "train-with-unanswerable.json"
    train_path.write_text(json.dumps(as_squad(rows, "v2.0")))
    part = json.loads(Path(args.v2).read_text())
    titles = sorted(a["title"] for a in part["data"])
    tune = set(random.Random(args.seed).sample(titles, len(titles) // 2))
    tune_path, score_path = folder / "v2-tune.json", folder / "v2-score.json"
    tune_path.write_text(json.dumps({"version": "v2.0", "data": [a for a in part["data"] if a["title"] in tune]}))
    score_path.write_text(json.dumps({"version": "v2.0", "data": [a for a in part["data"] if a["title"] not in tune]}))
    run = folder / "run"
    wall, _ = tunelab_output("train", "--data", str(train_path), "--validation", str(tune_path), "--output", str(run),
                      "--no-progress")
    questions = questions_of(json.loads(score_path.read_text()))
    threshold = json.loads((run / "best" / "config.json").read_text()).get("qa_null_threshold")
    out = []
    for name, extra in ((f"tunelab, tuned threshold ({threshold:.3f})", ()),
                        ("the same checkpoint answering every question", ("--null-threshold", "1e9"))):
        answers, _ = answers_of(run / "best", str(score_path), *extra)
        out.append({"variant": name, "train_questions": len(rows), "unanswerable_trained": len(rows) - len(chosen),
                    "scored": len(questions), "train_wall_s": wall, **score(answers, questions)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["squad", "no-answer"])
    parser.add_argument("--train", default="../shared/data/squad/train.json")
    parser.add_argument("--dev", default="../shared/data/squad/dev.json")
    parser.add_argument("--v2", default="../shared/data/squad/dev-v2-part.json")
    parser.add_argument("--rows", type=int, default=2000, help="questions sampled from the training file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample", help="(set by the parent: the sampled questions as a SQuAD file)")
    add_child_options(parser, ("recipe", "tunelab"), "qa or qa-no-answer")
    args = parser.parse_args()
    if ran_as_child(args, {"recipe": run_recipe, "tunelab": run_tunelab}):
        return
    import torch

    folder = Path(tempfile.mkdtemp(prefix="bench-qa-"))
    commit = commit_label()
    if args.mode == "no-answer":
        rows = run_no_answer(args, folder)
        print(f"commit {commit}, threads {torch.get_num_threads()}")
        print_table("qa-no-answer", rows)
        print("results:", write_result("qa-no-answer", rows, args.out))
        return
    peaks = matmul_peaks()
    peak = peaks["fp32"]
    sample_path = folder / "sample.json"
    sample_path.write_text(json.dumps(as_squad(sample(args.train, args.rows, args.seed))))
    passed = ["squad", "--dev", args.dev, "--seed", str(args.seed), "--sample", str(sample_path)]
    rows = run_variants(__file__, passed, ("recipe", "tunelab"), "features_per_s", peaks)
    print(f"commit {commit}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"{args.rows} questions sampled from {args.train}, scored on every question of {args.dev}")
    print_table("qa", rows)
    print("results:", write_result("qa", rows, args.out, peaks_gflops=peaks, questions=args.rows))


if __name__ == "__main__":
    main()
