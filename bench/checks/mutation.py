"""The mutation run of issue 17: which mutants to run, and the score by module (docs/mutation.md).

    .venv/bin/mutmut run --max-children 2                          # make and check every mutant (hours here)
    python bench/checks/mutation.py order --sample 100 > order.txt  # or: survivors, then a seeded sample
    .venv/bin/mutmut run $(cat order.txt)
    python bench/checks/mutation.py score                           # the table for docs/mutation.md
    python bench/checks/mutation.py again > again.txt               # run A's survivors not re-checked yet

`order` lists, from `mutmut results --all true`: every mutant that survived or timed out (to re-check after
tests changed), every unchecked mutant of the small modules (metrics, predict), then a seeded random sample
of --sample unchecked mutants each of collate and the training loop (checking all of them takes hours on two
cores: a loop mutant runs every training test in the selection). `score` counts statuses by module. `again`
lists the survivors docs/mutation-results.txt records from run A, not yet re-checked under the current tests
(mutmut forgets its results when the test selection changes, so that file is the record across runs).
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLED = ("tunelab.collate", "tunelab.train.loop")


def statuses() -> list[tuple[str, str]]:
    """(mutant, status) for every mutant mutmut made."""
    mutmut = ROOT / ".venv" / "bin" / "mutmut"
    out = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [tuple(line.strip().rsplit(": ", 1)) for line in out.splitlines() if ": " in line]


def module(mutant: str) -> str:
    return mutant.split(".x")[0]


def order(rows: list[tuple[str, str]], sample: int, seed: int) -> list[str]:
    again = [name for name, status in rows if status in ("survived", "timeout")]
    unchecked = [name for name, status in rows if status == "not checked"]
    small = [name for name in unchecked if module(name) not in SAMPLED]
    rng = random.Random(seed)
    picks = [rng.sample(sorted(n for n in unchecked if module(n) == m), min(sample, sum(module(n) == m
                                                                                      for n in unchecked)))
             for m in SAMPLED]
    mixed = [name for pair in zip(*picks) for name in pair]  # alternate, so a stopped run samples both
    return again + small + mixed


def score(rows: list[tuple[str, str]]) -> str:
    counts = collections.Counter((module(name), status) for name, status in rows)
    lines = ["| module | mutants | checked | killed | survived | timeout | score | not checked |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted({m for m, _ in counts}) + ["all"]:
        pick = (lambda s: counts[(name, s)]) if name != "all" else (
            lambda s: sum(v for (_, st), v in counts.items() if st == s))
        killed, survived, timeout, unchecked = (pick(s) for s in ("killed", "survived", "timeout", "not checked"))
        checked = killed + survived + timeout
        total = checked + unchecked
        rate = f"{(killed + timeout) / checked:.0%}" if checked else "-"
        label = f"`{name}`" if name != "all" else "all"
        lines.append(f"| {label} | {total} | {checked} | {killed} | {survived} | {timeout} | {rate} | {unchecked} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["order", "score", "again"])
    parser.add_argument("--sample", type=int, default=100, help="order: unchecked mutants of each sampled module")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.what == "again":
        recorded = (ROOT / "docs" / "mutation-results.txt").read_text(encoding="utf-8").splitlines()
        fields = [line.split("\t") for line in recorded if line and not line.startswith("#")]
        print("\n".join(f[0] for f in fields if f[1] in ("survived", "timeout") and f[2] == "A"))
        return
    rows = statuses()
    if args.what == "order":
        print("\n".join(order(rows, args.sample, args.seed)))
    else:
        print(score(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
