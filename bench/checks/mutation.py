"""The mutation run of issue 17: which mutants to run, the record of every mutant's status, and the score.

    .venv/bin/mutmut run --max-children 2                              # make and check every mutant (hours here)
    python bench/checks/mutation.py again > again.txt                  # or: run A's survivors, re-checked
    python bench/checks/mutation.py sample --sample 40 > sample.txt     # and a seeded sample of unchecked ones
    nice .venv/bin/mutmut run --max-children 2 $(cat again.txt)
    python bench/checks/mutation.py fold again.txt --run D             # their statuses into the record
    python bench/checks/mutation.py score                              # the table for docs/mutation.md

mutmut forgets its results whenever the tests change (it re-collects which tests reach which function), and a
full run takes hours on two cores, so docs/mutation-results.txt is the record across partial runs: each mutant,
its latest status and the run that checked it. `again` lists the survivors and timeouts run A recorded that no
later run re-checked; `sample` lists the unchecked mutants of the small modules (metrics, predict) and a seeded
sample of --sample unchecked mutants each of collate and the training loop (a loop mutant runs every training
test in the selection), alternating so that a stopped run has sampled both; `fold` copies mutmut's current
status of the listed mutants into the record under a run letter; `score` counts the record's statuses by module.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "docs" / "mutation-results.txt"
SAMPLED = ("tunelab.collate", "tunelab.train.loop")
CHECKED = ("killed", "survived", "timeout")


def mutmut_statuses() -> dict[str, str]:
    """Mutant name to status, for every mutant mutmut made (from its own state in mutants/)."""
    mutmut = ROOT / ".venv" / "bin" / "mutmut"
    out = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return dict(line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)


def read_record() -> tuple[list[str], list[list[str]]]:
    """The record's comment lines and its rows (mutant, status, run)."""
    lines = RECORD.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.startswith("#")], [
        line.split("\t") for line in lines if line and not line.startswith("#")]


def module(mutant: str) -> str:
    return mutant.split(".x")[0]


def again(rows: list[list[str]]) -> list[str]:
    return [name for name, status, run in rows if status in ("survived", "timeout") and run == "A"]


def sample(rows: list[list[str]], size: int, seed: int) -> list[str]:
    unchecked = [name for name, status, _ in rows if status == "not checked"]
    small = [name for name in unchecked if module(name) not in SAMPLED]
    rng = random.Random(seed)
    picks = [rng.sample(sorted(n for n in unchecked if module(n) == m),
                        min(size, sum(module(n) == m for n in unchecked))) for m in SAMPLED]
    return small + [name for pair in zip(*picks) for name in pair]  # alternate, so a stopped run samples both


def fold(rows: list[list[str]], names: list[str], run: str, current: dict[str, str]) -> tuple[list[list[str]], int]:
    """The record with the listed mutants' current mutmut status under `run` (keeping what the previous run found,
    "D (A: survived)"); mutants mutmut has not checked yet are left as they were."""
    wanted, changed = set(names), 0
    out = []
    for name, status, previous in rows:
        now = current.get(name)
        if name in wanted and now in CHECKED:
            first = previous.split(" ")[0]
            earlier = f" ({first}: {status})" if first != "-" else ""
            status, previous, changed = now, f"{run}{earlier}", changed + 1
        out.append([name, status, previous])
    return out, changed


def score(rows: list[list[str]]) -> str:
    counts = collections.Counter((module(name), status) for name, status, _ in rows)
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
        lines.append(f"| {label} | {total:,} | {checked:,} | {killed:,} | {survived} | {timeout} | {rate} | "
                     f"{unchecked:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["again", "sample", "fold", "score"])
    parser.add_argument("names", nargs="?", help="fold: a file listing the mutants that run checked")
    parser.add_argument("--sample", type=int, default=40, help="sample: unchecked mutants of each sampled module")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--run", help="fold: the run's letter, as the record and docs/mutation.md name it")
    args = parser.parse_args()
    comments, rows = read_record()
    if args.what == "again":
        print("\n".join(again(rows)))
    elif args.what == "sample":
        print("\n".join(sample(rows, args.sample, args.seed)))
    elif args.what == "score":
        print(score(rows))
    else:
        if not (args.names and args.run):
            raise SystemExit("fold needs the file of mutants the run checked and --run LETTER")
        names = Path(args.names).read_text(encoding="utf-8").split()
        rows, changed = fold(rows, names, args.run, mutmut_statuses())
        text = "\n".join(comments + ["\t".join(row) for row in rows]) + "\n"
        temporary = RECORD.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(RECORD)
        print(f"{changed} of {len(names)} listed mutants folded into {RECORD.relative_to(ROOT)} as run {args.run}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
