"""Extractive question answering: the answer to a question is a span of its context (SQuAD), or nothing.

Data: the official SQuAD JSON (v1.1 and v2.0: articles, paragraphs, questions), or rows with a context, a
question and their answers, either as the hub's `squad` holds them (`{"text": [...], "answer_start":
[...]}`) or as an answer text with or without its start (a start not given is found in the context).
A question with no answer is "unanswerable" (SQuAD v2.0).

A context longer than the window is read in overlapping windows (`--max-length`, `--stride`), never cut:
the question is in every window, a window that does not hold the whole answer learns "no answer here"
(the first token), and the answer is learned from the windows that hold it whole. Prediction scores every
start and end pair inside the context, at most `--max-answer-length` pieces apart, in every window, and
answers with the best span across windows, as character offsets into the context. With unanswerable
questions in the data, the no-answer score is weighed against the best span's with a threshold tuned on
the validation rows at every evaluation and stored in the checkpoint (`qa_null_threshold`).
"""

from __future__ import annotations

import collections
import logging
import re
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Checkpoint, Scores, Settings, Task, TaskData, list_cell

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

CONTEXT_COLUMN = Option("context_column", str, "context", "Question answering, multiple choice: the column of "
                        "contexts (the passages answers are found in; a multiple-choice passage, dialogue or story).",
                        commands=("train", "evaluate", "predict"))
QUESTION_COLUMN = Option("question_column", str, "question", "Question answering, multiple choice: the column of "
                         "questions.", commands=("train", "evaluate", "predict"))
ANSWERS_COLUMN = Option("answers_column", str, "answers", "Question answering: the column of answers as the hub's "
                        "squad holds them ({\"text\": [...], \"answer_start\": [...]}, or a list of {text, "
                        "answer_start}); empty: no answer.", commands=("train", "evaluate"))
ANSWER_COLUMN = Option("answer_column", str, "answer", "Question answering: a column of answer texts (empty: no "
                       "answer), read when there is no --answers-column; its start comes from --answer-start-column "
                       "or is found in the context.", commands=("train", "evaluate"))
ANSWER_START_COLUMN = Option("answer_start_column", str, "answer_start", "Question answering: the column of each "
                             "answer's character offset in its context (with --answer-column).",
                             commands=("train", "evaluate"))
MAX_ANSWER_LENGTH = Option("max_answer_length", int, 30, "Question answering: the longest answer predicted, in "
                           "tokenizer pieces.", commands=("train", "evaluate", "predict", "serve"), stored="info")
NULL_THRESHOLD = Option("null_threshold", float | None, None, "Question answering: answer nothing when the "
                        "no-answer score beats the best span's by more than this (default: the threshold tuned on the "
                        "validation rows and stored in the checkpoint; a checkpoint trained without unanswerable "
                        "questions always answers).", commands=("evaluate", "predict", "serve"), stored=None)
CONTEXT = Option("context", list[str] | None, None, "The context of the inputs given as arguments: once for all of "
                 "them, or once per input (question answering: the passage the answers are found in; multiple "
                 "choice: the passage or story the choices follow).",
                 commands=("predict",), stored=None)

METRICS = ("exact_match", "f1", "has_answer_exact_match", "has_answer_f1", "no_answer_accuracy")
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = set(string.punctuation)


@dataclass
class Answer:
    """A question's answer: the span's text and its character offsets in the context (None: no answer),
    and the answer's probability among the best candidate spans (and no answer)."""

    answer: str
    start: int | None
    end: int | None
    score: float

    def as_dict(self) -> dict:
        return {"answer": self.answer, "start": self.start, "end": self.end, "score": self.score}


@dataclass
class Window:
    """One encoded row: the example it reads, each piece's character span in the context (None outside
    it), and the first token's position (the "no answer" position)."""

    example: int
    offsets: list
    cls: int


