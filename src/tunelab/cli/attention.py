"""`tunelab attention`: attention heatmaps (layers x heads) and hidden states of one input."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunelab.cli import app


@app.command()
def attention(
    model: str = typer.Argument(..., help="A model folder (a fine-tuned checkpoint too), a hub id, or 'minilm'."),
    text: str = typer.Argument(..., help="The text to inspect."),
    pair: Optional[str] = typer.Option(None, "--pair", help="Second text of a pair."),
    output: str = typer.Option("attention.png", "--output", "-o", help="PNG to write."),
    layer: Optional[int] = typer.Option(None, help="Only this layer (0-based): its heads and their average."),
    head: Optional[int] = typer.Option(None, help="With --layer: only this head (0-based)."),
    average: bool = typer.Option(False, help="One head-averaged map per layer instead of the full grid."),
    save_attentions: Optional[str] = typer.Option(None, help="Also write the attention tensors (.npz)."),
    hidden_states: Optional[str] = typer.Option(None, help="Also write every layer's hidden states (.npz)."),
) -> None:
    """Write a PNG grid of attention heatmaps with the tokens on both axes."""
    from tunelab import attention as lib

    model_obj, tokenizer = lib.load_encoder(model)
    inspection = lib.inspect(model_obj, tokenizer, text, pair)
    inspection.check(layer, head)
    picture = lib.plot_attention(inspection, Path(output), layer, head, average)
    typer.echo(f"tokens ({len(inspection.tokens)}): {' '.join(inspection.tokens)}")
    typer.echo(f"attention: {inspection.num_layers} layers x {inspection.num_heads} heads -> {picture}")
    if save_attentions:
        path = lib.save_attentions(inspection, Path(save_attentions))
        typer.echo(f"attentions {tuple(inspection.attentions.shape)} (layers, heads, tokens, tokens) -> {path}")
    if hidden_states:
        path = lib.save_hidden_states(inspection, Path(hidden_states))
        typer.echo(f"hidden_states {tuple(inspection.hidden_states.shape)} (layers + embeddings, tokens, hidden) -> {path}")
