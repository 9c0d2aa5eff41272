"""Generation with the bundled SmolLM2-135M-Instruct: load time after the first, tokens/s, determinism.

    python bench/generate_speed.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402
from tables import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="the result file (default bench/results/generate.json)")
    args = parser.parse_args()
    import torch

    from tunelab.generate import GenerationOptions, bundled_generator_dir, generate, load_generator

    started = time.perf_counter()
    bundled_generator_dir()  # converts the GGUF file on the very first use
    first = time.perf_counter() - started
    started = time.perf_counter()
    model, tokenizer = load_generator()
    load = time.perf_counter() - started
    started = time.perf_counter()
    model, tokenizer = load_generator()
    again = time.perf_counter() - started
    print(f"threads {torch.get_num_threads()}; conversion check {first:.1f} s (GGUF dequantized only when not cached); "
          f"load from the safetensors cache {load:.2f} s in a fresh process (transformers' lazy imports included), "
          f"{again:.2f} s once imported")
    rows, texts = [], {}
    for name, options in (("top-p 0.9, seed 1", GenerationOptions(max_new_tokens=64, top_p=0.9, seed=1)),
                          ("top-p 0.9, seed 1 (again)", GenerationOptions(max_new_tokens=64, top_p=0.9, seed=1)),
                          ("greedy", GenerationOptions(max_new_tokens=64, greedy=True))):
        result = generate(model, tokenizer, "Once upon a time", options)
        texts[name] = result.texts[0]
        rows.append({"decoding": name, "new_tokens": result.new_tokens, "seconds": result.seconds,
                     "tokens_per_s": result.tokens_per_second})
    same = texts["top-p 0.9, seed 1"] == texts["top-p 0.9, seed 1 (again)"]
    print_table("generate", rows)
    print(f"same seed, same text: {same}")
    print(f"sample: {texts['top-p 0.9, seed 1']!r}")
    print("results:", write_result("generate", rows, args.out, load_s=load, load_again_s=again, same_seed_same_text=same,
                                   sample=texts["top-p 0.9, seed 1"]))

if __name__ == "__main__":
    main()