class QuestionAnsweringTask(Task):
    name = "question-answering"
    summary = "a span of a context answers a question: SQuAD JSON, or context / question / answers rows"
    pipeline_tag = "question-answering"
    architecture_suffix = "ForQuestionAnswering"
    options = (CONTEXT_COLUMN, QUESTION_COLUMN, ANSWERS_COLUMN, ANSWER_COLUMN, ANSWER_START_COLUMN,
               MAX_ANSWER_LENGTH, NULL_THRESHOLD)
    inputs = (CONTEXT,)
    metrics = METRICS
    max_length = 384  # run_qa.py's window and stride
    stride = 128
    head_prefixes = ("qa_outputs",)
    label_keys = ("start_positions", "end_positions")
    output_names = ("start_logits", "end_logits")
    endpoint = "/v1/answer"
    action = "Answer"
    view = "answer"
    item_noun = "questions"
    formats = ("table", "jsonl", "csv")
    example = {"question": "Where did Alice go?", "context": "Alice visited Paris in the spring."}
    request_help = ('JSON: {"question": "...", "context": "..."}, {"questions": [...], "context": "..."} (one '
                    'context for all) or {"questions": [...], "contexts": [...]}; each answer with its character '
                    "offsets in its context and its score.")

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        frame, options = splits.train, spec.options
        if squad_layout(frame):
            return True
        columns = set(frame.columns)
        answers = {ANSWERS_COLUMN.value(options), ANSWER_COLUMN.value(options)} & columns
        return {CONTEXT_COLUMN.value(options), QUESTION_COLUMN.value(options)} <= columns and bool(answers)

    def option_problems(self, values: dict) -> list[str]:
        longest = MAX_ANSWER_LENGTH.value(values)
        return [f"--max-answer-length must be at least 1, got {longest}"] if longest < 1 else []

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        from tunelab.data import limit_rows

        train = limit_rows(examples(splits.train, spec, splits.train_where), spec.limit, spec.seed)
        if splits.validation is not None:
            validation = examples(splits.validation, spec, splits.validation_where)
        else:
            train, validation = split_by_context(train, spec)
        unanswerable = int(sum(len(a) == 0 for a in pd.concat([train["answers"], validation["answers"]])))
        if unanswerable:
            logger.info("%d unanswerable questions: the no-answer threshold is tuned at every evaluation",
                        unanswerable)
        return TaskData(train, validation, self, splits.name, info={"unanswerable": unanswerable > 0})

    def read_labeled(self, spec: "DataSpec", splits: "Splits", checkpoint: Checkpoint) -> TaskData:
        from tunelab.data import limit_rows

        frame = limit_rows(examples(splits.train, spec, splits.train_where), spec.limit, spec.seed)
        unanswerable = bool(sum(len(a) == 0 for a in frame["answers"]))
        return TaskData(frame.iloc[:0], frame, self, splits.name,
                        info={**checkpoint.settings.info, "unanswerable": unanswerable})

    def label_counts(self, data: TaskData) -> dict[str, int]:
        answered = int(sum(len(a) > 0 for a in data.train["answers"]))
        counts = {"answerable": answered, "unanswerable": len(data.train) - answered}
        return counts if counts["unanswerable"] else {}

    # ------------------------------------------------------------ model and batches
    def model_class(self):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        """Every example in windows, each with its answer's first and last piece (the first token where the
        window does not hold the whole answer, or there is none)."""
        rows = [{"question": q, "context": c} for q, c in zip(frame["question"], frame["context"])]
        encoded = encode_windows(tokenizer, rows, settings.max_length, settings.stride, frame.get("row"))
        starts, ends = [], []
        for window in encoded.meta:
            answers = frame["answers"].iloc[window.example]
            start, end = answer_positions(window, answers[0] if answers else None)
            starts.append(start)
            ends.append(end)
        encoded.features.update(start_positions=starts, end_positions=ends)
        report_windows(encoded, "training" if training else "validation")
        return encoded

    def describe_reading(self, settings: Settings) -> str:
        return f" (longer contexts in windows sharing {settings.stride})"

    def eval_batch_size(self, model_config, max_length: int) -> int:
        """Windows are long (384 pieces): 32 at a time keep an evaluation's attention scores small."""
        return 32

    def output_axes(self) -> dict[str, dict[int, str]]:
        return {"start_logits": {0: "batch", 1: "sequence"}, "end_logits": {0: "batch", 1: "sequence"}}

    # ------------------------------------------------------------ scoring
    def default_metric(self, data: TaskData) -> str:
        return "f1"

    def outputs(self, outputs, batch: dict) -> tuple:
        return outputs["start_logits"].float(), outputs["end_logits"].float()

    def score(self, rows: list[tuple], encoded: "Encoded", data: TaskData, decisions: dict | None = None) -> Scores:
        """Exact match and F1 (SQuAD's), the best over each question's references; with unanswerable questions
        also the answerable and unanswerable rows apart, at the threshold tuned here (or decided)."""
        frame = data.validation
        longest = int((decisions or {}).get("max_answer_length") or data.info.get("max_answer_length")
                      or MAX_ANSWER_LENGTH.default)
        found = best_spans(rows, encoded.meta, frame["context"].tolist(), longest)
        references = [[a["text"] for a in answers] or [""] for answers in frame["answers"]]
        if decisions is None:
            threshold = tune_null_threshold(found, references) if data.info.get("unanswerable") else None
        else:
            threshold = decisions.get("null_threshold")
        texts = [span.text if not abstains(span, threshold) else "" for span in found]
        metrics = squad_metrics(texts, references)
        return Scores(metrics, {"null_threshold": threshold})

    def checkpoint_config(self, scores: Scores) -> dict:
        threshold = scores.details.get("null_threshold")
        return {"qa_null_threshold": threshold} if threshold is not None else {}

    def decisions(self, config, options: dict) -> dict:
        given = NULL_THRESHOLD.value(options)
        stored = getattr(config, "qa_null_threshold", None)
        return {"null_threshold": stored if given is None else given,
                "max_answer_length": MAX_ANSWER_LENGTH.value(options)}

    def check_given(self, options: dict) -> None:
        problems = self.option_problems(options)
        if problems:
            raise TunelabError(problems[0])

    # ------------------------------------------------------------ prediction
    def encode_items(self, predictor, items: list) -> "Encoded":
        return encode_windows(predictor.tokenizer, items, predictor.max_length, predictor.settings.stride)

    def predict(self, predictor, questions, contexts=None) -> list[Answer]:
        """The answer to each question in its context: `predict(questions, contexts)` (a string or a list of
        each; one context serves every question) or `predict([{"question": ..., "context": ...}, ...])`."""
        items = question_items(questions, contexts)
        encoded = self.encode_items(predictor, items)
        outputs = predictor.run(encoded)
        rows = [(o["start_logits"], o["end_logits"]) for o in outputs]
        decided = self.decisions(predictor.model.config, {**predictor.settings.info, **predictor.options})
        found = best_spans(rows, encoded.meta, [item["context"] for item in items], decided["max_answer_length"])
        return [span.answer(decided["null_threshold"]) for span in found]

    def items_from_arguments(self, arguments: list[str], given: dict) -> list[dict]:
        contexts = given.get("context")
        if not contexts:
            raise TunelabError("a question-answering checkpoint answers questions about a context: give it with "
                               "--context \"...\" (once, or once per question)")
        if not arguments:
            raise TunelabError("no question: give the questions as arguments after --context \"...\"")
        return question_items(arguments, contexts if len(contexts) > 1 else contexts[0])

    def items_from_lines(self, lines: list[str]) -> list[dict]:
        raise TunelabError("a question-answering checkpoint needs each question's context: give --context \"...\" "
                           "with the questions, or --input rows of context and question (JSONL, CSV, Parquet or a "
                           "SQuAD JSON file)")

    def items_from_frame(self, frame: pd.DataFrame, options: dict, where: str) -> list[dict]:
        if squad_layout(frame):
            frame = flatten_squad(frame)
            options = {}
        context, question = CONTEXT_COLUMN.value(options), QUESTION_COLUMN.value(options)
        missing = [c for c in (context, question) if c not in frame.columns]
        if missing:
            raise TunelabError(f"column '{missing[0]}' not found in {where}; columns found: {', '.join(frame.columns)} "
                               "(set --context-column / --question-column)")
        return question_items(frame[question].tolist(), frame[context].tolist())

    def export_items(self) -> list[dict]:
        return [self.example, {"question": "Who?", "context": "Alice."}]

    def render(self, items: list, predictions: list[Answer], output_format: str, predictor) -> str:
        import csv
        import io
        import json

        rows = [{**item, **p.as_dict()} for item, p in zip(items, predictions)]
        if output_format == "jsonl":
            return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if output_format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["question", "answer", "start", "end", "score"])
            for row in rows:
                writer.writerow([row["question"], row["answer"], row["start"], row["end"], f"{row['score']:.6f}"])
            return buffer.getvalue()
        lines = []
        for row in rows:
            lines.append(row["question"])
            shown = f"{row['answer']!r} (characters {row['start']}-{row['end']})" if row["start"] is not None \
                else "(no answer)"
            lines.append(f"  {row['score']:.3f}  {shown}")
        return "\n".join(lines) + "\n"

    def card_usage(self) -> list[str]:
        return card_snippet(self.example)

    def card_command(self) -> str:
        return f'--context "{self.example["context"]}" "{self.example["question"]}"'

    # ------------------------------------------------------------ serving
    def request_items(self, body: dict) -> list[dict]:
        from tunelab.serve.limits import RequestError, strings

        questions = strings(body, "questions") if body.get("questions") is not None else None
        if questions is None and body.get("question") is not None:
            questions = [strings(body, "question", single=True)]
        contexts = strings(body, "contexts") if body.get("contexts") is not None else None
        if contexts is None and body.get("context") is not None:
            contexts = [strings(body, "context", single=True)] * len(questions or [])
        if not questions or contexts is None:
            raise RequestError(422, "give 'question' (or 'questions') and 'context' (or 'contexts', one per question)")
        if len(contexts) != len(questions):
            raise RequestError(422, f"{len(questions)} questions but {len(contexts)} contexts; give one context, or "
                                    "one per question")
        return [{"question": q, "context": c} for q, c in zip(questions, contexts)]

    def item_texts(self, item: dict) -> list[tuple[str, str, bool]]:
        return [("question", item["question"], False), ("context", item["context"], True)]

    def describe(self, predictor) -> dict:
        decided = self.decisions(predictor.model.config, {**predictor.settings.info, **predictor.options})
        return {"labels": None, **decided}


