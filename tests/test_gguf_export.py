"""GGUF export of a tunelab SFT run on a tiny Llama with a byte-level BPE tokenizer, read back by a reader that
is not tunelab's (transformers' `from_pretrained(..., gguf_file=...)`): the same tokens, chat template and
special tokens; fp32 logits equal to the checkpoint's, f16 the same greedy tokens on 20 prompts, q8_0 within
a stated tolerance; written atomically; the refusals."""

from __future__ import annotations

import json
import random

import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, build_tiny_bert, fails, run_cli
from test_language_models import build_tiny_llama, chat_rows

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(FILLER + POSITIVE + NEGATIVE, 5)) + f" {rng.randint(0, 999)}, is it?"
            for _ in range(n)]


def build_bpe_llama(path, tie: bool = True) -> str:
    """A 2-layer Llama (hidden 64, so q8_0's blocks of 32 fill its rows) with a byte-level BPE tokenizer
    trained here, SmolLM2's special tokens and a ChatML template."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(400) + ["user assistant system positive negative"], vocab_size=400,
                            special_tokens=SPECIALS, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = TEMPLATE
    # A wide initialization keeps the logits of this random model apart, so fp16 rounding cannot swap them.
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                                  tie_word_embeddings=tie, initializer_range=0.2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


PROMPTS = [[{"role": "user", "content": text}] for text in corpus(20, seed=7)]


@pytest.fixture(scope="module")
def sft_best(tmp_path_factory):
    """best/ of a short full-weight SFT run of the tiny Llama."""
    from tunelab.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("gguf")
    data = folder / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(32)), encoding="utf-8")
    config = TrainConfig(data=str(data), task="causal-lm", model=build_bpe_llama(folder / "base"),
                         output=str(folder / "run"), epochs=1, batch_size=8, learning_rate=1e-3, progress=False,
                         warmup_ratio=0.0)
    train(config)
    return folder / "run" / "best"


def read_back(folder, name):
    """The model and tokenizer as transformers reads them from the GGUF file alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval(),
            AutoTokenizer.from_pretrained(folder, gguf_file=name))


def original(checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)


def prompt_ids(tokenizer) -> list[torch.Tensor]:
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            ["input_ids"] for p in PROMPTS]


