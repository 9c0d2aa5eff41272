"""Multiple choice: which of a row's choices answers its question, or continues its context (SWAG,
HellaSwag, RACE, DREAM, ARC, COPA).

Rows hold an optional context (a passage, a dialogue, the start of a story), an optional question and a
list of choices, with the right one as an index, a letter (A, B, ...) or the choice's text. SWAG-style rows
(`sent1`, `sent2`, `ending0`...) and RACE-style rows (`article`, `question`, `options`, `answer`) are read
as they are. Each choice is encoded with its context as the first segment and the question and the choice
as the second; a context too long for the window is cut from its start (the end, next to the question,
stays), never the choice, and every cut is counted. A batch is `batch x choices x length`; a row with fewer
choices than the batch's most gets padding choices that a mask keeps out of the loss and the predictions.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Checkpoint, Scores, Settings, Task, TaskData, list_cell
from tunelab.tasks.question_answering import CONTEXT, CONTEXT_COLUMN, QUESTION_COLUMN
from tunelab.tasks.texts import LABEL_COLUMN

if TYPE_CHECKING:
    import torch

    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

CHOICES_COLUMN = Option("choices_column", str, "choices", "Multiple choice: the column of each row's choices (a "
                        "list; default: choices, else a list column named endings or options).",
                        commands=("train", "evaluate", "predict"))
QUESTION = Option("question", str | None, None, "Multiple choice: the question the choices given with --choice "
                  "answer (optional).", commands=("predict",), stored=None)
CHOICE = Option("choice", list[str] | None, None, "Multiple choice: one choice, given once per choice (with "
                "--context and --question).", commands=("predict",), stored=None)

CONTEXTS = ("context", "article", "dialogue", "passage")  # where a context is found when --context-column is not
CHOICE_LISTS = ("choices", "endings", "options")
LABELS = ("label", "answer")
LETTERS = string.ascii_uppercase


@dataclass
class Choice:
    """A row's chosen choice (its text and position), its probability, and every choice's."""

    choice: str
    index: int
    score: float
    probabilities: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"choice": self.choice, "index": self.index, "score": self.score, "probabilities": self.probabilities}


class MultipleChoiceTask(Task):
    name = "multiple-choice"
    summary = "which of a row's choices is right: context, question and choices rows (SWAG, RACE layouts too)"
    pipeline_tag = "multiple-choice"
    architecture_suffix = "ForMultipleChoice"
    options = (CONTEXT_COLUMN, QUESTION_COLUMN, CHOICES_COLUMN, LABEL_COLUMN)
    inputs = (CONTEXT, QUESTION, CHOICE)
    metrics = ("accuracy",)
    max_length = 256
    # 8 rows of 4 choices are 32 sequences (run_swag.py's batch); measured on HellaSwag, batches of 8 rows grouped
    # by their padded size ran 1.2x the rows/s of 16 and 1.6x of 32 (bench/logs/mc-batching.log).
    batch_size = 8
    warmup_ratio = 0.0
    eval_batch_size_rows = 32
    extra_keys = ("choice_mask",)
    endpoint = "/v1/choose"
    action = "Choose"
    view = "choose"
    item_noun = "items"
    formats = ("table", "jsonl")
    example = {"context": "Alice put the kettle on.", "question": "What does she do next?",
               "choices": ["She makes tea.", "She goes swimming in it."]}
    request_help = ('JSON: {"context": "...", "question": "...", "choices": [...]} (context and question optional) '
                    'or {"items": [...]} of such objects; the chosen choice and every choice\'s probability.')

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        return layout(splits.train, spec.options) is not None

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows

        train = limit_rows(rows_of(splits.train, spec.options, splits.train_where), spec.limit, spec.seed)
        if splits.validation is not None:
            validation = rows_of(splits.validation, spec.options, splits.validation_where)
        else:
            train, validation = split_by_context(train, spec)
        return TaskData(train, validation, self, splits.name)

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: Checkpoint) -> TaskData:
        from tunelab.data import limit_rows

        frame = limit_rows(rows_of(splits.train, spec.options, splits.train_where), spec.limit, spec.seed)
        return TaskData(frame.iloc[:0], frame, self, splits.name, info=dict(checkpoint.settings.info))

    def label_counts(self, data: TaskData) -> dict[str, int]:
        """How often the right choice is at each position (a skew the model could learn)."""
        counts = data.train["label"].value_counts()
        return {f"right choice {LETTERS[i]}": int(counts[i]) for i in sorted(counts.index)}

    # ------------------------------------------------------------ model and batches
    def model_class(self):
        from transformers import AutoModelForMultipleChoice

        return AutoModelForMultipleChoice

    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        items = [{"context": c, "question": q, "choices": list(ch)} for c, q, ch in
                 zip(frame["context"], frame["question"], frame["choices"])]
        encoded = encode_choices(tokenizer, items, settings.max_length, frame["row"].tolist())
        encoded.labels = frame["label"].astype(int).tolist()
        report_cuts(encoded, "training rows" if training else "validation rows")
        return encoded

    def collator(self, tokenizer, settings: Settings):
        return ChoiceCollator(tokenizer.pad_token_id or 0)

    def eval_batch_size(self, model_config, max_length: int) -> int:
        """32 rows: each is several choices of up to --max-length pieces."""
        return self.eval_batch_size_rows

    def loss(self, model, batch: dict, label_smoothing: float = 0.0):
        """Cross-entropy over each row's own choices (the padding choices masked out)."""
        from tunelab.collate import model_inputs

        logits = masked(model(**model_inputs(batch, leave=("labels",) + self.extra_keys)).logits, batch)
        return cross_entropy(logits, batch["labels"])

    def input_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "choices", 2: "sequence"}

    def output_axes(self) -> dict[str, dict[int, str]]:
        return {"logits": {0: "batch", 1: "choices"}}

    # ------------------------------------------------------------ scoring
    def default_metric(self, data: TaskData) -> str:
        return "accuracy"

    def evaluation_loss(self, outputs, batch: dict):
        return cross_entropy(masked(outputs["logits"], batch), batch["labels"])

    def outputs(self, outputs, batch: dict) -> tuple:
        return masked(outputs["logits"], batch), batch["labels"]

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        """Accuracy; how often each position is chosen against how often it is right (a model that always
        picks A shows at a glance), and the confusion of positions."""
        chosen = np.array([int(np.argmax(logits[:n])) for (logits, _), n in zip(rows, encoded.meta)])
        right = np.array([int(label) for _, label in rows])
        positions = LETTERS[:max(encoded.meta, default=2)]
        matrix = np.zeros((len(positions), len(positions)), dtype=int)
        np.add.at(matrix, (right, chosen), 1)
        table = {"title": "positions: how often each is chosen and how often it is right",
                 "columns": ["position", "chosen", "right", "chosen and right"],
                 "rows": [[p, int((chosen == i).sum()), int((right == i).sum()), int(matrix[i, i])]
                          for i, p in enumerate(positions)]}
        return Scores({"accuracy": float((chosen == right).mean()) if len(right) else 0.0},
                      {"table": table, "confusion_matrix": matrix.tolist(), "confusion_labels": list(positions),
                       **cut_details(encoded)})

    # ------------------------------------------------------------ prediction
    def encode_items(self, predictor, items: list) -> "Encoded":
        return encode_choices(predictor.tokenizer, items, predictor.max_length)

    def predict(self, predictor, items) -> list[Choice]:
        """The chosen choice of each item ({"context", "question", "choices"}; context and question optional)."""
        import torch

        items = choice_items(items)
        encoded = self.encode_items(predictor, items)
        out = []
        for item, row, count in zip(items, predictor.run(encoded), encoded.meta):
            p = torch.softmax(torch.from_numpy(np.asarray(row["logits"][:count], dtype=np.float64)), -1).numpy()
            best = int(p.argmax())
            out.append(Choice(item["choices"][best], best, float(p[best]), [round(float(x), 6) for x in p]))
        return out

    def items_from_arguments(self, arguments: list[str], given: dict) -> list[dict]:
        choices = list(given.get("choice") or []) + list(arguments)
        contexts = given.get("context") or [""]
        if len(contexts) > 1:
            raise TunelabError("a multiple-choice item has one context; give --context once")
        return choice_items([{"context": contexts[0], "question": given.get("question") or "", "choices": choices}])

    def items_from_lines(self, lines: list[str]) -> list[dict]:
        raise TunelabError("a multiple-choice checkpoint needs each item's choices: give them with --choice (once per "
                           "choice), or --input rows of context, question and choices (JSONL, JSON, Parquet)")

    def items_from_frame(self, frame: pd.DataFrame, options: dict, where: str) -> list[dict]:
        found = layout(frame, options)
        if found is None:
            raise TunelabError(f"{where} has no column of choices ({CHOICES_COLUMN.flag} "
                               f"'{CHOICES_COLUMN.value(options)}' not found; columns found: {', '.join(frame.columns)})")
        return choice_items([{"context": c, "question": q, "choices": ch} for c, q, ch, _ in
                             columns_of(frame, found, with_labels=False)])

    def export_items(self) -> list[dict]:
        return [self.example, {"context": "", "question": "", "choices": ["Yes.", "No.", "Maybe so."]}]

    def render(self, items: list, predictions: list[Choice], output_format: str, predictor) -> str:
        import json

        if output_format == "jsonl":
            return "".join(json.dumps({**item, **p.as_dict()}, ensure_ascii=False) + "\n"
                           for item, p in zip(items, predictions))
        lines = []
        for item, p in zip(items, predictions):
            shown = " ".join(x for x in (item["context"], item["question"]) if x) or "(no context)"
            lines.append(shown if len(shown) <= 100 else shown[:97] + "...")
            for i, (choice, probability) in enumerate(zip(item["choices"], p.probabilities)):
                mark = "*" if i == p.index else " "
                lines.append(f" {mark} {LETTERS[i]}  {probability:.3f}  {choice}")
        return "\n".join(lines) + "\n"

    def card_usage(self) -> list[str]:
        return card_snippet(self.example)

    def card_command(self) -> str:
        e = self.example
        return f'--context "{e["context"]}" --question "{e["question"]}" ' + " ".join(
            f'--choice "{c}"' for c in e["choices"])

    # ------------------------------------------------------------ serving
    def request_items(self, body: dict) -> list[dict]:
        from tunelab.serve.limits import RequestError

        raw = body.get("items") if body.get("items") is not None else [body]
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise RequestError(422, "items: must be a list of {context, question, choices} objects")
        try:
            return choice_items(raw)
        except TunelabError as exc:
            raise RequestError(422, str(exc)) from None

    def item_texts(self, item: dict) -> list[tuple[str, str, bool]]:
        texts = [("choice", c, False) for c in item["choices"]]
        if item["question"]:
            texts.insert(0, ("question", item["question"], False))
        if item["context"]:
            texts.insert(0, ("context", item["context"], True))
        return texts

    def describe(self, predictor) -> dict:
        return {"labels": None}