# ---------------------------------------------------------------- reading


def squad_layout(frame: pd.DataFrame) -> bool:
    """Whether a frame is the official SQuAD JSON as read (articles in a `data` column, with paragraphs)."""
    if "data" not in frame.columns or not len(frame):
        return False
    first = frame["data"].iloc[0]
    return isinstance(first, dict) and "paragraphs" in first


def flatten_squad(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per question: id, article title, context, question and answers (a list of {text,
    answer_start}; empty for an unanswerable one)."""
    rows = []
    for article in frame["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers") or []
                rows.append({"id": qa.get("id"), "title": article.get("title", ""), "context": paragraph.get("context"),
                             "question": qa.get("question"), "answers": answers})
    return pd.DataFrame(rows, columns=["id", "title", "context", "question", "answers"])


def examples(frame: pd.DataFrame, spec: "DataSpec", where: str) -> pd.DataFrame:
    """The task's rows: row (its number in the file), id, title, context, question, answers ({text, start},
    checked against the context); a bad row is refused with its number."""
    options = spec.options
    if squad_layout(frame):
        flat = flatten_squad(frame)
    else:
        flat = flat_rows(frame, options, where)
    flat = flat.assign(row=np.arange(1, len(flat) + 1))
    moved = [0]
    flat = flat.assign(answers=[checked_answers(row, where, moved) for row in flat.itertuples()])
    if moved[0]:
        logger.warning("%s: %d answers' starts do not point at their text; the occurrence of the text nearest to "
                       "each was used", where, moved[0])
    return flat.reset_index(drop=True)


def flat_rows(frame: pd.DataFrame, options: dict, where: str) -> pd.DataFrame:
    """Context / question / answers columns (answers as the hub holds them, or an answer text and start)."""
    from tunelab.data import select_columns

    context, question = CONTEXT_COLUMN.value(options), QUESTION_COLUMN.value(options)
    answers, answer = ANSWERS_COLUMN.value(options), ANSWER_COLUMN.value(options)
    if answers in frame.columns:
        wanted = [("--context-column", context, "context"), ("--question-column", question, "question"),
                  ("--answers-column", answers, "answers")]
        out = select_columns(frame, wanted, where)
        out["answers"] = [answer_list(v) for v in out["answers"]]
    else:
        start = ANSWER_START_COLUMN.value(options)
        wanted = [("--context-column", context, "context"), ("--question-column", question, "question"),
                  ("--answer-column", answer, "answer")]
        out = select_columns(frame, wanted, where)
        starts = frame[start].tolist() if start in frame.columns else [None] * len(frame)
        out["answers"] = [[] if blank(text) else [{"text": str(text), "answer_start": s}]
                          for text, s in zip(out.pop("answer"), starts)]
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [None] * len(frame)
    return out.assign(id=ids, title="")


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def answer_list(value) -> list[dict]:
    """Answers as a list of {text, answer_start}, from the hub's {"text": [...], "answer_start": [...]}, a
    list of such dicts, or JSON text of either."""
    import json

    if isinstance(value, str) and value.strip()[:1] in "[{":
        value = json.loads(value)
    if isinstance(value, dict):
        texts = list_cell(value.get("text")) or []
        starts = list_cell(value.get("answer_start")) or [None] * len(texts)
        return [{"text": str(t), "answer_start": s} for t, s in zip(texts, starts)]
    found = list_cell(value)
    if found is None:
        return [] if blank(value) else [{"text": str(value), "answer_start": None}]
    return [a if isinstance(a, dict) else {"text": str(a), "answer_start": None} for a in found]


def checked_answers(row, where: str, moved: list[int]) -> list[dict]:
    """A row's answers with a start each that points at the text in the context; a bad row is refused."""
    at = f"{where}, row {row.row}" + (f" (id {row.id})" if row.id not in (None, "", "None") else "")
    if blank(row.context):
        raise TunelabError(f"{at}: the context is empty or missing; give every question its context")
    if blank(row.question):
        raise TunelabError(f"{at}: the question is empty; write the question or drop the row")
    out = []
    for answer in row.answers:
        text, start = str(answer.get("text", "")), answer.get("answer_start")
        if not text.strip():
            continue
        where_found = find(row.context, text, None if blank(start) else int(start))
        if where_found is None:
            raise TunelabError(f"{at}: the answer {text[:60]!r} is not in its context; fix the answer (or its "
                               "start) or drop the row")
        moved[0] += not blank(start) and where_found != int(start)
        out.append({"text": text, "answer_start": where_found})
    return out


