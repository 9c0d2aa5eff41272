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
