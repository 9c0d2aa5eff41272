"""Token classification (named entities): one tag per word, scored per entity with seqeval.

Words are tokenized with the fast tokenizer's `word_ids`: the first piece of a
word carries its tag and the other pieces are ignored by the loss (or carry the
I- tag with --label-all-tokens). A sentence longer than --max-length pieces is
cut into overlapping windows of whole words, and each word is predicted from
the window where it has the most context, so every word gets exactly one tag.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Checkpoint, Scores, Settings, Task, TaskData
from tunelab.tasks.schemes import entities, inside_tag, to_iob2
from tunelab.tasks.texts import PAIR

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

METRICS = ("f1", "precision", "recall", "accuracy")
# Words of raw text: runs of word characters (keeping inner periods, hyphens and apostrophes: "U.S",
# "well-known", "O'Neil"), or one other visible character.
WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")

TOKENS_COLUMN = Option("tokens_column", str, "tokens", "Token classification: the column of word lists.",
                       commands=("train", "evaluate", "predict"))
TAGS_COLUMN = Option("tags_column", str, "tags", "Token classification: the column of tag lists.",
                     commands=("train", "evaluate"))
TAG_COLUMN = Option("tag_column", int, -1, "Token classification, CoNLL files: the tag column, 0-based (-1: the "
                    "last).", commands=("train", "evaluate"))
LABEL_ALL_TOKENS = Option("label_all_tokens", bool, False, "Token classification: label every piece of a word (B- "
                          "becomes I- after the first), not only the first.", stored="info")


@dataclass
class Entity:
    type: str
    text: str
    start: int  # character offset in the text (word index for pre-tokenized input)
    end: int  # exclusive
    score: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Tagging:
    """One input's words, their tags and scores, and the entities they form."""

    tokens: list[str]
    tags: list[str]
    scores: list[float]
    entities: list[Entity] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"entities": [e.as_dict() for e in self.entities], "tokens": self.tokens, "tags": self.tags,
                "scores": self.scores}


@dataclass
class Window:
    """One encoded row: a sentence's words [start, end) and the words it predicts."""

    sentence: int
    start: int
    end: int
    owned: list[int]  # words (sentence indices) this window predicts, in order
    positions: list[int] = field(default_factory=list)  # where each owned word's first piece is in the row


