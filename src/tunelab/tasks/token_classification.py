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
from tunelab.tasks.base import Scores, Settings, Task
from tunelab.tasks.schemes import entities, inside_tag, to_iob2

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits, TaskData

logger = logging.getLogger(__name__)

METRICS = ("f1", "precision", "recall", "accuracy")
# Words of raw text: runs of word characters (keeping inner periods, hyphens and apostrophes: "U.S",
# "well-known", "O'Neil"), or one other visible character.
WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


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


@dataclass
class Evaluation:
    metrics: dict[str, float]
    rows: int
    label_names: list[str]
    per_class: dict
    confusion_matrix: list[list[int]]
    confusion_labels: list[str]

    def as_dict(self) -> dict:
        return {"rows": self.rows, "metrics": self.metrics, "label_names": self.label_names,
                "per_class": self.per_class, "confusion_matrix": self.confusion_matrix,
                "confusion_labels": self.confusion_labels}


class TokenClassificationTask(Task):
    options = ("label_all_tokens",)
    name = "token-classification"
    pipeline_tag = "token-classification"
    architecture_suffix = "ForTokenClassification"
    metrics = METRICS
    endpoint = "/v1/tag"
    formats = ("table", "jsonl", "conll")
    action = "Find entities"
    column_options = ("tokens_column", "tags_column", "tag_column")
    packs = True
    example = "Alice visited Paris."

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        frame = splits.train
        if from_conll(frame):
            return True
        return spec.tokens_column in frame and len(frame) > 0 and is_list(frame[spec.tokens_column].iloc[0])

    def sentences(self, spec: "DataSpec", frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """tokens and tags (names) of every row, checked."""
        from tunelab.data import drop_blank, select_columns

        if from_conll(frame):
            width = len(frame["columns"].iloc[0][0])
            if width < 2:
                raise TunelabError(f"{where} has one column; a CoNLL file needs the word and a tag column")
            if not -width <= spec.tag_column < width or spec.tag_column == 0 or spec.tag_column == -width:
                raise TunelabError(f"--tag-column {spec.tag_column} is not a tag column of {where}, which has "
                                   f"{width} columns (the word is column 0); pass 1 to {width - 1} or -1 (the last)")
            tags = [[fields[spec.tag_column] for fields in sentence] for sentence in frame["columns"]]
            out = pd.DataFrame({"tokens": frame["tokens"].tolist(), "tags": tags})
        else:
            if spec.tokens_column not in frame or not is_list(next(iter(frame[spec.tokens_column]), None)):
                found = ", ".join(frame.columns)
                raise TunelabError(
                    f"--task token-classification needs words: a CoNLL file, or a column of token lists "
                    f"(--tokens-column '{spec.tokens_column}' {'holds no lists' if spec.tokens_column in frame else 'not found'} "
                    f"in {where}; columns found: {found}); pass --task classification for whole-text labels")
            out = select_columns(frame, [("--tokens-column", spec.tokens_column, "tokens"),
                                         ("--tags-column", spec.tags_column, "tags")], where)
            out = out.assign(tokens=[as_list(v) for v in out["tokens"]], tags=[as_list(v) for v in out["tags"]])
            for number, (tokens, tags) in enumerate(zip(out["tokens"], out["tags"]), 1):
                if len(tokens) != len(tags):
                    raise TunelabError(f"{where}, row {number}: {len(tokens)} tokens but {len(tags)} tags; "
                                       "give one tag per token")
            out = out.assign(tokens=[[str(t) for t in v] for v in out["tokens"]],
                             tags=[[str(t) for t in v] for v in out["tags"]])
        return drop_blank(out, where, ["tokens"], None)

    def read(self, spec: "DataSpec", splits: "Splits") -> "TaskData":
        from tunelab.data import TaskData, limit_rows, split_validation

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
        train_tags, checked_tags = train["tags"].tolist(), validation["tags"].tolist()
        names = tag_order({t for tags in train_tags for t in tags})
        unseen = unknown_tags(checked_tags, names)
        if unseen:
            raise TunelabError(f"validation tag {unseen} never appears in the training data; remove those "
                               "sentences from the validation data or add training sentences with that tag")
        ids = {name: i for i, name in enumerate(names)}
        train = train.assign(tags=[[ids[t] for t in tags] for tags in train_tags])
        validation = validation.assign(tags=[[ids[t] for t in tags] for tags in checked_tags])
        return TaskData(train=train.reset_index(drop=True), validation=validation.reset_index(drop=True),
                        label_names=names, has_pairs=False, name=splits.name, label_values=list(names),
                        task=self.name, info={"tag_scheme": scheme, "repaired_tags": repaired})

    def label_counts(self, data: "TaskData") -> dict[str, int]:
        """Entities per type in the training sentences."""
        from collections import Counter

        counts = Counter(kind for tags in data.train["tags"] for kind, _, _ in
                         entities([data.label_names[t] for t in tags]))
        return dict(sorted(counts.items()))

    def default_metric(self, data: "TaskData") -> str:
        return "f1"

    # ------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_kwargs(self, data: "TaskData") -> dict:
        names = data.label_names
        return {"num_labels": len(names), "id2label": dict(enumerate(names)),
                "label2id": {n: i for i, n in enumerate(names)}}

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool,
               label_names: list[str] | None = None) -> "Encoded":
        """Windows of every sentence with first-piece labels; evaluation rows label only the words the
        window predicts, so each word counts once."""
        tags = frame["tags"].tolist() if "tags" in frame else None
        label_all = bool(settings.info.get("label_all_tokens")) and training
        inside = None
        if label_all and label_names:
            ids = {n: i for i, n in enumerate(label_names)}
            inside = [ids.get(inside_tag(n), i) for i, n in enumerate(label_names)]
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
    def outputs(self, logits, batch: dict, accelerator) -> tuple:
        from tunelab.collate import IGNORE, ROW_INDEX

        # Rows of different processes differ in width: pad them alike before gathering.
        predictions = accelerator.pad_across_processes(logits.argmax(-1), dim=1, pad_index=IGNORE)
        labels = accelerator.pad_across_processes(batch["labels"], dim=1, pad_index=IGNORE)
        return accelerator.gather_for_metrics((predictions, labels, batch[ROW_INDEX]))

    def score(self, gathered, encoded: "Encoded", data: "TaskData") -> Scores:

        words: dict[tuple[int, int], int] = {}
        for predictions, labels, rows in gathered:
            for prediction, label, row in zip(predictions, labels, rows):
                window = encoded.meta[int(row)]
                for word, position in zip(window.owned, window.positions):
                    words[(window.sentence, word)] = int(prediction[position])
        names = data.label_names
        truth = [[names[t] for t in tags] for tags in data.validation["tags"]]
        guess = [[names[words.get((s, w), 0)] if (s, w) in words else "O" for w in range(len(tags))]
                 for s, tags in enumerate(truth)]
        return score_tags(truth, guess)

    def logits_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "sequence"}

    # ------------------------------------------------------------ prediction
    def tag_words(self, predictor, sentences: list[list[str]]) -> list[tuple[list[str], list[float]]]:
        """Each sentence's tags and their probabilities, one per word."""
        import torch

        encoded = encode_words(predictor.tokenizer, sentences, predictor.max_length, predictor.settings.stride,
                               None, False)
        outputs = predictor.run(encoded)
        names = predictor.label_names
        found: list[list[tuple[str, float] | None]] = [[None] * len(s) for s in sentences]
        for logits, window in zip(outputs, encoded.meta):
            probabilities = torch.softmax(torch.from_numpy(np.asarray(logits)), -1).numpy()
            for word, position in zip(window.owned, window.positions):
                p = probabilities[position]
                found[window.sentence][word] = (names[int(p.argmax())], float(p.max()))
        # A word the tokenizer turns into no piece at all gets O.
        return [([f[0] if f else "O" for f in row], [f[1] if f else 1.0 for f in row]) for row in found]

    def predict(self, predictor, inputs, pairs=None) -> list[Tagging]:
        """Raw texts (strings) give entities with character offsets; token lists give per-word tags (and
        entities with word offsets)."""
        if isinstance(inputs, str):
            inputs = [inputs]
        if pairs is not None and len(pairs):
            raise TunelabError(f"a token-classification checkpoint tags single texts, but {len(pairs)} second "
                               "texts of pairs were given; drop --pair (or the TAB-separated second texts)")
        sentences, spans = [], []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                matches = list(WORD.finditer(item))
                if not matches:
                    raise TunelabError(f"input {i + 1} is empty; give non-empty texts")
                sentences.append([m.group() for m in matches])
                spans.append([(m.start(), m.end()) for m in matches])
            else:
                words = [str(w) for w in item]
                if not words:
                    raise TunelabError(f"input {i + 1} holds no tokens; give at least one word")
                sentences.append(words)
                spans.append(None)
        out = []
        for item, words, offsets, (tags, scores) in zip(inputs, sentences, spans, self.tag_words(predictor, sentences)):
            found = []
            for kind, start, end in entities(tags):
                score = float(np.mean(scores[start:end]))
                if offsets is None:
                    found.append(Entity(kind, " ".join(words[start:end]), start, end, score))
                else:
                    a, b = offsets[start][0], offsets[end - 1][1]
                    found.append(Entity(kind, item[a:b], a, b, score))
            out.append(Tagging(words, tags, [round(s, 6) for s in scores], found))
        return out

    def evaluate(self, predictor, spec: "DataSpec", split: str) -> Evaluation:
        from tunelab.data import limit_rows, read_split

        frame, where, _ = read_split(spec, split)
        frame = limit_rows(self.sentences(spec, frame, where), spec.limit, spec.seed)
        scheme = predictor.settings.info.get("tag_scheme")
        truth = to_iob2(frame["tags"].tolist(), scheme).tags
        unknown = unknown_tags(truth, predictor.label_names)
        if unknown:
            raise TunelabError(f"tag {unknown} is not one the checkpoint knows ({', '.join(predictor.label_names)}); "
                               "check --tag-column / --tags-column or evaluate on data with the same tags")
        guess = [tags for tags, _ in self.tag_words(predictor, frame["tokens"].tolist())]
        scores = score_tags(truth, guess)
        return Evaluation(scores.metrics, len(frame), predictor.label_names, scores.details["per_class"],
                          scores.details["confusion_matrix"], scores.details["confusion_labels"])


    def render(self, predictor, inputs, predictions: list[Tagging], output_format: str) -> str:
        import json

        if output_format == "jsonl":
            rows = []
            for item, tagging in zip(inputs.items, predictions):
                key = "text" if isinstance(item, str) else "tokens"
                rows.append(json.dumps({key: item, **tagging.as_dict()}, ensure_ascii=False))
            return "".join(row + "\n" for row in rows)
        if output_format == "conll":
            # The input written back with the predicted tag as one more column (word and tag for texts).
            blocks = []
            for number, tagging in enumerate(predictions):
                fields = inputs.conll[number] if inputs.conll else [[w] for w in tagging.tokens]
                blocks.append("\n".join(" ".join([*f, tag]) for f, tag in zip(fields, tagging.tags)))
            return "\n\n".join(blocks) + "\n"
        lines = []
        for item, tagging in zip(inputs.items, predictions):
            shown = item if isinstance(item, str) else " ".join(item)
            lines.append(shown if len(shown) <= 100 else shown[:97] + "...")
            if not tagging.entities:
                lines.append("  (no entities)")
            for e in tagging.entities:
                lines.append(f"  {e.type:<8} {e.score:.3f}  {e.start}-{e.end}  {e.text}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- helpers


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
