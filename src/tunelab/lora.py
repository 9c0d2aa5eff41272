"""LoRA through peft: wrap a model's attention and MLP projections with low-rank adapters, and save the
result twice: merged into a plain Hugging Face checkpoint (loads without peft) and as the adapter alone."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
# LoRA's usual peak rate (the QLoRA paper's and the peft / TRL examples' 2e-4): the adapters start at zero
# and are small, so they train at several times a full fine-tune's rate.
LORA_LEARNING_RATE = 2e-4


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | None = None  # comma-separated module names; None: peft's list for the architecture


def target_modules(model, requested: str | None) -> list[str]:
    """The module names to adapt: the requested ones (each must name Linear layers of the model), else
    peft's known list for the architecture, else a clear error naming the option."""
    import torch
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as KNOWN

    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"})
    if requested:
        names = [n.strip() for n in requested.split(",") if n.strip()]
        unknown = [n for n in names if n not in linear]
        if unknown:
            raise TunelabError(f"--lora-target-modules {', '.join(unknown)}: no such linear layer in "
                               f"{type(model).__name__}; its linear layers are named {', '.join(linear[:12])}")
        return names
    model_type = getattr(model.config, "model_type", None)
    if model_type not in KNOWN:
        raise TunelabError(f"--lora: no known target modules for {type(model).__name__} (model type "
                           f"'{model_type}'); name them with --lora-target-modules, for example "
                           f"--lora-target-modules {','.join(linear[:2]) or 'q_proj,v_proj'} (its linear layers: "
                           f"{', '.join(linear[:12])})")
    return list(KNOWN[model_type])


def apply_lora(model, task_type: str | None, options: LoraOptions):
    """The model with LoRA adapters on its target modules; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    if task_type is None:
        raise TunelabError("--lora applies to causal language models (--task causal-lm); drop --lora or train "
                           "the whole model")
    targets = target_modules(model, options.target_modules)
    config = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=targets, task_type=task_type)
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`: its FutureWarning is not the user's to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        wrapped = get_peft_model(model, config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info("LoRA r=%d alpha=%d on %s: %d trainable parameters of %d (%.2f%%)", options.r, options.alpha,
                ", ".join(targets), trainable, total, 100 * trainable / total)
    return wrapped


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged(model):
    """A copy of a LoRA model with the adapters folded into the weights: a plain transformers model."""
    return copy.deepcopy(model).merge_and_unload()


def save_adapter(model, folder: Path) -> None:
    """The adapter alone (adapter_config.json, adapter_model.safetensors), loadable with peft."""
    model.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