class TokenClassificationTask(Task):
    name = "token-classification"
    summary = "named entities: CoNLL files or word and tag lists"
    options = (TOKENS_COLUMN, TAGS_COLUMN, TAG_COLUMN, LABEL_ALL_TOKENS)
    inputs = (PAIR,)  # read only to refuse it: a tagger reads single texts
    item_noun = "texts"
    view = "tag"
    request_help = 'JSON: {"texts": [...]} or {"text": "..."}; each text\'s entities with character offsets.'
    pipeline_tag = "token-classification"
    architecture_suffix = "ForTokenClassification"
    metrics = METRICS
    endpoint = "/v1/tag"
    formats = ("table", "jsonl", "conll")
    action = "Find entities"
    packs = True
    example = "Alice visited Paris."

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        frame, column = splits.train, TOKENS_COLUMN.value(spec.options)
        if from_conll(frame):
            return True
        return column in frame and len(frame) > 0 and is_list(frame[column].iloc[0])

    def sentences(self, spec: "DataSpec", frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """tokens and tags (names) of every row, checked."""
        from tunelab.data import drop_blank, select_columns

        options = spec.options
        tag_column, tokens_column = TAG_COLUMN.value(options), TOKENS_COLUMN.value(options)
        if from_conll(frame):
            width = len(frame["columns"].iloc[0][0])
            if width < 2:
                raise TunelabError(f"{where} has one column; a CoNLL file needs the word and a tag column")
            if not -width <= tag_column < width or tag_column == 0 or tag_column == -width:
                raise TunelabError(f"--tag-column {tag_column} is not a tag column of {where}, which has "
                                   f"{width} columns (the word is column 0); pass 1 to {width - 1} or -1 (the last)")
            tags = [[fields[tag_column] for fields in sentence] for sentence in frame["columns"]]
            out = pd.DataFrame({"tokens": frame["tokens"].tolist(), "tags": tags})
        else:
            if tokens_column not in frame or not is_list(next(iter(frame[tokens_column]), None)):
                found = ", ".join(frame.columns)
                raise TunelabError(
                    f"--task token-classification needs words: a CoNLL file, or a column of token lists "
                    f"(--tokens-column '{tokens_column}' {'holds no lists' if tokens_column in frame else 'not found'} "
                    f"in {where}; columns found: {found}); pass --task classification for whole-text labels")
            out = select_columns(frame, [("--tokens-column", tokens_column, "tokens"),
                                         ("--tags-column", TAGS_COLUMN.value(options), "tags")], where)
            out = out.assign(tokens=[as_list(v) for v in out["tokens"]], tags=[as_list(v) for v in out["tags"]])
            for number, (tokens, tags) in enumerate(zip(out["tokens"], out["tags"]), 1):
                if len(tokens) != len(tags):
                    raise TunelabError(f"{where}, row {number}: {len(tokens)} tokens but {len(tags)} tags; "
                                       "give one tag per token")
            out = out.assign(tokens=[[str(t) for t in v] for v in out["tokens"]],
                             tags=[[str(t) for t in v] for v in out["tags"]])
        return drop_blank(out, where, ["tokens"], None)

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows, split_validation

        # Tags are normalized per file, in file order, so a repair names the sentence as the file has it.
        train = self.sentences(spec, splits.train, splits.train_where)
        normalized = to_iob2(train["tags"].tolist())
        scheme = normalized.scheme
        logger.info("tags: %s scheme found, normalized to IOB2", scheme)
        report_repairs(normalized, splits.train_where)
        train = train.assign(tags=normalized.tags)
        validation = None
        if splits.validation is not None:
            validation = self.sentences(spec, splits.validation, splits.validation_where)
            checked = to_iob2(validation["tags"].tolist(), scheme)
            report_repairs(checked, splits.validation_where)
            validation = validation.assign(tags=checked.tags)
        train = limit_rows(train, spec.limit, spec.seed)
        if validation is None:
            train, validation = split_validation(train, spec)
        repaired = normalized.repaired + (checked.repaired if splits.validation is not None else 0)
        names = tag_order({t for tags in train["tags"] for t in tags})
        validation = with_ids(validation, validation["tags"].tolist(), names, "validation tag {} never appears in "
                              "the training data; remove those sentences from the validation data or add training "
                              "sentences with that tag")
        train = with_ids(train, train["tags"].tolist(), names, "")
        return TaskData(train.reset_index(drop=True), validation.reset_index(drop=True), self, splits.name,
                        label_names=names, label_values=list(names),
                        info={"tag_scheme": scheme, "repaired_tags": repaired, "label_names": names})

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: Checkpoint) -> TaskData:
        from tunelab.data import limit_rows

        frame = limit_rows(self.sentences(spec, splits.train, splits.train_where), spec.limit, spec.seed)
        truth = to_iob2(frame["tags"].tolist(), checkpoint.settings.info.get("tag_scheme")).tags
        names = checkpoint.label_names
        frame = with_ids(frame, truth, names, f"tag {{}} is not one the checkpoint knows ({', '.join(names)}); "
                         "check --tag-column / --tags-column or evaluate on data with the same tags")
        return TaskData(frame.iloc[:0], frame, self, splits.name, label_names=names,
                        info=dict(checkpoint.settings.info))

    def label_counts(self, data: TaskData) -> dict[str, int]:
        """Entities per type in the training sentences."""
        from collections import Counter

        counts = Counter(kind for tags in data.train["tags"] for kind, _, _ in
                         entities([data.label_names[t] for t in tags]))
        return dict(sorted(counts.items()))

    def default_metric(self, data: TaskData) -> str:
        return "f1"

    # ------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_kwargs(self, data: TaskData) -> dict:
        names = data.label_names
        return {"num_labels": len(names), "id2label": dict(enumerate(names)),
                "label2id": {n: i for i, n in enumerate(names)}}

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        """Windows of every sentence with first-piece labels; evaluation rows label only the words the
        window predicts, so each word counts once."""
        tags = frame["tags"].tolist() if "tags" in frame else None
        names = settings.info.get("label_names")
        inside = None
        if settings.option(LABEL_ALL_TOKENS) and training and names:
            ids = {n: i for i, n in enumerate(names)}
            inside = [ids.get(inside_tag(n), i) for i, n in enumerate(names)]
        return encode_words(tokenizer, frame["tokens"].tolist(), settings.max_length, settings.stride, tags,
                            training, inside)

    def prepare(self, encoded: "Encoded", batch_size: int) -> None:
        from tunelab.collate import IGNORE

        labeled = sum(sum(label != IGNORE for label in row) for row in encoded.labels)
        self.words_per_batch = max(labeled / max(len(encoded), 1), 1.0) * batch_size

    def loss(self, model, batch: dict, label_smoothing: float = 0.0):
        """The summed cross-entropy over the batch's labeled words, divided by the words an average batch
        holds. Length-grouped batches differ several-fold in how many words they hold; the model's mean over
        each batch's own words would weigh a word in a batch of short sentences several times more than one
        in a batch of long sentences (on CoNLL-2003 that cost about one F1 point, BENCHMARKS.md)."""
        import torch

        from tunelab.collate import IGNORE, model_inputs

        inputs = model_inputs(batch)
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        total = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                                  ignore_index=IGNORE, reduction="sum")
        # Before prepare() (a caller training by hand): this batch's own word count, the model's mean.
        words = getattr(self, "words_per_batch", None) or max(int((labels != IGNORE).sum()), 1)
        return total / words

    # ------------------------------------------------------------ evaluation
    def outputs(self, outputs, batch: dict) -> tuple:
        return outputs["logits"].argmax(-1), batch["labels"]

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        words: dict[tuple[int, int], int] = {}
        for (prediction, _), window in zip(rows, encoded.meta):
            for word, position in zip(window.owned, window.positions):
                words[(window.sentence, word)] = int(prediction[position])
        names = data.label_names
        truth = [[names[t] for t in tags] for tags in data.validation["tags"]]
        guess = [[names[words[(s, w)]] if (s, w) in words else "O" for w in range(len(tags))]
                 for s, tags in enumerate(truth)]
        return score_tags(truth, guess)

    def output_axes(self) -> dict[str, dict[int, str]]:
        return {"logits": {0: "batch", 1: "sequence"}}

    # ------------------------------------------------------------ prediction
    def encode_items(self, predictor, items: list) -> "Encoded":
        """Word lists (texts split into words first) as windows of the checkpoint's length."""
        sentences = [words for words, _ in (split_words(item, i) for i, item in enumerate(items))]
        return encode_words(predictor.tokenizer, sentences, predictor.max_length, predictor.settings.stride, None,
                            False)

    def export_items(self) -> list:
        return [self.example, self.example.split()[0]]

    def tag_words(self, predictor, sentences: list[list[str]]) -> list[tuple[list[str], list[float]]]:
        """Each sentence's tags and their probabilities, one per word."""
        import torch

        encoded = self.encode_items(predictor, sentences)
        names = predictor.label_names
        found: list[list[tuple[str, float] | None]] = [[None] * len(s) for s in sentences]
        for outputs, window in zip(predictor.run(encoded), encoded.meta):
            probabilities = torch.softmax(torch.from_numpy(np.asarray(outputs["logits"])), -1).numpy()
            for word, position in zip(window.owned, window.positions):
                p = probabilities[position]
                found[window.sentence][word] = (names[int(p.argmax())], float(p.max()))
        # A word the tokenizer turns into no piece at all gets O.
        return [([f[0] if f else "O" for f in row], [f[1] if f else 1.0 for f in row]) for row in found]

    def predict(self, predictor, inputs, pairs=None) -> list[Tagging]:
        """Raw texts (strings) give entities with character offsets; token lists give per-word tags (and
        entities with word offsets)."""
        if isinstance(inputs, (str, dict)):
            inputs = [inputs]
        if pairs:
            refuse_pairs(len(pairs))
        split = [split_words(item, i) for i, item in enumerate(inputs)]
        tagged = self.tag_words(predictor, [words for words, _ in split])
        out = []
        for item, (words, offsets), (tags, scores) in zip(inputs, split, tagged):
            text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
            found = []
            for kind, start, end in entities(tags):
                score = float(np.mean(scores[start:end]))
                if offsets is None:
                    found.append(Entity(kind, " ".join(words[start:end]), start, end, score))
                else:
                    a, b = offsets[start][0], offsets[end - 1][1]
                    found.append(Entity(kind, text[a:b], a, b, score))
            out.append(Tagging(words, tags, [round(s, 6) for s in scores], found))
        return out

    def items_from_arguments(self, arguments: list[str], given: dict) -> list:
        if given.get("pair"):
            refuse_pairs(len(given["pair"]))
        return list(arguments)

    def items_from_lines(self, lines: list[str]) -> list:
        pairs = [line for line in lines if "\t" in line]
        if pairs and len(pairs) == len(lines):
            refuse_pairs(len(pairs))
        return list(lines)

    def items_from_frame(self, frame: pd.DataFrame, options: dict, where: str) -> list:
        """A CoNLL file's sentences (their lines kept, to write back), a column of word lists, or texts."""
        if from_conll(frame):
            return [{"tokens": tokens, "conll": lines} for tokens, lines in zip(frame["tokens"], frame["columns"])]
        column = TOKENS_COLUMN.value(options)
        if column in frame and len(frame) and is_list(frame[column].iloc[0]):
            return [list(v) for v in frame[column]]
        from tunelab.tasks.texts import TextInputs

        return [item["text"] for item in TextInputs.items_from_frame(self, frame, options, where)]

    def request_items(self, body: dict) -> list:
        from tunelab.serve.limits import RequestError
        from tunelab.tasks.texts import TextInputs

        if body.get("text_pair") or body.get("text_pairs"):
            raise RequestError(422, "a token-classification checkpoint tags single texts; drop text_pair(s)")
        return [item["text"] for item in TextInputs.request_items(self, body)]

    def item_texts(self, item) -> list[tuple[str, str, bool]]:
        return [("text", item if isinstance(item, str) else " ".join(map(str, item)), False)]

    def describe(self, predictor) -> dict:
        return {"labels": predictor.label_names}

    def render(self, items: list, predictions: list[Tagging], output_format: str, predictor) -> str:
        import json

        if output_format == "jsonl":
            rows = []
            for item, tagging in zip(items, predictions):
                shown = {"tokens": item["tokens"]} if isinstance(item, dict) else \
                    {"text" if isinstance(item, str) else "tokens": item}
                rows.append(json.dumps({**shown, **tagging.as_dict()}, ensure_ascii=False))
            return "".join(row + "\n" for row in rows)
        if output_format == "conll":
            # The input written back with the predicted tag as one more column (word and tag for texts).
            blocks = []
            for item, tagging in zip(items, predictions):
                fields = item["conll"] if isinstance(item, dict) and "conll" in item else [[w] for w in tagging.tokens]
                blocks.append("\n".join(" ".join([*f, tag]) for f, tag in zip(fields, tagging.tags)))
            return "\n\n".join(blocks) + "\n"
        lines = []
        for item, tagging in zip(items, predictions):
            words = item["tokens"] if isinstance(item, dict) else item
            shown = words if isinstance(words, str) else " ".join(words)
            lines.append(shown if len(shown) <= 100 else shown[:97] + "...")
            if not tagging.entities:
                lines.append("  (no entities)")
            lines += [f"  {e.type:<8} {e.score:.3f}  {e.start}-{e.end}  {e.text}" for e in tagging.entities]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- helpers