def test_the_cli_writes_a_gguf_file_whose_tokenizer_transformers_reads_as_the_checkpoints(sft_best, capsys):
    code, out, err = run_cli(["export", sft_best, "--format", "gguf", "--quant", "f32", "--no-progress"], capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {sft_best / 'gguf' / 'model-f32.gguf'}"
    _, tokenizer = original(sft_best)
    _, read = read_back(sft_best / "gguf", "model-f32.gguf")
    assert read.chat_template == tokenizer.chat_template == TEMPLATE
    assert (read.bos_token, read.eos_token, read.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    for ours, theirs in zip(prompt_ids(tokenizer), prompt_ids(read)):
        assert ours.tolist() == theirs.tolist()
    text = "Plodding 12345 films, aren't they?\n  Yes."
    assert read(text)["input_ids"] == tokenizer(text)["input_ids"]
    # What llama.cpp reads beyond transformers: the split rule and whether to put BOS first (this tokenizer does not).
    from gguf import GGUFReader

    fields = GGUFReader(sft_best / "gguf" / "model-f32.gguf").fields
    assert bytes(fields["tokenizer.ggml.pre"].parts[-1]).decode() == "gpt-2"
    assert bool(fields["tokenizer.ggml.add_bos_token"].parts[-1][0]) is False


def test_f32_gives_the_checkpoints_logits_f16_its_greedy_tokens_and_q8_0_logits_within_tolerance(sft_best):
    from tunelab.gguf_export import export_gguf

    model, tokenizer = original(sft_best)
    with torch.no_grad():
        # Each prompt with the checkpoint's greedy continuation; the logits that chose every next token.
        paths = [model.generate(ids, max_new_tokens=8, do_sample=False) for ids in prompt_ids(tokenizer)]
        starts = [ids.shape[1] - 1 for ids in prompt_ids(tokenizer)]
        reference = [model(p).logits[0, start:-1] for p, start in zip(paths, starts)]
    chosen = [p[0, start + 1:] for p, start in zip(paths, starts)]
    assert all(torch.equal(r.argmax(-1), c) for r, c in zip(reference, chosen))
    top2 = torch.cat([r.topk(2).values for r in reference])
    clear = top2[:, 0] - top2[:, 1] > 0.01  # steps that fp16 rounding (errors near 1e-3 here) cannot flip
    assert int(clear.sum()) >= 150 and len(clear) == 160
    spread = float(torch.cat(reference).abs().max())
    for quant in ("f32", "f16", "q8_0"):
        export_gguf(sft_best, quant)
        read, _ = read_back(sft_best / "gguf", f"model-{quant}.gguf")
        with torch.no_grad():
            logits = [read(p).logits[0, start:-1] for p, start in zip(paths, starts)]
        largest = max(float((a - b).abs().max()) for a, b in zip(logits, reference))
        picked = torch.cat([a.argmax(-1) for a in logits])
        if quant == "f32":
            assert largest < 1e-4
        elif quant == "f16":  # the same greedy token at every step that is not a tie
            assert torch.equal(picked[clear], torch.cat(chosen)[clear])
        else:
            # Every weight read back within half a step of its block of 32 (the step: the block's largest
            # magnitude / 127, stored in fp16: 6% more, and 1e-5 where fp16 is subnormal), and the logits within 15% of the largest: this random model, initialized wide,
            # amplifies the 0.4% weight error to 11% (measured); SmolLM2 to 4% (BENCHMARKS.md).
            theirs = read.state_dict()
            for name, weight in model.state_dict().items():
                if weight.ndim == 2:
                    blocks = weight.reshape(-1, 32)
                    step = blocks.abs().amax(1, keepdim=True) / 127
                    assert ((theirs[name].reshape(-1, 32) - blocks).abs() <= step * 0.57 + 1e-5).all(), name
            assert largest < 0.15 * spread, (largest, spread)


def test_an_untied_output_layer_is_written_and_read_back(tmp_path):
    from tunelab.gguf_export import export_gguf

    checkpoint = build_bpe_llama(tmp_path / "untied", tie=False)
    model, tokenizer = original(checkpoint)
    export_gguf(checkpoint, "f32")
    read, _ = read_back(tmp_path / "untied" / "gguf", "model-f32.gguf")
    assert not read.config.tie_word_embeddings
    ids = prompt_ids(tokenizer)[0]
    with torch.no_grad():
        assert torch.allclose(read(ids).logits, model(ids).logits, atol=1e-4)


def test_a_failed_export_keeps_the_earlier_file_and_leaves_no_temporary_file(sft_best, monkeypatch):
    import tunelab.gguf_export as module

    target = module.export_gguf(sft_best, "q8_0")
    before = target.read_bytes()

    def broken(*args, **kwargs):
        args[1].write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_write", broken)
    with pytest.raises(module.TunelabError, match=r"^could not write .*gguf: no space left on the device"):
        module.export_gguf(sft_best, "q8_0")
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_what_gguf_export_cannot_convert_is_refused_in_one_line(tmp_path, capsys):
    bert = build_tiny_bert(tmp_path / "bert", num_labels=2)
    assert fails(["export", bert, "--format", "gguf"], capsys) == (
        f"error: tunelab export --format gguf: {bert} is BertForSequenceClassification (model type 'bert'); "
        "tunelab converts causal language models of the Llama family (model type llama: SmolLM2, TinyLlama, "
        "Llama 3 without long-context rope scaling); llama.cpp's own converter reads more: python "
        "convert_hf_to_gguf.py CHECKPOINT (https://github.com/ggml-org/llama.cpp)")
    words = build_tiny_llama(tmp_path / "words")
    assert fails(["export", words, "--format", "gguf"], capsys).startswith(
        f"error: tunelab export --format gguf: the tokenizer in {words} is WordLevel without byte-level "
        "pre-tokenization; tunelab writes byte-level BPE tokenizers (SmolLM2, Llama 3); ")
    scaled = build_bpe_llama(tmp_path / "scaled")
    config = json.loads((tmp_path / "scaled" / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (tmp_path / "scaled" / "config.json").write_text(json.dumps(config))
    assert fails(["export", scaled, "--format", "gguf"], capsys).startswith(
        f"error: tunelab export --format gguf: {scaled} scales its rope ('llama3'), which tunelab does not convert")
    assert fails(["export", scaled, "--format", "gguf", "--quant", "q3_k"], capsys) == (
        "error: --quant q3_k: not a GGUF type tunelab writes; choose one of f16, q8_0, bf16, f32, q5_1, q5_0, "
        "q4_1, q4_0")
    assert fails(["export", bert, "--quant", "q8_0"], capsys) == (
        "error: --quant q8_0 is for --format gguf; ONNX writes fp32 and, with --quantize (the default), int8")
    assert fails(["export", scaled, "--format", "gguf", "--no-quantize"], capsys) == (
        "error: --quantize/--no-quantize is for --format onnx; a GGUF file's type is set by --quant (f16, q8_0, "
        "bf16, f32, q5_1, q5_0, q4_1, q4_0)")
    assert fails(["export", scaled, "--format", "tflite"], capsys) == (
        "error: --format tflite: choose onnx (the fast prediction path) or gguf (llama.cpp, Ollama)")
    assert not (tmp_path / "bert" / "gguf").exists() and not (tmp_path / "scaled" / "gguf").exists()
