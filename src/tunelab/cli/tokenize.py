"""`tunelab tokenize`: show how a model's tokenizer encodes texts."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from tunelab.cli import app


@app.command()
def tokenize(
    model: str = typer.Argument(..., help="A model folder, a hub id, or 'minilm' (bundled)."),
    texts: List[str] = typer.Argument(..., help="One or more texts."),
    pair: Optional[List[str]] = typer.Option(None, "--pair", help="Second text of a pair, once per text."),
    max_length: int = typer.Option(16, help="N for the max_length and truncation examples (several texts)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Tokens, ids, special tokens, token_type_ids, attention mask, padding choices and the decode round trip."""
    from tunelab.errors import TunelabError
    from tunelab.modeling import load_tokenizer, resolve_model
    from tunelab.tokens import encode_texts, padding_strategies, round_trip

    if pair and len(pair) != len(texts):
        raise TunelabError(f"{len(texts)} texts but {len(pair)} --pair values; give one --pair per text")
    if max_length < 1:
        raise TunelabError(f"--max-length must be at least 1, got {max_length}")
    tokenizer = load_tokenizer(resolve_model(model))
    rows = encode_texts(tokenizer, texts, pair or None)
    strategies = padding_strategies(tokenizer, texts, pair or None, max_length) if len(texts) > 1 else []
    trips = [round_trip(tokenizer, t) for t in texts]
    if as_json:
        typer.echo(json.dumps({
            "encodings": [r.as_dict() for r in rows],
            "strategies": [{"name": s.name, "rows": [r.as_dict() for r in s.rows]} for s in strategies],
            "round_trip": [{"text": t, "decoded": d, "exact": ok} for t, (d, ok) in zip(texts, trips)],
        }, ensure_ascii=False, indent=2))
        return
    for i, (text, row) in enumerate(zip(texts, rows)):
        shown = text if not pair else f"{text} || {pair[i]}"
        typer.echo(f"text {i + 1}: {shown}  ({len(row.ids)} tokens)")
        typer.echo(f"  {'#':>3}  {'token':<16}{'id':>7}  special  type  mask")
        for j, token in enumerate(row.tokens):
            kind = row.token_type_ids[j] if row.token_type_ids is not None else "-"
            typer.echo(f"  {j:>3}  {token:<16}{row.ids[j]:>7}  {'yes' if row.special[j] else '':<7}  "
                       f"{kind:>4}  {row.attention_mask[j]:>4}")
        decoded, exact = trips[i]
        note = "exact" if exact else "differs (normalization such as lower-casing or accents)"
        typer.echo(f"  decode: {decoded!r}  round trip: {note}")
        typer.echo("")
    for strategy in strategies:
        typer.echo(f"{strategy.name}:")
        for i, row in enumerate(strategy.rows):
            typer.echo(f"  text {i + 1} ({sum(row.attention_mask)} real / {len(row.ids)}): {' '.join(row.tokens)}")
        typer.echo("")
