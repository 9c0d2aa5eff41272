"""Prediction speed: tunelab (PyTorch and the ONNX int8 fast path) against transformers.pipeline.

    python bench/predict_speed.py --checkpoint runs/bench-sst2-8k/best --data ../shared/data/sst2/dev.tsv
    python bench/predict_speed.py --checkpoint runs/bench-mrpc/best --data ../shared/data/mrpc/dev.tsv \
        --text-column text_a --text-pair-column text_b

Each variant runs in its own process (for its own peak RSS) and is timed over
the whole file after a short warm-up, the fastest of --repeats passes (3) for
every variant alike; model loading is not timed. The
baseline is `pipeline("text-classification", model=CHECKPOINT)` called on the
list of inputs, as its documentation shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import forward_flops, matmul_peaks, peak_rss_mb, read_tsv, run_child, run_tunelab, write_result  # noqa: E402
from tables import print_table  # noqa: E402

VARIANTS = {"pipeline": "transformers.pipeline", "torch-fp32": "tunelab predict (PyTorch, fp32)",
            "torch": "tunelab predict (PyTorch, its default precision)", "onnx": "tunelab predict --backend onnx (int8)"}


def read(args):
    """(texts, pairs or None, labels)."""
    return read_tsv(args.data, args.text_column, args.text_pair_column, args.label_column)


def best_time(call, repeats: int):
    """The fastest of `repeats` whole passes (this machine's noise only ever slows a pass down)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def run_variant(args) -> dict:
    import torch

    texts, pairs, labels = read(args)
    if args.variant == "pipeline":
        from transformers import pipeline

        classifier = pipeline("text-classification", model=args.checkpoint)
        inputs = [{"text": t, "text_pair": p} for t, p in zip(texts, pairs)] if pairs else texts
        classifier(inputs[:8])  # warm-up
        seconds, outputs = best_time(lambda: classifier(inputs), args.repeats)
        predicted = [r["label"] for r in outputs]
        computed = "fp32"
    else:
        import tunelab

        predictor = tunelab.load(args.checkpoint, backend=args.variant.removesuffix("-fp32"),
                                 batch_size=args.batch_size, precision="fp32" if args.variant == "torch-fp32" else "auto")
        computed = "int8" if args.variant == "onnx" else predictor.precision.name
        predictor.predict(texts[:8], pairs[:8] if pairs else None)  # warm-up
        seconds, outputs = best_time(lambda: predictor.predict(texts, pairs), args.repeats)
        predicted = [p.label for p in outputs]
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    lengths = [len(x) for x in tokenizer(texts, pairs, truncation=True, max_length=512)["input_ids"]]
    flops = forward_flops(AutoConfig.from_pretrained(args.checkpoint), lengths)
    accuracy = sum(str(p) == str(label) for p, label in zip(predicted, labels)) / len(labels)
    return {"variant": VARIANTS[args.variant], "computed": computed, "rows": len(texts), "seconds": seconds,
            "samples_per_s": len(texts) / seconds, "accuracy": accuracy, "model_gflops": flops / seconds / 1e9,
            "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(), "predicted": [str(p) for p in predicted]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--text-pair-column", default=None)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant; the fastest counts")
    parser.add_argument("--variant", choices=list(VARIANTS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="the result file (default bench/results/predict.json)")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    peaks = matmul_peaks()
    passed = ["--checkpoint", args.checkpoint, "--data", args.data, "--text-column", args.text_column,
              "--label-column", args.label_column, "--batch-size", str(args.batch_size),
              "--repeats", str(args.repeats)]
    if args.text_pair_column:
        passed += ["--text-pair-column", args.text_pair_column]
    import tunelab.export as export

    if not export.onnx_path(args.checkpoint).exists():
        # once, untimed, as a user would; in its own process: Linux keeps a process's peak RSS across exec, so
        # a parent that loaded the model would hand its peak to every child
        run_tunelab("export", args.checkpoint)
    rows = [run_child(__file__, passed + ["--variant", v]) for v in VARIANTS]
    for row in rows:
        # MFU against the peak of the precision the row computes in; none for int8 ONNX (no int8 peak measured)
        row["mfu"] = row["model_gflops"] / peaks[row["computed"]] if row["computed"] in peaks else None
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
        row["accuracy_change"] = (row["accuracy"] - rows[1]["accuracy"]) * 100
        row["agreement"] = sum(a == b for a, b in zip(row["predicted"], rows[1]["predicted"])) / row["rows"]
    print(f"threads {rows[0]['threads']}, matmul peaks {peaks} GFLOP/s, {rows[0]['rows']} rows of {args.data}")
    rows = [{k: v for k, v in row.items() if k != "predicted"} for row in rows]
    print_table("predict", rows)
    torch_default, onnx = rows[2], rows[3]
    faster = max((torch_default, onnx), key=lambda r: r["samples_per_s"])
    verdict = (f"faster on this machine: {faster['variant']} ({faster['computed']}), "
               f"{faster['samples_per_s'] / min(torch_default['samples_per_s'], onnx['samples_per_s']):.2f}x the other")
    print(verdict)
    print("results:", write_result("predict", rows, args.out, peaks_gflops=peaks, data=args.data, verdict=verdict))

if __name__ == "__main__":
    main()