def refuse_pairs(count: int) -> None:
    raise TunelabError(f"a token-classification checkpoint tags single texts, but {count} second texts of pairs "
                       "were given; drop --pair (or the TAB-separated second texts)")


def split_words(item, number: int) -> tuple[list[str], list[tuple[int, int]] | None]:
    """An input's words, and for a text their character spans (None for a word list)."""
    if isinstance(item, dict):
        item = item.get("text", item.get("tokens"))
    if isinstance(item, str):
        matches = list(WORD.finditer(item))
        if not matches:
            raise TunelabError(f"input {number + 1} is empty; give non-empty texts")
        return [m.group() for m in matches], [(m.start(), m.end()) for m in matches]
    words = [str(w) for w in item]
    if not words:
        raise TunelabError(f"input {number + 1} holds no tokens; give at least one word")
    return words, None


def with_ids(frame: pd.DataFrame, tags: list[list[str]], names: list[str], refusal: str) -> pd.DataFrame:
    """The frame with its tags as ids of `names`; tags outside them are refused (`refusal` names them)."""
    unknown = unknown_tags(tags, names)
    if unknown:
        raise TunelabError(refusal.format(unknown))
    ids = {name: i for i, name in enumerate(names)}
    return frame.assign(tags=[[ids[t] for t in row] for row in tags])


