"""BENCHMARKS.md's tables, rendered from the result files the benchmarks write (bench/results/*.json).

    python -m bench tables            # rewrite every table block in BENCHMARKS.md
    python -m bench tables --check    # exit 1 when a block differs from what its result file renders

A block is the text between `<!-- bench: results/NAME.json -->` and `<!-- /bench -->`; it is replaced by the
command, commit, date and machine of that file and a table of its rows, with the columns below (one list
per benchmark, also what the benchmark prints). A block may name several files of one benchmark
(`<!-- bench: results/A.json results/B.json -->`, runs of candidate settings): each run's command is listed,
numbered, and one table holds every run's rows with its number, its `--set` options and its seed; where a
dataset ran with several seeds, a second table averages them. `results/A.json#sst2` takes only that dataset's
row of a file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = re.compile(r"(<!-- bench: (?P<file>[^>]+?) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)

# benchmark: (key, header, format) per column
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "train": [("variant", "variant", ""), ("samples_per_s", "samples/s", ".1f"), ("speedup", "vs Trainer", ".2f"),
              ("accuracy", "dev accuracy", ".4f"), ("train_s", "train s", ".0f"),
              ("model_gflops", "model GFLOP/s", ".1f"), ("mfu", "MFU", ".1%"), ("peak_rss_mb", "peak RSS MB", ".0f")],
    "ner": [("variant", "variant", ""), ("samples_per_s", "samples/s", ".1f"), ("speedup", "vs Trainer", ".2f"),
            ("f1", "entity F1", ".4f"), ("precision", "precision", ".4f"), ("recall", "recall", ".4f"),
            ("accuracy", "word accuracy", ".4f"), ("train_s", "train s", ".0f"), ("mfu", "MFU", ".1%"),
            ("peak_rss_mb", "peak RSS MB", ".0f")],
    "multilabel": [("variant", "variant", ""), ("samples_per_s", "samples/s", ".1f"),
                   ("speedup", "vs script default", ".2f"), ("speedup_dynamic", "vs dynamic padding", ".2f"),
                   ("micro_f1", "micro F1 @0.5", ".4f"), ("macro_f1", "macro F1 @0.5", ".4f"),
                   ("subset_accuracy", "subset acc @0.5", ".4f"), ("micro_f1_tuned", "micro F1 tuned", ".4f"),
                   ("macro_f1_tuned", "macro F1 tuned", ".4f"), ("train_s", "train s", ".0f"), ("mfu", "MFU", ".1%"),
                   ("peak_rss_mb", "peak RSS MB", ".0f")],
    "long-text": [("long_text", "--long-text", ""), ("accuracy", "accuracy", ".4f"), ("macro_f1", "macro F1", ".4f"),
                  ("rows_trained", "rows trained", "d"), ("train_s", "train s", ".0f"), ("wall_s", "wall s", ".0f")],
    "imbalance": [("class_weights", "--class-weights", ""), ("seed", "seed", ""), ("accuracy", "accuracy", ".4f"),
                  ("macro_f1", "macro F1", ".4f"), ("recall_negative", "recall 0", ".4f"),
                  ("recall_positive", "recall 1", ".4f")],
    "qa": [("variant", "variant", ""), ("questions", "questions", "d"), ("features", "features / epoch", "d"),
           ("epochs", "epochs", "d"), ("features_per_s", "features/s", ".1f"), ("speedup", "vs recipe", ".2f"),
           ("exact_match", "dev EM", ".2f"), ("f1", "dev F1", ".2f"), ("train_s", "train s", ".0f"),
           ("predict_s", "dev predict s", ".0f"), ("mfu", "MFU", ".1%"), ("peak_rss_mb", "peak RSS MB", ".0f")],
    "qa-no-answer": [("variant", "variant", ""), ("train_questions", "trained on", "d"),
                     ("unanswerable_trained", "of them unanswerable", "d"), ("scored", "scored", "d"),
                     ("f1", "F1", ".2f"), ("exact_match", "EM", ".2f"), ("has_answer_f1", "HasAns F1", ".2f"),
                     ("no_answer_f1", "NoAns F1", ".2f")],
    "mc": [("variant", "variant", ""), ("seed", "seed", ""), ("computed", "computes in", ""),
           ("rows", "training rows", "d"), ("epochs", "epochs", "d"), ("rows_per_s", "rows/s", ".1f"),
           ("speedup", "vs recipe", ".2f"), ("accuracy", "dev accuracy", ".4f"), ("accuracy_last", "tunelab last/", ".4f"),
           ("train_s", "train s", ".0f")],
    "mc-means": [("variant", "variant", ""), ("seeds", "seeds", "d"), ("rows_per_s", "rows/s (mean)", ".1f"),
                 ("speedup", "vs recipe (mean)", ".2f"), ("metric", "dev accuracy (mean)", ".4f"),
                 ("metric_sd", "seed-to-seed SD", ".4f"), ("metric_range", "min - max", "")],
    # four precision variants per seed (issue 31): speed in the task's unit (the file's `speed_unit`), quality
    # in its metric, MFU against the matmul peak of the precision the row computed in
    "precision": [("setting", "variant", ""), ("seed", "seed", ""), ("computed", "computes in", ""),
                  ("speed", "speed", ".1f"), ("vs_fp32_recipe", "vs fp32 recipe", ".2f"),
                  ("vs_bf16_recipe", "vs bf16 recipe", ".2f"), ("metric_name", "metric", ""),
                  ("metric", "value", ".4f"), ("train_s", "train s", ".0f"), ("mfu", "MFU", ".1%"),
                  ("peak_rss_mb", "peak RSS MB", ".0f")],
    "precision-means": [("setting", "variant", ""), ("seeds", "seeds", "d"), ("speed", "speed (mean)", ".1f"),
                        ("vs_fp32_recipe", "vs fp32 recipe (mean)", ".2f"),
                        ("vs_bf16_recipe", "vs bf16 recipe (mean)", ".2f"), ("metric_name", "metric", ""),
                        ("metric", "mean", ".4f"), ("metric_sd", "seed-to-seed SD", ".4f"),
                        ("metric_range", "min - max", "")],
    "profile": [("task", "task", ""), ("computed", "computes in", ""), ("batching", "batches", ""),
                ("batch_size", "batch", "d"), ("step_ms", "ms / step", ".0f"), ("matmul_share", "matmul", ".1%"),
                ("attention_share", "attention", ".1%"), ("dropout_share", "dropout", ".1%"),
                ("optimizer_share", "optimizer", ".1%"),
                ("casts_share", "casts, copies", ".1%"), ("other_share", "other", ".1%"),
                ("largest", "largest operators that are not matmuls (share of the step)", "")],
    "serve-drain": [("round", "round", "d"), ("signal_s", "SIGTERM at s", ".1f"),
                    ("before_sent", "sent before it", "d"), ("before_answered", "answered", "d"),
                    ("before_lost", "lost", "d"), ("after_answered", "after it: answered", "d"),
                    ("after_refused", "refused (503)", "d"), ("after_lost", "lost", "d"),
                    ("after_not_connected", "not connected", "d"), ("drain_s", "drain s", ".2f"),
                    ("exit_code", "exit code", "d")],
    "sft": [("variant", "variant", ""), ("tokens_per_s", "tokens/s", ".0f"), ("speedup", "vs TRL", ".2f"),
            ("exact_match_before", "exact match before", ".4f"), ("exact_match", "exact match after", ".4f"),
            ("train_s", "train s", ".0f"), ("mfu", "MFU", ".1%"), ("peak_rss_mb", "peak RSS MB", ".0f")],
    "dpo": [("variant", "variant", ""), ("learning_rate", "learning rate", "g"), ("tokens_per_s", "tokens/s", ".0f"),
            ("speedup", "vs TRL", ".2f"), ("reward_accuracy", "test reward accuracy", ".3f"),
            ("reward_margin", "test reward margin", ".3f"), ("exact_match_before", "exact match before", ".3f"),
            ("exact_match", "exact match after", ".3f"), ("train_s", "train s (reference pass included)", ".0f"),
            ("reference_s", "of it: reference pass s", ".0f"), ("peak_rss_mb", "peak RSS MB", ".0f")],
    "gguf": [("variant", "export", ""), ("prompts", "prompts", "d"), ("same_prompt_ids", "same prompt tokens", "d"),
             ("same_greedy", "same greedy answer", "d"), ("step_agreement", "same next token (teacher-forced)", ".2%"),
             ("max_logit_gap", "largest logit gap", ".4f"), ("relative_gap", "gap / largest logit", ".2%"),
             ("template_equal", "chat template equal", ""), ("size_mb", "file MB", ".0f"), ("export_s", "export s", ".1f"),
             ("llama_cpp_same_prompt_ids", "llama.cpp: same prompt tokens", "d"),
             ("llama_cpp_same_greedy", "llama.cpp: same greedy answer", "d")],
    "lm-adapt-cpt": [("model", "model", ""), ("training", "training", ""), ("reviews", "reviews", "d"),
                     ("perplexity_before", "validation perplexity before", ".2f"),
                     ("perplexity_after", "after", ".2f"), ("tokens_per_s", "tokens/s", ".0f"),
                     ("train_s", "train s", ".0f"), ("wall_s", "wall s", ".0f")],
    "lm-adapt-mlm": [("encoder", "encoder", ""), ("seed", "seed", "d"), ("accuracy", "accuracy", ".4f"),
                     ("macro_f1", "macro F1", ".4f"), ("wall_s", "wall s", ".0f"),
                     ("mlm_perplexity_before", "MLM perplexity before", ".2f"),
                     ("mlm_perplexity_after", "after", ".2f")],
    "predict": [("variant", "variant", ""), ("computed", "computes in", ""), ("samples_per_s", "samples/s", ".1f"), ("speedup", "vs pipeline", ".2f"),
                ("accuracy", "accuracy", ".4f"), ("accuracy_change", "vs fp32 (points)", "+.2f"),
                ("agreement", "same as tunelab fp32", ".1%"), ("model_gflops", "model GFLOP/s", ".1f"), ("mfu", "MFU", ".1%"),
                ("peak_rss_mb", "peak RSS MB", ".0f")],
    "serve": [("mode", "mode", ""), ("sent", "sent", "d"), ("received", "received", "d"), ("errors", "errors", "d"),
              ("requests_per_s", "requests/s", ".1f"), ("speedup", "vs batch 1", ".2f"), ("p50_ms", "p50 ms", ".0f"),
              ("p95_ms", "p95 ms", ".0f"), ("p99_ms", "p99 ms", ".0f"), ("mean_batch", "mean batch", ".1f")],
    "generate": [("decoding", "decoding", ""), ("new_tokens", "new tokens", "d"), ("seconds", "seconds", ".1f"),
                 ("tokens_per_s", "tokens/s", ".1f")],
    "clip": [("variant", "variant", ""), ("ms", "ms per step (median)", ".1f"), ("ratio", "vs no clipping", ".2f")],
    "defaults": [("dataset", "dataset", ""), ("task", "task", ""), ("rows", "train / validation rows", ""),
                 ("metric", "metric", ""), ("trainer", "Trainer recipe", ".4f"),
                 ("tunelab_last", "tunelab defaults (last eval)", ".4f"), ("tunelab_best", "tunelab best/", ".4f"),
                 ("trainer_s", "Trainer wall s", ".0f"), ("tunelab_s", "tunelab wall s", ".0f"),
                 ("wins", "better and no slower", "")],
    # several `bench defaults` runs of one dataset, each with other --set options (candidate defaults)
    "candidates": [("run", "run", ""), ("options", "tunelab options (--set)", ""), ("seed", "seed", ""),
                   ("dataset", "dataset", ""), ("trainer", "Trainer recipe", ".4f"),
                   ("tunelab_last", "tunelab (last eval)", ".4f"), ("tunelab_best", "tunelab best/", ".4f"),
                   ("trainer_s", "Trainer wall s", ".0f"), ("tunelab_s", "tunelab wall s", ".0f")],
    # the same runs averaged over their seeds (single seeds differ by as much as the settings): the recipe's
    # runs, and each set of tunelab options
    "means": [("side", "side", ""), ("dataset", "dataset", ""), ("seeds", "seeds", ""),
              ("last", "last eval (mean)", ".4f"), ("best", "tunelab best/ (mean)", ".4f")],
}


# What a row that does not say it means: a row computes in fp32 unless it says (as common.run_variants reads it)
UNSAID = {"computed": "fp32"}
# Benchmarks run over several seeds: the key naming a row's variant, the figures averaged per variant, the metric
# whose seed-to-seed spread is shown.
SPREAD = {"precision": ("setting", ("speed", "vs_fp32_recipe", "vs_bf16_recipe"), "metric"),
          "mc": ("variant", ("rows_per_s", "speedup"), "accuracy")}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table of `rows`; numbers formatted per column, missing values blank."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        row = {**UNSAID, **row}
        cells = [format(row[k], f) if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                 else "" if row.get(k) is None else str(row[k]) for k, _, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_table(name: str, rows: list[dict]) -> None:
    print(table(rows, COLUMNS[name]))


def provenance(record: dict) -> str:
    """The command, commit, date and machine of one result file."""
    machine = record.get("machine") or {}
    where = (f"{machine.get('cores')} cores, {machine.get('cpu')} ({', '.join(machine.get('flags', []))}), torch "
             f"{machine.get('torch')}, {machine.get('threads')} threads") if machine else "machine not recorded"
    return (f"`{record.get('command', 'command not recorded')}`  \n"
            f"commit {record.get('commit', '?')}, {record.get('date', 'date not recorded')}; {where}")


def render(record: dict) -> str:
    """The block for one result file: where the figures come from, then the table (and, for a precision
    benchmark over several seeds, each variant's means and spread)."""
    body = f"{provenance(record)}\n\n{table(record['rows'], COLUMNS[record['benchmark']])}\n"
    if record["benchmark"] == "precision":
        peaks = record.get("peaks_gflops") or {}
        body += (f"\nspeed: {record.get('speed_unit', '?')}; matmul peaks: "
                 + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()) + "\n")
    spread = SPREAD.get(record["benchmark"])
    if spread:
        means = variant_means(record["rows"], *spread)
        if any(m["seeds"] > 1 for m in means):
            body += f"\n{table(means, COLUMNS[record['benchmark'] + '-means'])}\n"
    return body