# ---------------------------------------------------------------- reading


@dataclass
class Layout:
    """Where a frame's parts are: the context, question and label columns (None: absent) and the choices (one
    list column, or SWAG's ending columns)."""

    context: str | None
    question: str | None
    choices: list[str]
    label: str | None
    listed: bool  # the choices are one column of lists


def layout(frame: pd.DataFrame, options: dict) -> Layout | None:
    """The frame's layout: SWAG's (sent1, sent2, ending0...), or a list column of choices (--choices-column,
    else choices, endings or options) with the context, question and label columns found beside it."""
    columns = list(frame.columns)
    endings = sorted((c for c in columns if c.startswith("ending") and c[6:].isdigit()), key=lambda c: int(c[6:]))
    if {"sent1", "sent2"} <= set(columns) and len(endings) >= 2:
        return Layout("sent1", "sent2", endings, "label" if "label" in columns else None, False)
    named = CHOICES_COLUMN.value(options)
    lists = [c for c in (named, *CHOICE_LISTS) if c in columns and len(frame) and list_cell(frame[c].iloc[0])]
    if not lists:
        return None
    context = next((c for c in (CONTEXT_COLUMN.value(options), *CONTEXTS) if c in columns), None)
    question = QUESTION_COLUMN.value(options)
    label = next((c for c in (LABEL_COLUMN.value(options), *LABELS) if c in columns), None)
    return Layout(context, question if question in columns else None, [lists[0]], label, True)