def find(context: str, text: str, start: int | None) -> int | None:
    """Where `text` is in `context`: at `start` when it is there, else its occurrence nearest to `start` (the
    first when no start is given); None when it is not in the context."""
    if start is not None and context[start:start + len(text)] == text:
        return start
    found = [m.start() for m in re.finditer(re.escape(text), context)]
    if not found:
        return None
    return found[0] if start is None else min(found, key=lambda at: abs(at - start))


def split_by_context(frame: pd.DataFrame, spec: "DataSpec") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A validation share split off by article (or context): no context is in both."""
    from tunelab.data import split_by_group

    return split_by_group(frame, [t or c for t, c in zip(frame["title"], frame["context"])], spec, "context")


def question_items(questions, contexts) -> list[dict]:
    """Questions and contexts as {"question", "context"} items (one context serves every question)."""
    if isinstance(questions, (str, dict)):
        questions = [questions]
    questions = list(questions)
    if questions and isinstance(questions[0], dict):
        items = [dict(q) for q in questions]
    else:
        if isinstance(contexts, str) or contexts is None:
            contexts = [contexts] * len(questions)
        if len(contexts) != len(questions):
            raise TunelabError(f"{len(questions)} questions but {len(contexts)} contexts; give one context, or one "
                               "per question")
        items = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
    for number, item in enumerate(items, 1):
        for key in ("question", "context"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise TunelabError(f"input {number}: the {key} is empty; give non-empty questions and contexts")
    return items


# ---------------------------------------------------------------- windows


def encode_windows(tokenizer, items: list[dict], max_length: int, stride: int, rows=None) -> "Encoded":
    """Question and context as pairs of pieces, the context in overlapping windows sharing `stride` pieces;
    each window keeps its example and its pieces' character offsets in the context."""
    from tunelab.collate import MODEL_INPUTS, Encoded

    question_first = tokenizer.padding_side == "right"  # run_qa.py's rule: the context is what gets cut
    questions = [item["question"].lstrip() for item in items]  # leading spaces waste a window's room
    contexts = [item["context"] for item in items]
    check_questions(tokenizer, questions, max_length, stride, rows)
    pairs = (questions, contexts) if question_first else (contexts, questions)
    features: dict[str, list] = {name: [] for name in MODEL_INPUTS}
    meta: list[Window] = []
    for start in range(0, len(items), 1000):
        out = tokenizer(pairs[0][start:start + 1000], pairs[1][start:start + 1000],
                        truncation="only_second" if question_first else "only_first", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
        for i, example in enumerate(out["overflow_to_sample_mapping"]):
            context_part = 1 if question_first else 0
            offsets = [tuple(o) if part == context_part else None
                       for o, part in zip(out["offset_mapping"][i], out.sequence_ids(i))]
            ids = out["input_ids"][i]
            cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            meta.append(Window(start + example, offsets, cls))
            for name in MODEL_INPUTS:
                if name in out:
                    features[name].append(out[name][i])
    features = {name: values for name, values in features.items() if values or name == "input_ids"}
    return Encoded(features, None, meta=meta, documents=[w.example for w in meta])


def check_questions(tokenizer, questions: list[str], max_length: int, stride: int, rows=None) -> None:
    """Refuse a question that leaves a window too little room for its context: more than half the window,
    or so long that the context's part is not larger than the pieces windows share (--stride)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    allowed = min(max_length // 2, max_length - specials - stride - 1)
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]] if questions else []
    long = [i for i, n in enumerate(lengths) if n > allowed]
    if long:
        first = long[0]
        number = int(rows.iloc[first]) if rows is not None else first + 1
        more = f" (and {len(long) - 1} more questions)" if len(long) > 1 else ""
        raise TunelabError(f"row {number}: the question is {lengths[first]} pieces{more}, more than the {allowed} a "
                           f"window of --max-length {max_length} leaves a question (half the window, and more room "
                           f"for the context than the --stride {stride} pieces windows share); shorten the question "
                           "or raise --max-length")


def answer_positions(window: Window, answer: dict | None) -> tuple[int, int]:
    """The first and last piece of the answer in the window, or the first token twice where the window does
    not hold the whole answer (or there is none)."""
    if answer is None:
        return window.cls, window.cls
    start_char = answer["answer_start"]
    end_char = start_char + len(answer["text"])
    inside = [i for i, o in enumerate(window.offsets) if o is not None]
    if not inside or window.offsets[inside[0]][0] > start_char or window.offsets[inside[-1]][1] < end_char:
        return window.cls, window.cls
    start = next(i for i in inside if window.offsets[i][1] > start_char)
    end = next(i for i in reversed(inside) if window.offsets[i][0] < end_char)
    return start, end


def report_windows(encoded: "Encoded", what: str) -> None:
    """How many contexts were read in more than one window (never cut)."""
    counts = collections.Counter(encoded.documents)
    long = sum(n > 1 for n in counts.values())
    if long:
        logger.info("%s: %d of %d contexts are longer than a window; read whole in %d windows in all", what, long,
                    len(counts), len(encoded.documents))


# ---------------------------------------------------------------- spans


@dataclass
class Span:
    """A question's best span over all its windows, and its no-answer score."""

    text: str
    start: int | None
    end: int | None
    score: float  # the span's start logit plus end logit
    null: float  # the lowest no-answer score (first token's start plus end logit) of its windows
    probability: float  # the span's probability among the best candidates and no answer

    def answer(self, threshold: float | None) -> Answer:
        if abstains(self, threshold):
            return Answer("", None, None, round(1.0 - self.probability, 6))
        return Answer(self.text, self.start, self.end, round(self.probability, 6))


def abstains(span: Span, threshold: float | None) -> bool:
    """Whether a question gets no answer: no span at all, or a no-answer score higher than the best span's
    by more than the threshold (None: always answer when there is a span)."""
    return span.start is None or (threshold is not None and span.null - span.score > threshold)


def best_spans(rows: list[tuple], windows: list[Window], contexts: list[str], longest: int) -> list[Span]:
    """Each example's best span across its windows: every start and end inside the context, at most
    `longest` pieces apart, scored by start plus end logit."""
    candidates: dict[int, list] = collections.defaultdict(list)
    nulls: dict[int, float] = {}
    for (start_logits, end_logits), window in zip(rows, windows):
        null = float(start_logits[window.cls] + end_logits[window.cls])
        nulls[window.example] = min(null, nulls.get(window.example, null))
        candidates[window.example] += window_spans(np.asarray(start_logits), np.asarray(end_logits), window,
                                                   longest)
    out = []
    for example, context in enumerate(contexts):
        found = sorted(candidates.get(example, []), key=lambda c: -c[0])[:20]
        null = nulls.get(example, 0.0)
        if not found:
            out.append(Span("", None, None, float("-inf"), null, 0.0))
            continue
        scores = np.array([c[0] for c in found] + [null])
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        score, start, end = found[0]
        out.append(Span(context[start:end], start, end, score, null, float(probabilities[0])))
    return out


def window_spans(start_logits: np.ndarray, end_logits: np.ndarray, window: Window, longest: int,
                 keep: int = 20) -> list[tuple[float, int, int]]:
    """A window's `keep` best (score, start character, end character) spans: every start and end piece of
    the context with the end at most `longest` - 1 pieces after the start."""
    inside = np.array([o is not None for o in window.offsets[:len(start_logits)]], dtype=bool)
    width = len(inside)
    if not inside.any():
        return []
    starts = np.where(inside, start_logits[:width], -np.inf)
    ends = np.where(inside, end_logits[:width], -np.inf)
    scores = np.full((width, longest), -np.inf)
    for k in range(min(longest, width)):  # span length k + 1
        scores[:width - k, k] = starts[:width - k] + ends[k:]
    flat = np.argsort(scores, axis=None)[::-1][:keep]
    out = []
    for index in flat:
        s, k = divmod(int(index), longest)
        if not np.isfinite(scores[s, k]):
            break
        out.append((float(scores[s, k]), window.offsets[s][0], window.offsets[s + k][1]))
    return out


def tune_null_threshold(spans: list[Span], references: list[list[str]]) -> float:
    """The no-answer threshold that gives the best F1 on these questions (SQuAD v2.0's best-threshold
    search), halfway between two questions' score differences so that it holds under float noise. Questions
    with no span at all get no answer whatever the threshold."""
    diffs = np.array([s.null - s.score for s in spans if s.start is not None])
    if not len(diffs):
        return 0.0
    answered = np.array([f1_score(s.text, r) for s, r in zip(spans, references) if s.start is not None])
    empty = np.array([float(not any(r)) for s, r in zip(spans, references) if s.start is not None])
    order = np.argsort(-diffs)  # abstaining on the highest differences first
    ranked = diffs[order]
    gains = np.r_[0.0, np.cumsum(empty[order] - answered[order])]
    k = int(np.argmax(gains))  # abstain on the first k
    if k == 0:
        return float(ranked[0] + 1.0)
    if k == len(ranked):
        return float(ranked[-1] - 1.0)
    return float((ranked[k - 1] + ranked[k]) / 2)


# ---------------------------------------------------------------- SQuAD's metrics


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_score(prediction: str, references: list[str]) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(r)) for r in references)


