"""GGUF export: a causal language model of the Llama family written as one file that llama.cpp, Ollama and
LM Studio run, with its tokenizer, chat template and special tokens in the file's metadata.

The layout follows llama.cpp's own converter (`convert_hf_to_gguf.py`, class LlamaModel): tensor names from
the `gguf` package's name map, the query and key projections permuted from Hugging Face's rotate-half order
to llama.cpp's interleaved one, norms kept in fp32, a tied output layer left out (llama.cpp then reads the
embedding). The tokenizer's split rule is named from its own pre-tokenizer (`tokenizer.ggml.pre`), so
llama.cpp cuts text the way the checkpoint's tokenizer does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.checkpoint import writing
from tunelab.errors import TunelabError
from tunelab.modeling import check_checkpoint

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

GGUF_DIR = "gguf"
QUANTS = ("f16", "q8_0", "bf16", "f32", "q5_1", "q5_0", "q4_1", "q4_0")
ARCHITECTURES = {"llama": "llama"}  # model_type -> llama.cpp architecture
# Llama 3's split rule, as in its tokenizer.json (and llama.cpp's "llama-bpe").
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FALLBACK = ("llama.cpp's own converter reads more: python convert_hf_to_gguf.py CHECKPOINT "
            "(https://github.com/ggml-org/llama.cpp)")


@dataclass(frozen=True)
class Quant:
    """How one --quant value writes the model's tensors."""

    name: str
    tensor_type: str  # a gguf.GGMLQuantizationType member
    file_type: str  # a gguf.LlamaFileType member


QUANT_TYPES = {
    "f32": Quant("f32", "F32", "ALL_F32"),
    "f16": Quant("f16", "F16", "MOSTLY_F16"),
    "bf16": Quant("bf16", "BF16", "MOSTLY_BF16"),
    "q8_0": Quant("q8_0", "Q8_0", "MOSTLY_Q8_0"),
    "q5_1": Quant("q5_1", "Q5_1", "MOSTLY_Q5_1"),
    "q5_0": Quant("q5_0", "Q5_0", "MOSTLY_Q5_0"),
    "q4_1": Quant("q4_1", "Q4_1", "MOSTLY_Q4_1"),
    "q4_0": Quant("q4_0", "Q4_0", "MOSTLY_Q4_0"),
}


def gguf_path(checkpoint: str | Path, quant: str) -> Path:
    """Where `export_gguf` writes: CHECKPOINT/gguf/model-QUANT.gguf."""
    return Path(checkpoint) / GGUF_DIR / f"model-{quant}.gguf"


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise TunelabError("GGUF export needs the gguf package; install it with: pip install gguf") from None
    return gguf


def export_gguf(checkpoint: str | Path, quant: str = "f16", progress: bool = False) -> Path:
    """Write CHECKPOINT/gguf/model-QUANT.gguf (atomically: a temporary file renamed over the old one)."""
    if quant not in QUANT_TYPES:
        raise TunelabError(f"--quant {quant}: not a GGUF type tunelab writes; choose one of {', '.join(QUANTS)}")
    gguf = _require_gguf()
    checkpoint = check_checkpoint(checkpoint)
    config = _read_json(checkpoint / "config.json")
    architecture = _architecture(checkpoint, config)
    tokenizer = _tokenizer_fields(checkpoint, config)
    target = gguf_path(checkpoint, quant)
    needed = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    if QUANT_TYPES[quant].tensor_type != "F32":
        needed //= 2
    target.parent.mkdir(exist_ok=True)
    for stale in target.parent.glob(".model-*.gguf.tmp*"):  # left by an export that was killed
        stale.unlink(missing_ok=True)
    with writing(target.parent, needed, "the checkpoint and any earlier export are as they were"):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.tmp")
        os.close(fd)
        try:
            _write(gguf, Path(tmp), checkpoint, config, architecture, tokenizer, QUANT_TYPES[quant], progress)
            os.chmod(tmp, 0o644)  # mkstemp's file is private; the export is as readable as the checkpoint
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    logger.info("exported %s", target)
    return target


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunelabError(f"could not read {path}: {exc}; the checkpoint is damaged") from None


def _architecture(checkpoint: Path, config: dict) -> str:
    """llama.cpp's name for the model, or one line that says which models tunelab converts."""
    model_type = config.get("model_type")
    name = (config.get("architectures") or [model_type])[0]
    if model_type not in ARCHITECTURES or not str(name).endswith("ForCausalLM"):
        raise TunelabError(
            f"tunelab export --format gguf: {checkpoint} is {name} (model type '{model_type}'); tunelab converts "
            f"causal language models of the Llama family (model type {', '.join(ARCHITECTURES)}: SmolLM2, "
            f"TinyLlama, Llama 3 without long-context rope scaling); {FALLBACK}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise TunelabError(f"tunelab export --format gguf: {checkpoint} scales its rope ('{rope_type}'), which "
                           f"tunelab does not convert; {FALLBACK}")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise TunelabError(f"tunelab export --format gguf: {checkpoint} has attention or MLP biases, which "
                           f"tunelab does not convert; {FALLBACK}")
    return ARCHITECTURES[model_type]


@dataclass
class TokenizerFields:
    """What the file says of the tokenizer beyond what gguf's SpecialVocab reads (merges, special ids, template)."""

    tokens: list[str]
    types: list[int]
    pre: str
    adds_bos: bool  # whether encoding a text puts the BOS token first