def columns_of(frame: pd.DataFrame, found: Layout, with_labels: bool = True) -> list[tuple]:
    """(context, question, choices, label) of every row, as found in the frame."""
    n = len(frame)
    contexts = frame[found.context].tolist() if found.context else [""] * n
    questions = frame[found.question].tolist() if found.question else [""] * n
    if found.listed:
        choices = [list_cell(v) or [] for v in frame[found.choices[0]]]
    else:
        choices = [[v for v in row if not blank(v)] for row in frame[found.choices].itertuples(index=False)]
    labels = frame[found.label].tolist() if with_labels and found.label else [None] * n
    return [(text(c), text(q), [str(x) for x in ch], label)
            for c, q, ch, label in zip(contexts, questions, choices, labels)]


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def text(value) -> str:
    return "" if blank(value) else str(value)


def rows_of(frame: pd.DataFrame, options: dict, where: str) -> pd.DataFrame:
    """row, context, question, choices, label (an index) of every row; a bad row is refused with its number."""
    found = layout(frame, options)
    if found is None:
        raise TunelabError(f"{where} has no column of choices: {CHOICES_COLUMN.flag} '{CHOICES_COLUMN.value(options)}' "
                           f"not found and no choices, endings or options column of lists (columns found: "
                           f"{', '.join(frame.columns)}); name it with {CHOICES_COLUMN.flag}")
    if found.label is None:
        raise TunelabError(f"{where} has no label column ('{LABEL_COLUMN.value(options)}' or 'answer'); name the "
                           f"column of right choices with {LABEL_COLUMN.flag}")
    out = []
    for number, (context, question, choices, label) in enumerate(columns_of(frame, found), 1):
        check_choices(choices, f"{where}, row {number}")
        out.append({"row": number, "context": context, "question": question, "choices": choices,
                    "label": label_index(label, choices, f"{where}, row {number}")})
    return pd.DataFrame(out, columns=["row", "context", "question", "choices", "label"])


