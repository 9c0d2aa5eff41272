"""Helpers shared by the benchmarks: matmul peak, model FLOPs, peak memory, child runs, result files
(tables.py prints and renders the tables)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, dtype: str = "fp32") -> float:
    """Best matmul GFLOP/s on this machine with the current torch thread count, in fp32 or bf16."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    torch.mm(a, b)  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def forward_flops(config, lengths) -> float:
    """Model FLOPs of one forward pass over unpadded rows: dense layers plus attention scores.

    Per token, each dense weight costs 2 FLOPs per parameter; per layer and row,
    QK^T and AV each cost 2 * s^2 * d. Embedding lookups are free.
    """
    d, layers, ff = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    dense_per_token = layers * (4 * d * d + 2 * d * ff) * 2 + 2 * d * d  # + pooler
    total = 0.0
    for s in lengths:
        total += dense_per_token * s + layers * 4 * s * s * d
    return total


def matmul_peaks() -> dict[str, float]:
    """The fp32 and bf16 matmul peaks: each run's MFU is taken against the peak of the precision it computed in."""
    return {dtype: matmul_peak_gflops(dtype=dtype) for dtype in ("fp32", "bf16")}


# The four variants of a precision benchmark (issue 31): the recipe as users write it (fp32), the recipe with
# the Trainer's bf16=True, tunelab --precision fp32, and tunelab at its defaults (--precision auto).
PRECISION_RUNS = (("recipe", "fp32"), ("recipe", "bf16"), ("tunelab", "fp32"), ("tunelab", "auto"))


def add_precision_options(parser) -> None:
    """--precisions (the four variants, over --seeds) and the --precision a parent passes to each child."""
    parser.add_argument("--precisions", action="store_true",
                        help="run the four precision variants (recipe fp32 and bf16=True, tunelab --precision fp32 "
                             "and its defaults) over --seeds; writes bench/results/precision-NAME.json")
    parser.add_argument("--seeds", type=int, nargs="+", help="with --precisions: the seeds (default: --seed)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default=None,
                        help="(set by the parent) the precision of this variant; without it the recipe is fp32 "
                             "and tunelab at its default")


def recipe_bf16(args) -> bool:
    """The recipe's TrainingArguments(bf16=...) for this child."""
    return getattr(args, "precision", None) == "bf16"


def tunelab_precision(args) -> str:
    """tunelab's --precision for this child (its default, auto, unless the parent says fp32)."""
    return getattr(args, "precision", None) or "auto"


def run_precision(run_dir) -> str:
    """The precision a tunelab run computed in, as it recorded it (config.yaml's resolved.precision)."""
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["resolved"]["precision"]


def precision_variants(run, seeds: list[int], speed: str, metric: str) -> tuple[list[dict], dict[str, float]]:
    """The four variants for each seed (`run(side, precision, seed)` returns one child's row, tunelab rows with
    the precision they computed in as `computed`); each row gains its seed, its speed-ups over the fp32 and the
    bf16 recipe of its seed, and its MFU against the matmul peak of the precision it computed in."""
    peaks = matmul_peaks()
    rows = []
    for seed in seeds:
        group = []
        for side, precision in PRECISION_RUNS:
            row = run(side, precision, seed)
            computed = row.get("computed") or precision
            label = {("recipe", "fp32"): "recipe (fp32)", ("recipe", "bf16"): "recipe, bf16=True",
                     ("tunelab", "fp32"): "tunelab --precision fp32"}.get(
                (side, precision), f"tunelab defaults (auto: {computed})")
            group.append({**row, "side": side, "setting": label, "seed": seed, "computed": computed,
                          "metric_name": metric, "metric": row.get(metric)})
        for row in group:
            row["vs_fp32_recipe"] = row[speed] / group[0][speed]
            row["vs_bf16_recipe"] = row[speed] / group[1][speed]
            row["speed"] = row[speed]
            if row.get("model_gflops"):
                row["mfu"] = row["model_gflops"] / peaks[row["computed"] if row["computed"] in peaks else "fp32"]
        rows += group
    return rows, peaks


def child_variants(script: str, passed: list[str], recipe: str):
    """`run(side, precision, seed)` for precision_benchmark: one child process of `script` per variant (`recipe`
    is the child variant of the recipe's side)."""
    def run(side: str, precision: str, seed: int) -> dict:
        variant = recipe if side == "recipe" else "tunelab"
        return run_child(script, passed + ["--seed", str(seed), "--variant", variant, "--precision", precision])
    return run


def precision_benchmark(run, args, speed: str, metric: str, unit: str, task: str, **extra) -> None:
    """Run the four precision variants over --seeds (`run(side, precision, seed)` returns one variant's row),
    print the table and write bench/results/precision-TASK.json (or --out)."""
    from pathlib import Path

    import tables

    rows, peaks = precision_variants(run, args.seeds or [args.seed], speed, metric)
    out = args.out or str(Path(__file__).resolve().parent / "results" / f"precision-{task}.json")
    path = write_result("precision", rows, out, task=task, speed_unit=unit, peaks_gflops=peaks, **extra)
    print(tables.render(json.loads(Path(path).read_text(encoding="utf-8"))))
    print("results:", path)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, args: list[str], env: dict | None = None) -> dict:
    """Run one variant in a fresh process (so peak memory is its own); parse its last JSON line. The child's
    temporary files (run folders, Trainer outputs: gigabytes for a base model's checkpoints and optimizer state)
    go to a folder of its own, removed when it exits."""
    import shutil
    import tempfile

    command = [sys.executable, script, *args, "--json"]
    scratch = tempfile.mkdtemp(prefix="bench-child-")
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                env={**os.environ, **(env or {}), "TMPDIR": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"{' '.join(command)} failed with exit code {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_tunelab(*arguments: str) -> float:
    """Run the installed tunelab's CLI (`python -m tunelab.cli ARGUMENTS`) as a user would; its wall time. A
    failure stops the benchmark with the command's last output."""
    return tunelab_output(*arguments)[0]


def tunelab_output(*arguments: str) -> tuple[float, str]:
    """`tunelab ARGUMENTS` as a user runs it; its wall time and standard output."""
    command = [sys.executable, "-m", "tunelab.cli", *arguments]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"{' '.join(command)} failed with exit code {result.returncode}")
    return time.perf_counter() - started, result.stdout