def unknown_tags(sentences: list[list[str]], known: list[str]) -> str:
    """The tags outside `known` with how many words carry each ("'B-MISC' (3 words)"), or ""."""
    counts: dict[str, int] = {}
    allowed = set(known)
    for tags in sentences:
        for tag in tags:
            if tag not in allowed:
                counts[tag] = counts.get(tag, 0) + 1
    return ", ".join(f"'{t}' ({n} words)" for t, n in sorted(counts.items()))


def report_repairs(normalized, where: str) -> None:
    if normalized.repaired:
        logger.warning("%s: %d tags break the %s scheme (an I- tag that starts an entity; first in %s); repaired "
                       "as B- tags", where, normalized.repaired, normalized.scheme, normalized.first_repair)


def from_conll(frame: pd.DataFrame) -> bool:
    """Whether the frame came from data.read_conll (tokens, and each token's fields)."""
    return "columns" in frame and "tokens" in frame


def is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def as_list(value) -> list:
    if isinstance(value, str):  # a JSON list written into a CSV cell
        import json

        try:
            value = json.loads(value)
        except ValueError:
            value = value.split()
    return list(value) if is_list(value) else []


def tag_order(tags: set[str]) -> list[str]:
    """O first, then by entity type, B- before I-."""
    def key(tag: str):
        return (tag != "O", tag[2:] if len(tag) > 2 and tag[1] == "-" else tag, tag[:1])

    return sorted(tags | {"O"}, key=key)


