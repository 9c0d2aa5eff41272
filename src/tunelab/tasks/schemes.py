"""Entity tag schemes: IOB1, IOB2, BIOES and plain tags, detected and normalized to IOB2."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("IOB1", "IOB2", "BIOES", "IO")


def split_tag(tag: str) -> tuple[str, str | None]:
    """('B', 'PER') for 'B-PER'; ('O', None) for 'O'; ('', 'PER') for a plain tag without a prefix."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in "BIES" and tag[1] in "-_":
        return tag[0], tag[2:]
    return "", tag


@dataclass
class Normalized:
    """Sentences' tags in IOB2, the scheme found, and the tags that broke it (repaired)."""

    tags: list[list[str]]
    scheme: str
    repaired: int = 0
    first_repair: str = ""  # "sentence 12: I-PER after B-LOC"


def _starts_entity(prefix: str, kind: str | None, previous: tuple[str, str | None]) -> bool:
    """Whether an I- (or E-) tag begins an entity: nothing of its type continues before it."""
    before_prefix, before_kind = previous
    return before_kind != kind or before_prefix in ("O", "E", "S")


def detect_scheme(sentences: list[list[str]]) -> str:
    """BIOES when S- or E- tags occur; IO when no tag has a prefix; IOB1 when entities mostly start with
    I- (as CoNLL-2003 is distributed); IOB2 otherwise."""
    prefixes: set[str] = set()
    i_starts = b_tags = 0
    for tags in sentences:
        previous: tuple[str, str | None] = ("O", None)
        for tag in tags:
            prefix, kind = split_tag(tag)
            prefixes.add(prefix)
            if prefix == "I" and _starts_entity(prefix, kind, previous):
                i_starts += 1
            b_tags += prefix == "B"
            previous = (prefix, kind)
    if prefixes & {"S", "E"}:
        return "BIOES"
    if not prefixes & {"B", "I"}:
        return "IO"
    return "IOB1" if i_starts and i_starts >= b_tags else "IOB2"


def to_iob2(sentences: list[list[str]], scheme: str | None = None) -> Normalized:
    """Convert every sentence's tags to IOB2. In IOB2 and BIOES an I- (or E-) tag that starts an entity
    breaks the scheme; it is repaired as B- and counted. IOB1 starts entities with I- by design."""
    scheme = scheme or detect_scheme(sentences)
    out, repaired, first = [], 0, ""
    for number, tags in enumerate(sentences, 1):
        converted = []
        previous: tuple[str, str | None] = ("O", None)
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix == "O":
                converted.append("O")
            elif prefix == "":  # a plain tag: a run of the same tag is one entity
                converted.append(("I-" if previous == ("", kind) else "B-") + kind)
            elif prefix in ("B", "S"):
                converted.append(f"B-{kind}")
            else:  # I or E
                starts = _starts_entity(prefix, kind, previous)
                if starts and scheme != "IOB1":
                    repaired += 1
                    if not first:
                        before = tags[len(converted) - 1] if converted else "the sentence start"
                        first = f"sentence {number}: {tag} after {before}"
                converted.append(("B-" if starts else "I-") + kind)
            previous = (prefix, kind)
        out.append(converted)
    return Normalized(out, scheme, repaired, first)


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) word spans of IOB2 tags, end exclusive; a stray I- after O or another type
    starts an entity (the lenient reading, as transformers' "simple" aggregation does)."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, this = split_tag(tag)
        if kind is not None and (prefix in ("O", "B", "S", "") or this != kind):
            spans.append((kind, start, i))
            kind = None
        if prefix != "O" and kind is None:
            kind, start = this, i
    return spans


def inside_tag(tag: str) -> str:
    """The tag a word's later pieces carry with --label-all-tokens: B-X becomes I-X."""
    prefix, kind = split_tag(tag)
    return f"I-{kind}" if prefix == "B" else tag
