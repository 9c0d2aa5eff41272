"""Look inside an encoder: attention maps per layer and head, hidden states per layer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)


@dataclass
class Inspection:
    """One input run through a model with every attention map and hidden state kept."""

    tokens: list[str]
    attentions: np.ndarray  # [layers, heads, tokens, tokens]; each row sums to 1
    hidden_states: np.ndarray  # [layers + 1, tokens, hidden]; index 0 is the embeddings

    @property
    def num_layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def num_heads(self) -> int:
        return self.attentions.shape[1]

    def check(self, layer: int | None, head: int | None) -> None:
        """Layer and head indices are 0-based; say the valid range when one is outside it."""
        problems = []
        if layer is not None and not 0 <= layer < self.num_layers:
            problems.append(f"--layer {layer} is out of range: the model has {self.num_layers} layers "
                            f"(0 to {self.num_layers - 1})")
        if head is not None and not 0 <= head < self.num_heads:
            problems.append(f"--head {head} is out of range: each layer has {self.num_heads} heads "
                            f"(0 to {self.num_heads - 1})")
        if head is not None and layer is None:
            problems.append("--head needs --layer too")
        if problems:
            raise TunelabError("; ".join(problems))


def load_encoder(name: str | None):
    """A model (base or with a head) with eager attention, which returns attention maps; and its tokenizer."""
    from transformers import AutoModel

    from tunelab.modeling import load_tokenizer, resolve_model

    path = resolve_model(name)
    tokenizer = load_tokenizer(path)
    try:
        # sdpa returns no attention weights: eager computes them explicitly.
        model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise TunelabError(f"could not load model '{name}': {str(exc).splitlines()[0]}") from None
    return model, tokenizer


def inspect(model, tokenizer, text: str, pair: str | None = None, max_length: int = 512) -> Inspection:
    """Run one text (or pair) and keep every layer's attention and hidden state."""
    import torch

    if not text or not text.strip():
        raise TunelabError("the text is empty; give a sentence to inspect")
    encoded = tokenizer(text, pair, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**encoded, output_attentions=True, output_hidden_states=True)
    if not outputs.attentions or outputs.attentions[0] is None:
        raise TunelabError("this model returned no attention maps; it needs eager attention support")
    attentions = torch.stack(outputs.attentions)[:, 0].float().numpy()
    hidden = torch.stack(outputs.hidden_states)[:, 0].float().numpy()
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
    return Inspection(tokens=tokens, attentions=attentions, hidden_states=hidden)


def save_attentions(inspection: Inspection, path: Path) -> Path:
    """attentions [layers, heads, tokens, tokens] and tokens, as .npz (numpy.load reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, attentions=inspection.attentions, tokens=np.array(inspection.tokens))
    return path


def save_hidden_states(inspection: Inspection, path: Path) -> Path:
    """hidden_states [layers + 1, tokens, hidden] (0: embeddings) and tokens, as .npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, hidden_states=inspection.hidden_states, tokens=np.array(inspection.tokens))
    return path


def plot_attention(inspection: Inspection, path: Path, layer: int | None = None, head: int | None = None,
                   average: bool = False) -> Path:
    """A PNG of attention maps, tokens on both axes (rows attend to columns).

    No layer: the full layers x heads grid (or one head-averaged map per layer
    with `average`). A layer: its heads side by side plus their average. A
    layer and a head: that single map, large.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inspection.check(layer, head)
    tokens, maps = inspection.tokens, inspection.attentions
    if layer is not None and head is not None:
        panels = [[(maps[layer, head], f"layer {layer}, head {head}")]]
    elif layer is not None:
        row = [(maps[layer, h], f"head {h}") for h in range(inspection.num_heads)]
        panels = [row + [(maps[layer].mean(0), "average")]]
    elif average:
        panels = [[(maps[i].mean(0), f"layer {i}") for i in range(inspection.num_layers)]]
    else:
        panels = [[(maps[i, h], f"L{i} H{h}") for h in range(inspection.num_heads)]
                  for i in range(inspection.num_layers)]
    rows, cols = len(panels), len(panels[0])
    cell = max(1.6, 0.16 * len(tokens)) if rows * cols > 1 else max(5.0, 0.35 * len(tokens))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell + 1, rows * cell + 1), squeeze=False)
    font = max(3.5, min(9.0, 60 / max(len(tokens), 1))) if rows * cols > 1 else 9
    for r, row in enumerate(panels):
        for c, (matrix, title) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
            ax.set_title(title, fontsize=font + 1)
            ax.set_xticks(range(len(tokens)))
            ax.set_yticks(range(len(tokens)))
            # Token labels on the outer edge of the grid only, so they stay legible.
            ax.set_xticklabels(tokens if r == rows - 1 else [], rotation=90, fontsize=font)
            ax.set_yticklabels(tokens if c == 0 else [], fontsize=font)
            ax.tick_params(length=0)
    fig.suptitle("attention (rows: query token, columns: attended token)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