def windows(counts: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) whose pieces fit in `budget`; consecutive ranges overlap by about
    `stride` pieces (whole words). A single word longer than the budget gets a window of its own."""
    n = len(counts)
    if sum(counts) <= budget:
        return [(0, n)]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out, start = [], 0
    while True:
        end = start
        while end < n and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        end = max(end, start + 1)
        out.append((start, end))
        if end >= n:
            return out
        following = start + 1
        while following < end and offsets[following] < offsets[end] - stride:
            following += 1
        start = following


def owners(spans: list[tuple[int, int]], n: int) -> list[int]:
    """For each word, the window where it has the most context (words on its shorter side)."""
    best = [-1] * n
    room = [-1] * n
    for index, (start, end) in enumerate(spans):
        for word in range(start, end):
            context = min(word - start, end - 1 - word)
            if context > room[word]:
                best[word], room[word] = index, context
    return best


def encode_words(tokenizer, sentences: list[list[str]], max_length: int, stride: int, tags: list[list[int]] | None,
                 training: bool, inside: list[int] | None = None) -> "Encoded":
    """Tokenize word lists into windows. Labels: the first piece of each word carries its tag (the other
    pieces -100, or the I- tag with `inside`); outside training only the words a window owns."""
    from tunelab.collate import IGNORE, MODEL_INPUTS, Encoded

    if not sentences:
        return Encoded({"input_ids": []}, [] if tags is not None else None, [])
    pieces = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise TunelabError(f"--max-length {max_length} leaves no room for words after the special tokens")
    plan: list[Window] = []
    for number, words in enumerate(sentences):
        counts = [0] * len(words)
        for word in pieces.word_ids(number):
            if word is not None:
                counts[word] += 1
        spans = windows(counts, budget, stride)
        owner = owners(spans, len(words))
        for index, (start, end) in enumerate(spans):
            owned = [w for w in range(start, end) if owner[w] == index and counts[w]]
            plan.append(Window(number, start, end, owned))
    encoded = tokenizer([sentences[w.sentence][w.start:w.end] for w in plan], is_split_into_words=True,
                        truncation=True, max_length=max_length)
    features = {name: encoded[name] for name in MODEL_INPUTS if name in encoded}
    labels = [] if tags is not None else None
    for row, window in enumerate(plan):
        owned = set(window.owned)
        row_labels, previous, present, positions = [], None, [], []
        for position, word in enumerate(encoded.word_ids(row)):
            absolute = None if word is None else window.start + word
            first = absolute is not None and absolute != previous
            if first and absolute in owned:
                present.append(absolute)
                positions.append(position)
            if tags is not None:
                if absolute is None or not (training or absolute in owned):
                    row_labels.append(IGNORE)
                elif first:
                    row_labels.append(tags[window.sentence][absolute])
                elif inside is not None:
                    row_labels.append(inside[tags[window.sentence][absolute]])
                else:
                    row_labels.append(IGNORE)
            if absolute is not None:
                previous = absolute
        # A word cut off by truncation (a single word longer than the window) is not predicted here.
        window.owned, window.positions = present, positions
        if labels is not None:
            labels.append(row_labels)
    return Encoded(features, labels, plan)


def score_tags(truth: list[list[str]], guess: list[list[str]]) -> Scores:
    """Entity-level precision, recall and F1 (seqeval, strict IOB2), per type; word accuracy; and a
    confusion matrix of entity types over matching spans (O: no entity there)."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    options = dict(mode="strict", scheme=IOB2, zero_division=0)
    words = sum(len(t) for t in truth)
    correct = sum(a == b for t, g in zip(truth, guess) for a, b in zip(t, g))
    metrics = {"f1": float(f1_score(truth, guess, **options)),
               "precision": float(precision_score(truth, guess, **options)),
               "recall": float(recall_score(truth, guess, **options)),
               "accuracy": correct / max(words, 1)}
    report = classification_report(truth, guess, output_dict=True, **options)
    types = sorted({k for t in truth for k, _, _ in entities(t)} | {k for g in guess for k, _, _ in entities(g)})
    per_class = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                     "f1-score": float(v["f1-score"]), "support": int(v["support"])}
                 for k, v in report.items() if k in types}
    labels = types + ["O"]
    index = {k: i for i, k in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, g in zip(truth, guess):
        true_spans = {(s, e): k for k, s, e in entities(t)}
        guessed = {(s, e): k for k, s, e in entities(g)}
        for span, kind in true_spans.items():
            matrix[index[kind], index[guessed.get(span, "O")]] += 1
        for span, kind in guessed.items():
            if span not in true_spans:
                matrix[index["O"], index[kind]] += 1
    return Scores(metrics, {"per_class": per_class, "confusion_matrix": matrix.tolist(), "confusion_labels": labels})
