"""Generation with the bundled SmolLM2-135M-Instruct: load time after the first, tokens/s, determinism.

    python bench/generate_speed.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
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
    print("| decoding | new tokens | seconds | tokens/s |")
    print("|---|---|---|---|")
    texts = {}
    for name, options in (("top-p 0.9, seed 1", GenerationOptions(max_new_tokens=64, top_p=0.9, seed=1)),
                          ("top-p 0.9, seed 1 (again)", GenerationOptions(max_new_tokens=64, top_p=0.9, seed=1)),
                          ("greedy", GenerationOptions(max_new_tokens=64, greedy=True))):
        result = generate(model, tokenizer, "Once upon a time", options)
        texts[name] = result.texts[0]
        print(f"| {name} | {result.new_tokens} | {result.seconds:.1f} | {result.tokens_per_second:.1f} |")
    print(f"same seed, same text: {texts['top-p 0.9, seed 1'] == texts['top-p 0.9, seed 1 (again)']}")
    print(f"sample: {texts['top-p 0.9, seed 1']!r}")


if __name__ == "__main__":
    main()