def variant_means(rows: list[dict], variant: str, averaged: tuple[str, ...], metric: str) -> list[dict]:
    """Each variant of a benchmark over its seeds: the mean of each `averaged` figure, the `metric`'s mean, sample
    standard deviation and range."""
    import statistics

    means = []
    for name in dict.fromkeys(r[variant] for r in rows):
        runs = [r for r in rows if r[variant] == name]
        values = [r[metric] for r in runs if r.get(metric) is not None]
        means.append({variant: name, "seeds": len(runs), "metric_name": runs[0].get("metric_name"),
                      **{k: statistics.fmean(r[k] for r in runs) for k in averaged},
                      "metric": statistics.fmean(values) if values else None,
                      "metric_sd": statistics.stdev(values) if len(values) > 1 else None,
                      "metric_range": f"{min(values):.4f} - {max(values):.4f}" if values else ""})
    return means


def set_options(command: str, commit: str = "?") -> str:
    """The `--set NAME=VALUE` options of a command line, as given; with none, the defaults of the commit that ran
    (defaults change between commits)."""
    words = command.split()
    found = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]
    found += [w.removeprefix("--set=") for w in words if w.startswith("--set=")]
    return " ".join(found) or f"defaults of {commit.split()[0]}"


def render_runs(records: list[dict]) -> str:
    """One block for several runs of candidate settings: their provenance, numbered, then one table."""
    heads = "\n".join(f"{i}. {provenance(r)}" for i, r in enumerate(records, 1))
    rows = [{**row, "run": i, "options": set_options(r.get("command", ""), r.get("commit", "?")), "seed": r.get("seed")}
            for i, r in enumerate(records, 1) for row in r["rows"]]
    body = f"{heads}\n\n{table(rows, COLUMNS['candidates'])}\n"
    means = seed_means(rows)
    return body + f"\n{table(means, COLUMNS['means'])}\n" if means else body