def run_variants(script: str, passed: list[str], variants: tuple[str, ...], speed: str,
                 peaks: dict[str, float]) -> list[dict]:
    """Each variant in its own process (the baseline first); MFU where a row has its model GFLOP/s (against the
    peak of the precision it computed in: `computed`, fp32 unless the row says), and the speed-up (`speed`)
    over the first."""
    rows = [run_child(script, passed + ["--variant", v]) for v in variants]
    for row in rows:
        if "model_gflops" in row:
            row["mfu"] = row["model_gflops"] / peaks[row.get("computed", "fp32")]
        row["speedup"] = row[speed] / rows[0][speed]
    return rows


def ran_as_child(args, variants: dict) -> bool:
    """When the parent started this process for one variant (--variant), run it, print its row as JSON."""
    if not args.variant:
        return False
    print(json.dumps(variants[args.variant](args)))
    return True


def add_child_options(parser, variants: tuple[str, ...], name: str) -> None:
    """The options a parent benchmark sets on its children, and --out."""
    parser.add_argument("--variant", choices=variants, help="(set by the parent)")
    parser.add_argument("--json", action="store_true", help="(set by the parent: print one JSON line)")
    parser.add_argument("--out", help=f"the result file (default bench/results/{name}.json)")


def read_tsv(path: str, *columns: str | None) -> list[list[str] | None]:
    """Columns of a GLUE-style TSV (tab separated, no quoting), read the way tunelab reads it; None for a column
    not asked for (None)."""
    from pathlib import Path

    from tunelab.data import read_file

    frame = read_file(Path(path))
    return [frame[c].tolist() if c else None for c in columns]


def add_side_by_side_options(parser, data: str) -> None:
    """The options every Trainer-against-tunelab benchmark takes."""
    parser.add_argument("--data", default=data)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variant", choices=["trainer", "trainer-padded", "tunelab"])
    parser.add_argument("--json", action="store_true", help="(set by the parent: print one JSON line)")
    parser.add_argument("--out", help="the result file (default bench/results/NAME.json)")


def training_row(name, config, lengths, epochs, seconds, metrics, reported_speed) -> dict:
    """One variant's result: speed, model FLOP/s (forward + backward = 3x forward), peak memory, its metrics."""
    flops = 3 * forward_flops(config, lengths) * epochs
    return {"variant": name, "rows": len(lengths) * epochs, "train_s": seconds,
            "samples_per_s": len(lengths) * epochs / seconds, "reported_samples_per_s": reported_speed,
            **metrics, "model_gflops": flops / seconds / 1e9, "peak_rss_mb": peak_rss_mb()}


def commit_label() -> str:
    """The short commit, marked when tracked files differ from it; the first answer in this process (and its
    children) is kept, so a result file names the code as it was when the benchmark started."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    # Benchmark output (logs, result files) is not code: a rewritten log does not make the figures uncommitted.
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/logs", ":!bench/results"]
    if subprocess.run(status, capture_output=True, text=True).stdout:
        commit += " + uncommitted changes"
    os.environ["BENCH_COMMIT"] = commit
    return commit


def side_by_side(script: str, args, variants: tuple[str, ...] = ("trainer", "tunelab")) -> tuple[list[dict], float]:
    """Run the variants (the baseline first), each in its own process; add MFU (against the peak of the precision
    each computed in) and the speed-up over the first to each row; the rows and the fp32 peak."""
    peaks = matmul_peaks()
    passed = ["--data", args.data, "--epochs", str(args.epochs), "--seed", str(args.seed)]
    if args.limit:
        passed += ["--limit", str(args.limit)]
    rows = [run_child(script, passed + ["--variant", v]) for v in variants]
    for row in rows:
        row["mfu"] = row["model_gflops"] / peaks[row.get("computed", "fp32")]
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    return rows, peaks["fp32"]


def machine() -> dict:
    """What the figures were measured on: cores, CPU model and the flags that decide its kernels, torch."""
    import platform

    import torch

    model, flags = platform.processor(), set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "f16c")
    return {"cores": os.cpu_count(), "cpu": model, "flags": [f for f in wanted if f in flags],
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def command_line() -> str:
    """How this benchmark was started, as one would type it again (python -m bench NAME ... or the script)."""
    import shlex

    program = os.environ.get("BENCH_COMMAND") or f"python {os.path.relpath(sys.argv[0])}"
    return " ".join([program] + [shlex.quote(a) for a in sys.argv[1:]])


def write_result(name: str, rows: list[dict], out: str | None = None, **extra) -> str:
    """Write bench/results/NAME.json (or `out`): the figures with the exact command, the commit and the
    machine that produced them; BENCHMARKS.md's tables are rendered from these files (python -m bench tables)."""
    from datetime import datetime, timezone
    from pathlib import Path

    path = Path(out or Path(__file__).resolve().parent / "results" / f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "command": command_line(), "commit": commit_label(), "machine": machine(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **extra, "rows": rows}
    partial = path.with_name(f".{path.name}.partial")  # whole or not at all: a run may be stopped mid-write
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return str(path)