def check_choices(choices: list[str], at: str) -> None:
    if not choices:
        raise TunelabError(f"{at}: no choices; give each row at least two")
    if len(choices) == 1:
        raise TunelabError(f"{at}: one choice ({choices[0][:60]!r}); give each row at least two")
    seen = set()
    for choice in choices:
        if choice.strip() in seen:
            raise TunelabError(f"{at}: the choice {choice[:60]!r} is given twice; a row's choices must differ")
        seen.add(choice.strip())


def label_index(label, choices: list[str], at: str) -> int:
    """The right choice's position from an index (0-based), a letter (A, B, ...) or the choice's text."""
    shown = "" if label is None else str(label).strip()
    if isinstance(label, (int, np.integer)) or shown.lstrip("-").isdigit():
        index = int(shown)
    elif shown in [c.strip() for c in choices]:
        index = [c.strip() for c in choices].index(shown)
    elif len(shown) == 1 and shown.upper() in LETTERS:
        index = LETTERS.index(shown.upper())
    else:
        index = -1
    if not 0 <= index < len(choices):
        raise TunelabError(f"{at}: the label {shown[:60]!r} names none of its {len(choices)} choices; give an index "
                           f"0-{len(choices) - 1}, a letter A-{LETTERS[len(choices) - 1]} or a choice's text")
    return index