def seed_means(rows: list[dict]) -> list[dict]:
    """Per dataset, the recipe's figure and each tunelab option set's averaged over their seeds, where there are
    two or more (the recipe does not change with tunelab's options: each run that trained it counts, and a figure
    taken from another result with `--trainer-from` does not count again)."""
    groups: dict[tuple, list[tuple]] = {}
    for row in rows:
        if row.get("trainer") is not None and not row.get("trainer_from"):  # a figure taken over is no new run
            groups.setdefault(("Trainer recipe", row["dataset"]), []).append((row["seed"], row["trainer"], None))
        if row.get("tunelab_last") is not None:
            groups.setdefault((f"tunelab, {row['options']}", row["dataset"]), []).append(
                (row["seed"], row["tunelab_last"], row.get("tunelab_best")))
    means = []
    for (side, dataset), runs in groups.items():
        if len({seed for seed, *_ in runs}) < 2:
            continue
        best = [b for *_, b in runs if b is not None]
        means.append({"side": side, "dataset": dataset, "seeds": " ".join(str(seed) for seed, *_ in runs),
                      "last": sum(v for _, v, _ in runs) / len(runs), "best": sum(best) / len(best) if best else None})
    return means


def load(name: str) -> dict:
    """A result file; `FILE#DATASET` keeps only that dataset's row."""
    file, _, dataset = name.partition("#")
    record = json.loads((HERE / file).read_text(encoding="utf-8"))
    if dataset:
        record["rows"] = [row for row in record["rows"] if row.get("dataset") == dataset]
    return record


def update(markdown: Path, check: bool = False) -> int:
    """Rewrite (or with `check`, compare) every block of `markdown`; the number of blocks that changed."""
    text = markdown.read_text(encoding="utf-8")
    changed = 0

    def replace(match: re.Match) -> str:
        nonlocal changed
        records = [load(name) for name in match["file"].split()]
        body = render(records[0]) if len(records) == 1 else render_runs(records)
        changed += body != match["body"]
        return match.group(1) + body + match.group(4)

    new = BLOCK.sub(replace, text)
    if not check and new != text:
        markdown.write_text(new, encoding="utf-8")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(HERE.parent / "BENCHMARKS.md"))
    parser.add_argument("--check", action="store_true", help="only say whether the tables are current")
    args = parser.parse_args()
    changed = update(Path(args.file), check=args.check)
    blocks = len(BLOCK.findall(Path(args.file).read_text(encoding="utf-8")))
    print(f"{blocks} tables, {changed} {'out of date' if args.check else 'rewritten'}")
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
