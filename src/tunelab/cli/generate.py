"""`tunelab generate`: continue a prompt with a causal language model, streamed to the terminal."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from tunelab.cli import app


@app.command()
def generate(
    arguments: List[str] = typer.Argument(..., metavar="[MODEL] PROMPT",
                                          help="The prompt, after an optional model (hub id, folder or 'smollm2', the bundled default)."),
    max_new_tokens: int = typer.Option(128, help="Tokens to generate."),
    greedy: bool = typer.Option(False, help="Greedy decoding instead of sampling."),
    temperature: float = typer.Option(0.8, help="Sampling temperature."),
    top_k: int = typer.Option(0, help="Sample from the k most likely tokens (0: no cut)."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling: the smallest set of tokens with this total probability."),
    num_return_sequences: int = typer.Option(1, help="Independent continuations."),
    repetition_penalty: float = typer.Option(1.1, help="Above 1 discourages repeats."),
    seed: Optional[int] = typer.Option(None, help="Random seed: the same seed gives the same text."),
    chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Wrap the prompt in the model's chat template (default: when it has one)."),
    stats: bool = typer.Option(True, help="Print tokens/s to stderr at the end."),
    progress: bool = typer.Option(True, help="Show the bundled model's one-time conversion on stderr (terminals only)."),
) -> None:
    """Generate text; tokens are printed as they come."""
    from tunelab.errors import TunelabError
    from tunelab.generate import GenerationOptions, generate as run, load_generator

    if len(arguments) > 2:
        raise TunelabError(f"expected [MODEL] PROMPT, got {len(arguments)} arguments; quote the prompt")
    model_name, prompt = (None, arguments[0]) if len(arguments) == 1 else arguments
    options = GenerationOptions(max_new_tokens=max_new_tokens, greedy=greedy, temperature=temperature, top_k=top_k,
                                top_p=top_p, num_return_sequences=num_return_sequences,
                                repetition_penalty=repetition_penalty, seed=seed, chat=chat)
    options.check()  # before the model loads
    if not prompt.strip():
        raise TunelabError("the prompt is empty; give some text to continue")
    model, tokenizer = load_generator(model_name, progress=progress)

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    result = run(model, tokenizer, prompt, options, on_text=show if num_return_sequences == 1 else None)
    if num_return_sequences == 1:
        sys.stdout.write("\n")
    else:
        for i, text in enumerate(result.texts, 1):
            typer.echo(f"--- {i}\n{text}")
    if stats:
        typer.echo(f"[{result.new_tokens} tokens in {result.seconds:.1f} s, {result.tokens_per_second:.1f} tokens/s]",
                   err=True)
