"""One entry point for every benchmark: `python -m bench NAME [its options]` (`python -m bench` lists them).

Each benchmark prints its table and writes bench/results/NAME.json (or --out) with the exact command, the
commit and the machine; `python -m bench tables` renders BENCHMARKS.md's tables from those files.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# name: (module in bench/, what it measures)
BENCHMARKS = {
    "train": ("train_speed", "training speed and dev accuracy against transformers.Trainer (SST-2, MRPC)"),
    "ner": ("ner_speed", "token classification against the run_ner.py recipe (CoNLL-2003)"),
    "multilabel": ("multilabel_speed", "multi-label against the run_classification.py recipe (GoEmotions)"),
    "long-text": ("long_text", "--long-text windows against truncate (IMDb)"),
    "imbalance": ("imbalance", "--class-weights balanced against none (SST-2, positives cut to a tenth)"),
    "defaults": ("defaults", "tunelab's defaults against the Trainer recipe, dataset by dataset"),
    "qa": ("qa", "question answering against the run_qa.py recipe (SQuAD), and unanswerable questions"),
    "mc": ("mc", "multiple choice against the run_swag.py recipe (HellaSwag, DREAM), over seeds"),
    "mc-padding": ("mc_padding", "how much of a multiple-choice batch is padding, by batch layout (no training)"),
    "sft": ("sft", "chat fine-tuning with LoRA against TRL's SFTTrainer (rotten-tomatoes questions)"),
    "dpo": ("dpo", "preference tuning (DPO) with LoRA against TRL's DPOTrainer (rotten-tomatoes questions)"),
    "gguf": ("gguf_check", "GGUF export of an SFT run read back by transformers: greedy tokens and logits per --quant"),
    "lm-adapt": ("lm_adapt", "continued pre-training (perplexity before / after) and masked-LM adaptation (IMDb)"),
    "mlm": ("mlm_speed", "masked-LM training against the run_mlm.py recipe, four precision variants (IMDb)"),
    "predict": ("predict_speed", "prediction speed against transformers.pipeline"),
    "serve": ("serve_load", "the server under load"),
    "serve-drain": ("serve_drain", "the server stopped by SIGTERM under load: nothing sent before it lost"),
    "generate": ("generate_speed", "generation speed"),
    "profile": ("step_profile", "where a training step's time goes per task: matmuls, attention, optimizer, casts"),
    "packing": ("packing_step", "one training step on packed, grouped and random batches"),
    "batching": ("batching", "prediction batch layouts"),
    "clip": ("clip_cost", "what gradient clipping costs a step"),
    "tables": ("tables", "render BENCHMARKS.md's tables from bench/results/*.json"),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        width = max(map(len, BENCHMARKS))
        listing = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in BENCHMARKS.items())
        print(f"usage: python -m bench NAME [options]   (python -m bench NAME --help)\n\n{listing}")
        sys.exit(0 if len(sys.argv) < 2 else 2)
    name = sys.argv[1]
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    os.environ["BENCH_COMMAND"] = f"python -m bench {name}"  # what the result file records as the command
    from common import commit_label

    commit_label()  # the code as it is now: a commit made while a long benchmark runs is not its commit
    module = importlib.import_module(BENCHMARKS[name][0])
    sys.argv = [str(here / f"{BENCHMARKS[name][0]}.py")] + sys.argv[2:]
    module.main()


if __name__ == "__main__":
    main()