def _tokenizer_fields(checkpoint: Path, config: dict) -> TokenizerFields:
    """The vocabulary in llama.cpp's byte-level BPE form ("gpt2"), as llama.cpp's converter builds it."""
    gguf = _require_gguf()
    path = checkpoint / "tokenizer.json"
    if not path.exists():
        raise TunelabError(f"tunelab export --format gguf: {checkpoint} has no tokenizer.json; save the tokenizer "
                           "beside the model (tunelab runs do)")
    spec = _read_json(path)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _byte_level(spec):
        raise TunelabError(
            f"tunelab export --format gguf: the tokenizer in {checkpoint} is {model.get('type')} without byte-level "
            f"pre-tokenization; tunelab writes byte-level BPE tokenizers (SmolLM2, Llama 3); {FALLBACK}")
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    if pre is None:
        raise TunelabError(
            f"tunelab export --format gguf: the tokenizer in {checkpoint} splits text by a rule tunelab cannot name "
            f"for llama.cpp ({json.dumps(spec.get('pre_tokenizer'))[:120]}); {FALLBACK}")
    size = int(config["vocab_size"])
    by_id = {index: token for token, index in model["vocab"].items()}
    added = {t["id"]: t for t in spec.get("added_tokens") or []}
    by_id.update({index: t["content"] for index, t in added.items()})
    if by_id and max(by_id) >= size:
        raise TunelabError(f"tunelab export --format gguf: the tokenizer in {checkpoint} has token id {max(by_id)} "
                           f"but the model's vocabulary holds {size}; the checkpoint does not match its tokenizer")
    tokens, types = [], []
    for index in range(size):
        if index not in by_id:  # rows of the embedding the tokenizer never produces
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.CONTROL if added[index].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    from tokenizers import Tokenizer

    first = Tokenizer.from_file(str(path)).encode("a").ids[:1]
    bos = config.get("bos_token_id")
    return TokenizerFields(tokens, [int(t) for t in types], pre, bos is not None and first == [bos])


def _byte_level(spec: dict) -> bool:
    return "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) and "ByteLevel" in json.dumps(spec.get("decoder"))


def _pre_tokenizer_name(pre: dict | None) -> str | None:
    """llama.cpp's name for a byte-level pre-tokenizer: the split rule its merges were learned with."""
    if not pre:
        return None
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    last = steps[-1]
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt-2"  # ByteLevel's own regex is GPT-2's
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and last.get("use_regex", True):
        return "smollm"  # each digit alone, then GPT-2's regex (SmolLM's tokenizer.json)
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        if pattern == LLAMA3_SPLIT:
            return "llama-bpe"
    return None


def _weights(checkpoint: Path):
    """(name, fp32 numpy array) for every tensor of the checkpoint's safetensors files."""
    from safetensors import safe_open

    for file in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).float().numpy()


def _tensor_count(checkpoint: Path) -> int:
    from safetensors import safe_open

    count = 0
    for file in checkpoint.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            count += len(list(handle.keys()))
    return count


def permute_for_rope(weights: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half query/key rows in llama.cpp's interleaved order (its converter's `permute`)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensors(gguf, checkpoint: Path, config: dict, architecture: str, quant: Quant):
    """(gguf name, array, raw type or None) for each tensor, converted and quantized as llama.cpp lays it out."""
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, architecture.upper()), config["num_hidden_layers"])
    tied = config.get("tie_word_embeddings", True)
    qtype = getattr(gguf.GGMLQuantizationType, quant.tensor_type)
    for name, array in _weights(checkpoint):
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # computed by llama.cpp; a tied output layer is the embedding
        found = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise TunelabError(f"tunelab export --format gguf: {checkpoint} holds a tensor llama.cpp's "
                               f"{architecture} has no place for ({name}); {FALLBACK}")
        if name.endswith("q_proj.weight"):
            array = permute_for_rope(array, heads)
        elif name.endswith("k_proj.weight"):
            array = permute_for_rope(array, kv_heads)
        yield found, *_encode(gguf, array, qtype)


def _encode(gguf, array: np.ndarray, qtype) -> tuple[np.ndarray, object]:
    """An array in the file's type: 1-D tensors (norms) stay fp32 and rows that do not fill whole quantization
    blocks fall back to fp16, as llama.cpp's converter does."""
    import numpy as np

    types = gguf.GGMLQuantizationType
    if array.ndim == 1 or qtype == types.F32:
        return array.astype(np.float32), None
    if qtype == types.F16:
        return array.astype(np.float16), None
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if array.shape[-1] % block:
        return array.astype(np.float16), None
    return gguf.quants.quantize(array, qtype), qtype


def _write(gguf, target: Path, checkpoint: Path, config: dict, architecture: str, tokenizer: TokenizerFields,
           quant: Quant, progress: bool) -> None:
    from tunelab.progress import bar

    writer = gguf.GGUFWriter(str(target), architecture)
    _write_hyperparameters(gguf, writer, checkpoint, config, quant)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer.pre)
    writer.add_token_list(tokenizer.tokens)
    writer.add_token_types(tokenizer.types)
    special = gguf.SpecialVocab(checkpoint, load_merges=True, n_vocab=len(tokenizer.tokens))
    # Said outright (transformers 5 no longer writes add_bos_token): llama.cpp then adds a BOS exactly when
    # the checkpoint's tokenizer does.
    special.add_special_token.setdefault("bos", tokenizer.adds_bos)
    special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer, quiet=True)
    stages = bar(_tensor_count(checkpoint), "gguf", unit="tensor", enabled=progress)
    try:
        for name, array, raw_type in _tensors(gguf, checkpoint, config, architecture, quant):
            writer.add_tensor(name, array, raw_dtype=raw_type)
            stages.update()
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
        stages.close()


def _write_hyperparameters(gguf, writer, checkpoint: Path, config: dict, quant: Quant) -> None:
    """The keys llama.cpp's converter writes for a Llama model."""
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_name(checkpoint.parent.name if checkpoint.name in ("best", "last") else checkpoint.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(getattr(gguf.LlamaFileType, quant.file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
