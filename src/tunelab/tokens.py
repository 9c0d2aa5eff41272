"""What a tokenizer does to a text: tokens, ids, special tokens, segments, padding and truncation."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.errors import TunelabError


@dataclass
class Encoding:
    """One encoded row, token by token."""

    tokens: list[str]
    ids: list[int]
    special: list[bool]
    token_type_ids: list[int] | None
    attention_mask: list[int]
    decoded: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Strategy:
    """One padding/truncation choice applied to a batch of texts."""

    name: str
    arguments: dict
    rows: list[Encoding] = field(default_factory=list)


def _rows(tokenizer, encoded) -> list[Encoding]:
    rows = []
    for i, ids in enumerate(encoded["input_ids"]):
        special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        rows.append(Encoding(
            tokens=tokenizer.convert_ids_to_tokens(ids),
            ids=list(ids),
            special=[bool(s) for s in special],
            token_type_ids=list(encoded["token_type_ids"][i]) if "token_type_ids" in encoded else None,
            attention_mask=list(encoded["attention_mask"][i]),
            decoded=tokenizer.decode(ids, skip_special_tokens=True),
        ))
    return rows


def _check(texts: list[str]) -> None:
    if not texts or any(not t.strip() for t in texts):
        raise TunelabError("a text is empty; give non-empty texts to tokenize")


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None = None) -> list[Encoding]:
    """Each text (or pair) encoded on its own, with no padding or truncation."""
    _check(texts)
    return _rows(tokenizer, tokenizer(texts, pairs))


def padding_strategies(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> list[Strategy]:
    """What padding to the longest, padding to max_length, and truncation give for the same texts."""
    _check(texts)
    choices = [
        Strategy("padding='longest'", {"padding": "longest"}),
        Strategy(f"padding='max_length', max_length={max_length}, truncation=True",
                 {"padding": "max_length", "max_length": max_length, "truncation": True}),
        Strategy(f"truncation=True, max_length={max_length} (no padding)",
                 {"truncation": True, "max_length": max_length}),
    ]
    for choice in choices:
        choice.rows = _rows(tokenizer, tokenizer(texts, pairs, **choice.arguments))
    return choices


def round_trip(tokenizer, text: str) -> tuple[str, bool]:
    """Decode(encode(text)) and whether it gives the text back exactly."""
    decoded = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    return decoded, decoded == text
