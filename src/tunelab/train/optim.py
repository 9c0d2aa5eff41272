"""The optimizer side of training: parameter groups, layer-wise decay, the schedule, clipping."""

from __future__ import annotations

import math
import re

import torch

HEAD_PREFIXES = ("classifier", "score", "pre_classifier")
# The defaults, chosen by measurement (BENCHMARKS.md, "Defaults"): the usual peak rate of base-width (768)
# encoders, which is also the Trainer's default, scaled inversely with the width (narrow models such as MiniLM
# train best at about twice it), and a fixed, higher rate for the newly initialized head, which otherwise
# needs more than an epoch to leave its starting point (GoEmotions: no label over 0.5 after one epoch).
BASE_LEARNING_RATE = 5e-5
BASE_WIDTH = 768
HEAD_LEARNING_RATE = 1e-3
# Where a transformer layer's index sits in parameter names: BERT "encoder.layer.3.", Llama "layers.3.",
# GPT-2 "h.3.", T5 "block.3.".
LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING_PARTS = {"embeddings", "embed_tokens", "embed_positions", "wte", "wpe"}


def _layer_scale(name: str, num_layers: int | None, layer_decay: float) -> float:
    """Layer-wise learning-rate decay: the top layer and everything above it (pooler, head) get the full
    rate, each layer below `layer_decay` times the rate of the one above, the embeddings the least."""
    if layer_decay == 1.0 or not num_layers:
        return 1.0
    match = LAYER_INDEX.search(f".{name}")
    if match:
        depth = int(match.group(1)) + 1
    elif EMBEDDING_PARTS.intersection(name.split(".")):
        depth = 0
    else:
        return 1.0
    return layer_decay ** (num_layers - depth)


def is_head(name: str, prefixes: tuple[str, ...] = HEAD_PREFIXES) -> bool:
    """Whether a parameter belongs to the task head (its modules are named by `prefixes`: the task's) or the
    pooler that feeds it, which train at the head's rate. Language models have none: their output layer is
    pretrained."""
    return name.startswith(prefixes) or ".pooler." in f".{name}"


def _param_groups(model: torch.nn.Module, weight_decay: float, head_learning_rate: float | None = None,
                  learning_rate: float | None = None, layer_decay: float = 1.0,
                  head_prefixes: tuple[str, ...] = HEAD_PREFIXES) -> list[dict]:
    """No weight decay on biases and normalization weights (all 1-D tensors); optionally a separate head
    rate (the randomly initialized head plus the pooler that feeds it) and layer-wise decay.

    Groups without "lr" take the optimizer's default rate.
    """
    config = getattr(model, "config", None)
    num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    groups: dict[tuple[bool, bool, float], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        head = head_learning_rate is not None and is_head(name, head_prefixes)
        decays = not (parameter.ndim < 2 or "norm" in name.lower())
        scale = _layer_scale(name, num_layers, layer_decay)
        groups.setdefault((head, decays, scale), []).append(parameter)
    out = []
    for (head, decays, scale), params in groups.items():
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if head:
            group["lr"] = head_learning_rate * scale
        elif scale != 1.0:
            group["lr"] = learning_rate * scale
        out.append(group)
    return out


def learning_rates(config, model_config, task=None) -> tuple[float, float]:
    """The encoder's and the head's peak rates: the ones given, else the defaults for this model's width
    (5e-5 x 768 / hidden size, kept within [1e-5, 1e-3]; LoRA adapters 2e-4) and HEAD_LEARNING_RATE (or the encoder's rate when
    that is higher: the head never trains slower than the layers below it unless told to). A task may set its
    own defaults (preference tuning moves a model far less than fine-tuning does)."""
    width = getattr(model_config, "hidden_size", None) or getattr(model_config, "n_embd", None) or BASE_WIDTH
    default = float(f"{min(1e-3, max(1e-5, BASE_LEARNING_RATE * BASE_WIDTH / width)):.3g}")
    if getattr(config, "lora", False):
        from tunelab.lora import LORA_LEARNING_RATE

        default = getattr(task, "lora_learning_rate", None) or LORA_LEARNING_RATE
    elif getattr(task, "learning_rate", None):
        default = task.learning_rate
    encoder = config.learning_rate or default
    head = config.head_learning_rate or max(HEAD_LEARNING_RATE, encoder)
    return encoder, head


def build_optimizer(model: torch.nn.Module, config, learning_rate: float, head_learning_rate: float,
                    head_prefixes: tuple[str, ...] = HEAD_PREFIXES) -> torch.optim.Optimizer:
    """AdamW over the parameter groups. The fused kernel (CPU and CUDA) does the same update in one pass;
    on this class of CPU the default multi-tensor step costs as much as a MiniLM forward and backward pass."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    groups = _param_groups(model, config.weight_decay, head_learning_rate, learning_rate, config.layer_decay,
                           head_prefixes)
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, total_steps: int):
    """A linear warm-up to the peak rate, then `name` (one of LR_SCHEDULERS) over the remaining steps."""
    from transformers import get_scheduler

    kind = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[name]
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def rate_now(optimizer: torch.optim.Optimizer, peak: float) -> float:
    """The scheduled --learning-rate now. Param groups may run at other rates (the head, layer decay), so
    the first group's rate is read as a fraction of its own peak (set by the scheduler as initial_lr)."""
    group = optimizer.param_groups[0]
    return peak * group["lr"] / group["initial_lr"]


def clip_gradients(accelerator, model: torch.nn.Module, max_norm: float, measure: bool = True) -> float | None:
    """Scale the gradients down to a total norm of `max_norm` (0: never) and return the norm before
    clipping; None when there is nothing to clip and `measure` is False (or the engine reports no norm).

    Measuring costs a pass over the gradients and clipping another (about 10 ms of a 140 ms MiniLM step
    on this CPU, bench/clip_cost.py), so without clipping the loop measures only the steps it logs.
    """
    if not max_norm and not measure:
        return None
    # accelerate unscales fp16 gradients first and knows how FSDP and DeepSpeed shards combine.
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    return None if norm is None else float(norm)