def split_by_context(frame: pd.DataFrame, spec: "DataSpec") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A validation share split off by context (questions about one passage stay together)."""
    from tunelab.data import split_by_group

    return split_by_group(frame, [c or f"row {r}" for c, r in zip(frame["context"], frame["row"])], spec, "context")


def choice_items(items) -> list[dict]:
    """Inputs as {"context", "question", "choices"} items (context and question may be empty), checked."""
    if isinstance(items, dict):
        items = [items]
    out = []
    for number, item in enumerate(items, 1):
        choices = list_cell(item.get("choices"))
        if choices is None or not all(isinstance(c, str) and c.strip() for c in choices):
            raise TunelabError(f"input {number}: choices must be a list of non-empty texts")
        check_choices(choices, f"input {number}")
        context, question = item.get("context") or "", item.get("question") or ""
        if not isinstance(context, str) or not isinstance(question, str):
            raise TunelabError(f"input {number}: context and question must be texts")
        out.append({"context": context, "question": question, "choices": choices})
    return out


# ---------------------------------------------------------------- encoding


@dataclass
class Cuts:
    """How many rows had their context cut from its start to fit the window, and by how much."""

    rows: int
    max_length: int
    excess: list[int] = field(default_factory=list)  # pieces cut, one per cut row

    def as_dict(self) -> dict:
        return {"rows": self.rows, "long_rows": len(self.excess), "max_length": self.max_length,
                "long_text": "truncate", "mean_excess": float(np.mean(self.excess)) if self.excess else 0.0,
                "longest": self.max_length + max(self.excess, default=0)}


def encode_choices(tokenizer, items: list[dict], max_length: int, rows: list[int] | None = None) -> "Encoded":
    """Every choice as (context, question + choice), the context cut from its start where the pair is too
    long; `meta` holds each row's number of choices, `long` the cuts."""
    from tunelab.collate import MODEL_INPUTS, Encoded

    firsts, seconds, counts = [], [], []
    for item in items:
        for choice in item["choices"]:
            first, second = pair(item, choice)
            firsts.append(first)
            seconds.append(second)
        counts.append(len(item["choices"]))
    excess = check_room(tokenizer, firsts, seconds, counts, max_length, rows)
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # the context's end stays: it is what the question and choice follow
    try:  # a choice alone (no context, no question) is one segment, which check_room saw fits whole
        out = [tokenizer(f, s, truncation="only_first", max_length=max_length) if f else tokenizer(s)
               for f, s in zip(firsts, seconds)]
    finally:
        tokenizer.truncation_side = side
    features: dict[str, list] = {name: [] for name in MODEL_INPUTS if name in out[0]} if out else {"input_ids": []}
    at = 0
    for count in counts:
        for name in features:
            features[name].append([out[at + k][name] for k in range(count)])
        at += count
    # A row costs its choices times its longest: each choice is padded to the batch's longest.
    costs = [len(ids) * max(map(len, ids)) for ids in features["input_ids"]]
    return Encoded(features, None, meta=counts, long=Cuts(len(items), max_length, excess), costs=costs)


def pair(item: dict, choice: str) -> tuple[str, str]:
    """The two segments of one choice: the context, and the question with the choice (without a context, the
    question and the choice; without either, the choice alone: an empty first segment)."""
    context, question = item["context"], item["question"]
    if context:
        return context, f"{question} {choice}".strip()
    return question, choice


