"""BENCHMARKS.md's table blocks are rendered from the benchmarks' result files, never typed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_a_table_block_is_rendered_from_its_result_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    record = {"benchmark": "imbalance", "command": "python -m bench imbalance --seeds 1", "commit": "abc1234",
              "date": "2026-11-29 17:00 UTC", "machine": {"cores": 2, "cpu": "Some CPU", "flags": ["avx2", "fma"],
                                                          "torch": "2.13.0", "threads": 2},
              "rows": [{"class_weights": "none", "seed": 1, "accuracy": 0.5, "macro_f1": 0.25, "recall_negative": 1.0,
                        "recall_positive": 0.0}]}
    monkeypatch.setattr(tables, "HERE", tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "imbalance.json").write_text(json.dumps(record))
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\n<!-- bench: results/imbalance.json -->\nold figures\n<!-- /bench -->\nafter\n")
    assert tables.update(page, check=True) == 1 and "old figures" in page.read_text()
    assert tables.update(page) == 1
    assert page.read_text() == (
        "# Benchmarks\n\n<!-- bench: results/imbalance.json -->\n"
        "`python -m bench imbalance --seeds 1`  \n"
        "commit abc1234, 2026-11-29 17:00 UTC; 2 cores, Some CPU (avx2, fma), torch 2.13.0, 2 threads\n\n"
        "| --class-weights | seed | accuracy | macro F1 | recall 0 | recall 1 |\n|---|---|---|---|---|---|\n"
        "| none | 1 | 0.5000 | 0.2500 | 1.0000 | 0.0000 |\n<!-- /bench -->\nafter\n")
    assert tables.update(page, check=True) == 0
    sys.modules.pop("tables", None)


def test_a_block_of_several_runs_numbers_them_and_names_their_options(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    def run(name: str, options: str, seed: int, accuracy: float) -> str:
        record = {"benchmark": "defaults", "command": f"python -m bench defaults --seed {seed}{options}",
                  "commit": "abc1234", "date": "2026-11-30 02:00 UTC", "seed": seed,
                  "rows": [{"dataset": "rt", "trainer": None, "tunelab_last": accuracy, "tunelab_best": accuracy,
                            "trainer_s": None, "tunelab_s": 100.0}]}
        (tmp_path / "results" / name).write_text(json.dumps(record))
        return f"results/{name}"

    monkeypatch.setattr(tables, "HERE", tmp_path)
    (tmp_path / "results").mkdir()
    files = [run("a.json", "", 1, 0.5), run("b.json", " --set warmup_ratio=0 --set=batching=random", 2, 0.75)]
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"<!-- bench: {' '.join(files)} -->\n<!-- /bench -->\n")
    assert tables.update(page) == 1
    assert page.read_text() == (
        "<!-- bench: results/a.json results/b.json -->\n"
        "1. `python -m bench defaults --seed 1`  \ncommit abc1234, 2026-11-30 02:00 UTC; machine not recorded\n"
        "2. `python -m bench defaults --seed 2 --set warmup_ratio=0 --set=batching=random`  \n"
        "commit abc1234, 2026-11-30 02:00 UTC; machine not recorded\n\n"
        "| run | tunelab options (--set) | seed | dataset | Trainer recipe | tunelab (last eval) | tunelab best/ | "
        "Trainer wall s | tunelab wall s |\n|---|---|---|---|---|---|---|---|---|\n"
        "| 1 | defaults of abc1234 | 1 | rt |  | 0.5000 | 0.5000 |  | 100 |\n"
        "| 2 | warmup_ratio=0 batching=random | 2 | rt |  | 0.7500 | 0.7500 |  | 100 |\n<!-- /bench -->\n")
    sys.modules.pop("tables", None)


def test_runs_of_the_same_options_on_several_seeds_are_averaged_under_the_runs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    runs = [("", "c1", 1, 0.80, 0.5), ("", "c1", 2, 0.70, 0.6), ("", "c2", 3, 0.60, None),
            (" --set warmup_ratio=0", "c1", 1, None, 0.9), (" --set warmup_ratio=0", "c1", 2, None, 0.8),
            (" --set batching=random", "c1", 1, None, 0.4), ("", "c3", 1, 0.80, 0.3)]
    records = [{"benchmark": "defaults", "command": f"python -m bench defaults --seed {seed}{options}", "seed": seed,
                "commit": commit, "rows": [{"dataset": "rt", "trainer": trainer, "tunelab_last": last,
                                            "tunelab_best": last + 0.1 if last else None}]}
               for options, commit, seed, trainer, last in runs]
    records[-1]["rows"][0]["trainer_from"] = "the first run's file"  # seed 1's recipe figure again: not a new run
    body = tables.render_runs(records)
    # The recipe counts every run that trained it; tunelab's defaults of another commit are other settings;
    # one seed of batching=random makes no mean.
    assert body.split("\n\n")[-1] == (
        "| side | dataset | seeds | last eval (mean) | tunelab best/ (mean) |\n|---|---|---|---|---|\n"
        "| Trainer recipe | rt | 1 2 3 | 0.7000 |  |\n"
        "| tunelab, defaults of c1 | rt | 1 2 | 0.5500 | 0.6500 |\n"
        "| tunelab, warmup_ratio=0 | rt | 1 2 | 0.8500 | 0.9500 |\n")
    assert tables.render_runs(records[-1:]).count("\n|---") == 1  # a single run has no table of means
    sys.modules.pop("tables", None)


def test_a_block_may_take_one_dataset_s_row_of_a_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    monkeypatch.setattr(tables, "HERE", tmp_path)
    rows = [{"dataset": name, "trainer": 0.5} for name in ("sst2", "rt", "mrpc")]
    (tmp_path / "all.json").write_text(json.dumps({"benchmark": "defaults", "rows": rows}))
    assert tables.load("all.json#rt")["rows"] == [{"dataset": "rt", "trainer": 0.5}]
    assert tables.load("all.json")["rows"] == rows
    sys.modules.pop("tables", None)


def test_a_result_names_the_commit_the_benchmark_started_at(tmp_path, monkeypatch):
    """A commit made while a long benchmark runs is not the code that produced its figures."""
    import subprocess

    monkeypatch.syspath_prepend(str(BENCH))
    import common

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "first")
    first = git("rev-parse", "--short", "HEAD")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_COMMIT", raising=False)
    assert common.commit_label() == first
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "second")
    out = common.write_result("imbalance", [], str(tmp_path / "result.json"))
    assert json.loads(Path(out).read_text())["commit"] == first
    sys.modules.pop("common", None)


def test_a_seeded_multiple_choice_result_shows_each_variant_s_mean_and_spread(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    rows = [{"variant": "recipe", "seed": s, "rows_per_s": 4.0, "speedup": 1.0, "accuracy": a}
            for s, a in ((1, 0.30), (2, 0.40))]
    rows += [{"variant": "tunelab", "seed": s, "computed": "bf16", "rows_per_s": v, "speedup": v / 4.0, "accuracy": a}
             for s, v, a in ((1, 12.0, 0.35), (2, 8.0, 0.37))]
    block = tables.render({"benchmark": "mc", "rows": rows})
    assert "| recipe | 1 | fp32 |" in block and "| tunelab | 1 | bf16 |" in block  # unsaid: fp32
    assert "| recipe | 2 | 4.0 | 1.00 | 0.3500 | 0.0707 | 0.3000 - 0.4000 |" in block
    assert "| tunelab | 2 | 10.0 | 2.50 | 0.3600 | 0.0141 | 0.3500 - 0.3700 |" in block