def f1_score(prediction: str, references: list[str]) -> float:
    """The best token F1 over the references (an empty answer matches only an empty reference)."""
    def one(reference: str) -> float:
        got, want = normalize_answer(prediction).split(), normalize_answer(reference).split()
        if not got or not want:
            return float(got == want)
        common = sum((collections.Counter(got) & collections.Counter(want)).values())
        if not common:
            return 0.0
        precision, recall = common / len(got), common / len(want)
        return 2 * precision * recall / (precision + recall)

    return max(one(r) for r in references)


def squad_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 over every question; with unanswerable ones (reference ""), also over the
    answerable ones and the share of unanswerable ones answered with nothing."""
    exact = np.array([exact_score(p, r) for p, r in zip(predictions, references)])
    f1 = np.array([f1_score(p, r) for p, r in zip(predictions, references)])
    metrics = {"exact_match": float(exact.mean()) if len(exact) else 0.0, "f1": float(f1.mean()) if len(f1) else 0.0}
    empty = np.array([not any(r) for r in references])
    if empty.any():
        answerable = ~empty
        metrics.update(has_answer_exact_match=float(exact[answerable].mean()) if answerable.any() else 0.0,
                       has_answer_f1=float(f1[answerable].mean()) if answerable.any() else 0.0,
                       no_answer_accuracy=float(exact[empty].mean()))
    return metrics


# ---------------------------------------------------------------- the model card


def card_snippet(example: dict) -> list[str]:
    """Python that answers with the checkpoint and transformers alone, as tunelab does (transformers 5 has no
    question-answering pipeline): windows of the checkpoint's length, the best span inside the context."""
    return [
        "import json, torch",
        "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
        "",
        'path = "PATH_OR_HUB_ID"',
        "tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForQuestionAnswering.from_pretrained(path)",
        'settings = json.load(open(f"{path}/tunelab.json"))["settings"]  # the window tunelab trained with',
        'longest = settings["info"].get("max_answer_length", 30)',
        f'question, context = {example["question"]!r}, {example["context"]!r}',
        "enc = tokenizer(question, context, truncation=\"only_second\", max_length=settings[\"max_length\"],",
        "                stride=settings[\"stride\"], return_overflowing_tokens=True, return_offsets_mapping=True,",
        "                padding=True, return_tensors=\"pt\")",
        "with torch.no_grad():",
        "    out = model(**{k: enc[k] for k in (\"input_ids\", \"attention_mask\", \"token_type_ids\") if k in enc})",
        "best = (float(\"-inf\"), 0, 0)",
        "for w in range(len(enc[\"input_ids\"])):",
        "    inside = [i for i, s in enumerate(enc.sequence_ids(w)) if s == 1]",
        "    for s in inside:",
        "        for e in inside:",
        "            if s <= e < s + longest:",
        "                score = float(out.start_logits[w, s] + out.end_logits[w, e])",
        "                offsets = enc[\"offset_mapping\"][w]",
        "                best = max(best, (score, int(offsets[s][0]), int(offsets[e][1])))",
        "null = min(float(out.start_logits[w, 0] + out.end_logits[w, 0]) for w in range(len(enc[\"input_ids\"])))",
        "threshold = getattr(model.config, \"qa_null_threshold\", None)  # tuned when the data had unanswerable ones",
        "answer = \"\" if threshold is not None and null - best[0] > threshold else context[best[1]:best[2]]",
        "print(answer, best[1], best[2])",
    ]