def check_room(tokenizer, firsts: list[str], seconds: list[str], counts: list[int], max_length: int,
               rows: list[int] | None) -> list[int]:
    """Refuse a choice (with its question) that the window cannot hold whole; the pieces each row's context
    loses to the window."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    single = tokenizer.num_special_tokens_to_add(pair=False)
    first_lengths = [len(ids) for ids in tokenizer(firsts, add_special_tokens=False)["input_ids"]] if firsts else []
    second_lengths = [len(ids) for ids in tokenizer(seconds, add_special_tokens=False)["input_ids"]] if seconds else []
    excess, at = [], 0
    for number, count in enumerate(counts):
        cut = 0
        for k in range(at, at + count):
            room = specials if firsts[k] else single - 1  # a choice alone needs no room for a context
            if second_lengths[k] + room >= max_length:
                row = rows[number] if rows is not None else number + 1
                raise TunelabError(f"row {row}: choice {LETTERS[k - at]} with its question is {second_lengths[k]} "
                                   f"pieces, more than a window of --max-length {max_length} holds beside a context; "
                                   "shorten it or raise --max-length (choices are never cut)")
            cut = max(cut, first_lengths[k] + second_lengths[k] + specials - max_length)
        if cut > 0:
            excess.append(cut)
        at += count
    return excess


def report_cuts(encoded: "Encoded", what: str) -> None:
    cuts = encoded.long
    if cuts.excess:
        logger.warning("%d of %d %s (%.1f%%) have a context too long for --max-length %d beside their choices: cut "
                       "from its start by %.0f pieces on average (at most %d); the choices are whole", len(cuts.excess),
                       cuts.rows, what, 100 * len(cuts.excess) / max(cuts.rows, 1), cuts.max_length,
                       np.mean(cuts.excess), max(cuts.excess))


def cut_details(encoded: "Encoded") -> dict:
    return {"long": encoded.long.as_dict()} if encoded.long is not None else {}


@dataclass
class ChoiceCollator:
    """Rows of choices padded into `batch x choices x length`; a padding choice holds one padding piece (so
    its attention has something to attend to) and `choice_mask` marks the real ones."""

    pad_token_id: int = 0

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        from tunelab.collate import ROW_INDEX

        choices = max(len(r["input_ids"]) for r in rows)
        width = max(len(ids) for r in rows for ids in r["input_ids"])
        batch = {}
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            if name not in rows[0]:
                continue
            fill = self.pad_token_id if name == "input_ids" else 0
            values = torch.full((len(rows), choices, width), fill, dtype=torch.long)
            for b, row in enumerate(rows):
                for c, ids in enumerate(row[name]):
                    values[b, c, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            batch[name] = values
        mask = torch.tensor([[c < len(r["input_ids"]) for c in range(choices)] for r in rows])
        if "attention_mask" in batch:
            batch["attention_mask"][:, :, 0] |= ~mask  # a padding choice attends to its one padding piece
        batch["choice_mask"] = mask
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        batch[ROW_INDEX] = torch.tensor([r[ROW_INDEX] for r in rows], dtype=torch.long)
        return batch


def masked(logits: "torch.Tensor", batch: dict) -> "torch.Tensor":
    """The logits with each padding choice at the lowest value: it can never be chosen, nor weigh in a loss."""
    logits = logits.float()
    return logits.masked_fill(~batch["choice_mask"].to(logits.device), float(np.finfo(np.float32).min))


def cross_entropy(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.nn.functional.cross_entropy(logits, labels.to(logits.device))


# ---------------------------------------------------------------- the model card


def card_snippet(example: dict) -> list[str]:
    """Python that scores the choices with the checkpoint and transformers alone (transformers has no pipeline
    for multiple choice), as tunelab encodes them."""
    return [
        "import json, torch",
        "from transformers import AutoModelForMultipleChoice, AutoTokenizer",
        "",
        'path = "PATH_OR_HUB_ID"',
        "tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForMultipleChoice.from_pretrained(path)",
        'longest = json.load(open(f"{path}/tunelab.json"))["settings"]["max_length"]  # the window tunelab trained with',
        f'context, question = {example["context"]!r}, {example["question"]!r}',
        f"choices = {example['choices']!r}",
        "tokenizer.truncation_side = \"left\"  # a long context loses its start, never a choice",
        "enc = tokenizer([context] * len(choices), [f\"{question} {c}\".strip() for c in choices],",
        "                truncation=\"only_first\", max_length=longest, padding=True, return_tensors=\"pt\")",
        "with torch.no_grad():",
        "    logits = model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits[0]",
        "probabilities = logits.softmax(-1).tolist()",
        "print(choices[int(logits.argmax())], probabilities)",
    ]
