"""Causal language modeling: chat fine-tuning (SFT) and continued pre-training on plain text.

The data's shape decides what is trained:
- chat: a `messages` column of `{role, content}` turns, or `prompt` / `completion` columns (one user turn
  and its answer). Each conversation is written with the model's chat template and the loss covers only the
  assistant turns (their text and the template's end-of-turn tokens, so the model learns to stop);
  `--train-on-prompt` covers every token. A model without a chat template gets plain `role: content` lines,
  each answer ending with the end-of-text token, and a warning that says so.
- plain text (a `text` column, .txt files or a folder of them): documents joined with the end-of-text token
  between them and cut into blocks of `--block-size` tokens; every token is a target.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Settings, TaskData
from tunelab.tasks.language import LINE_PER_DOCUMENT, LanguageModelTask, block_report, blocks, split_off_validation, \
    text_frame, tokenize_documents
from tunelab.tasks.texts import TEXT_COLUMN

if TYPE_CHECKING:
    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")
GENERATED = ("exact_match", "token_f1")  # what --eval-generate adds to an evaluation

MESSAGES_COLUMN = Option("messages_column", str, "messages", "Causal LM: the column of chat turns (a list of "
                         "{role, content}).")
PROMPT_COLUMN = Option("prompt_column", str, "prompt", "Causal LM: the prompt column of prompt / completion data.")
COMPLETION_COLUMN = Option("completion_column", str, "completion", "Causal LM: the completion column of prompt / "
                           "completion data.")
TRAIN_ON_PROMPT = Option("train_on_prompt", bool, False, "Causal LM, chat data: compute the loss on every token, "
                         "not only on the assistant's answers.", stored="info")
EVAL_GENERATE = Option("eval_generate", int, 0, "Causal LM, chat data: at each evaluation also answer the first N "
                       "validation prompts greedily: exact match and token F1 against the references (--metric "
                       "exact_match picks best/ by them), samples in samples.jsonl.", stored="info")


class CausalLMTask(LanguageModelTask):
    name = "causal-lm"
    pipeline_tag = "text-generation"
    architecture_suffix = "ForCausalLM"
    endpoint = "/generate"
    action = "Generate"
    example = "Is this review positive or negative? A gripping, beautifully acted film."
    summary = "chat fine-tuning on messages or prompt / completion rows, or plain text"
    options = (TEXT_COLUMN, LINE_PER_DOCUMENT, MESSAGES_COLUMN, PROMPT_COLUMN, COMPLETION_COLUMN, TRAIN_ON_PROMPT,
               EVAL_GENERATE)
    inputs = ()
    default_model = "smollm2"
    use_instead = ("generate with it: tunelab generate CHECKPOINT \"a prompt\", or serve it: tunelab serve "
                   "--generator CHECKPOINT")
    lora_task_type = "CAUSAL_LM"
    packs = True  # conversations have per-token labels: packed end to end, each attending only to itself
    causal = True
    metrics = ("perplexity", "exact_match", "token_f1")

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        columns, options = set(splits.train.columns), spec.options
        return (MESSAGES_COLUMN.value(options) in columns
                or {PROMPT_COLUMN.value(options), COMPLETION_COLUMN.value(options)} <= columns)

    def option_problems(self, values: dict) -> list[str]:
        given = EVAL_GENERATE.value(values)
        return [f"--eval-generate must not be negative, got {given}"] if given < 0 else []

    def data_format(self, spec: "DataSpec", frame: pd.DataFrame, where: str) -> str:
        columns, options = list(frame.columns), spec.options
        messages, prompt = MESSAGES_COLUMN.value(options), PROMPT_COLUMN.value(options)
        completion, text = COMPLETION_COLUMN.value(options), TEXT_COLUMN.value(options)
        if messages in columns:
            return "chat"
        if prompt in columns and completion in columns:
            return "completion"
        if text in columns:
            return "text"
        raise TunelabError(
            f"{where} has no '{messages}' column (chat turns), no '{prompt}' and "
            f"'{completion}' columns, and no '{text}' column (plain text); columns found: "
            f"{', '.join(columns[:10])}; name yours with --messages-column, --prompt-column and --completion-column, "
            "or --text-column")

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        kind = self.data_format(spec, splits.train, splits.train_where)
        normalize = {"chat": lambda f, w: chat_frame(f, spec, w),
                     "completion": lambda f, w: completion_frame(f, spec, w),
                     "text": lambda f, w: text_frame(f, spec, w)}[kind]
        train, validation = split_off_validation(splits.train, splits, spec, normalize)
        return TaskData(train, validation, self, splits.name, info={"format": kind})

    def reported_metrics(self, data: TaskData) -> tuple[str, ...]:
        return self.metrics if data.info.get("eval_generate") else ("perplexity",)

    def metric_hint(self, metric: str) -> str:
        return " without --eval-generate N (answers generated for N validation prompts)" if metric in GENERATED else ""

    def check_options(self, data: TaskData) -> None:
        if data.info.get("eval_generate") and data.info.get("format") == "text":
            raise TunelabError("--eval-generate answers chat prompts, but the data is plain text; drop "
                               "--eval-generate (plain text is scored by perplexity)")

    def sampled(self, model, tokenizer, data: TaskData, settings: Settings) -> tuple[dict, list[dict]]:
        """Greedy answers to the first --eval-generate validation prompts, scored against the references."""
        count = int(settings.info.get("eval_generate") or 0)
        if not count:
            return {}, []
        writer = ChatWriter(tokenizer)
        samples = [answer(model, tokenizer, writer, messages, settings.max_length)
                   for messages in conversations(data.validation.head(count), settings.info["format"])]
        return {"exact_match": float(np.mean([s["exact_match"] for s in samples])),
                "token_f1": float(np.mean([s["token_f1"] for s in samples]))}, samples

    # ------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        from tunelab.collate import Encoded

        kind = settings.info["format"]
        where = "training" if training else "validation"
        if kind == "text":
            if tokenizer.eos_token_id is None:
                raise TunelabError("the tokenizer has no end-of-text token to put between documents; use a causal "
                                   "language model's tokenizer")
            ids, _ = tokenize_documents(tokenizer, frame["text"].tolist(), tokenizer.eos_token_id)
            rows = blocks(ids, settings.max_length)
            logger.info(block_report(where, len(ids), sum(map(len, ids)), rows, settings.max_length))
            return Encoded({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]},
                           [list(r) for r in rows])
        rows = conversations(frame, kind)
        train_on_prompt = bool(settings.info.get("train_on_prompt"))
        writer = ChatWriter(tokenizer)
        if not writer.template:
            logger.warning(writer.fallback_notice())
        ids, labels = zip(*(writer.tokens(m, train_on_prompt) for m in rows)) if rows else ((), ())
        return cut_rows(list(ids), list(labels), settings.max_length, where)

    def aligned(self, logits, labels):
        return logits[:, :-1], labels[:, 1:]

    def labeled(self, labels):
        """The positions whose next token has a label (each predicts the next one), and those tokens."""
        import torch

        from tunelab.collate import IGNORE

        following = labels[:, 1:] != IGNORE
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = following
        return keep, labels[:, 1:][following]


# ---------------------------------------------------------------- reading


def conversations(frame: pd.DataFrame, kind: str) -> list[list[dict]]:
    """Chat rows as turns; prompt / completion rows as one user turn and its answer."""
    if kind == "chat":
        return frame["messages"].tolist()
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": c}]
            for p, c in zip(frame["prompt"], frame["completion"])]


def chat_frame(frame: pd.DataFrame, spec: "DataSpec", where: str) -> pd.DataFrame:
    """The messages column as lists of {role, content}; a malformed row is refused with its number."""
    from tunelab.data import drop_blank, select_columns

    frame = select_columns(frame, [("--messages-column", MESSAGES_COLUMN.value(spec.options), "messages")], where)
    frame = drop_blank(frame, where, ["messages"], None)
    frame["messages"] = [check_messages(m, where, i + 1) for i, m in enumerate(frame["messages"])]
    return frame


def check_messages(value, where: str, row: int) -> list[dict]:
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise TunelabError(f"{where}, row {row}: the messages are not a JSON list of {{role, content}} turns") \
                from None
    if isinstance(value, np.ndarray):  # Parquet lists
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise TunelabError(f"{where}, row {row}: messages must be a list of {{role, content}} turns, got "
                           f"{type(value).__name__}")
    turns = []
    for m in value:
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise TunelabError(f"{where}, row {row}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise TunelabError(f"{where}, row {row}: a {role} turn has no text content")
        turns.append({"role": role, "content": content})
    if not any(t["role"] == "assistant" for t in turns):
        raise TunelabError(f"{where}, row {row}: no assistant turn, so nothing to learn from; add the answer as "
                           "{\"role\": \"assistant\", \"content\": ...} or remove the row")
    return turns


def completion_frame(frame: pd.DataFrame, spec: "DataSpec", where: str) -> pd.DataFrame:
    from tunelab.data import drop_blank, select_columns

    frame = select_columns(frame, [("--prompt-column", PROMPT_COLUMN.value(spec.options), "prompt"),
                                   ("--completion-column", COMPLETION_COLUMN.value(spec.options), "completion")], where)
    frame = frame.assign(prompt=frame["prompt"].map(str), completion=frame["completion"].map(str))
    return drop_blank(frame, where, ["prompt"], "completion")


# ---------------------------------------------------------------- tokens and labels


class ChatWriter:
    """A conversation as token ids and labels: -100 (no loss) on everything but the assistant turns."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.template = bool(getattr(tokenizer, "chat_template", None))

    def fallback_notice(self) -> str:
        eos = self.tokenizer.eos_token or "(none)"
        return ("the model has no chat template: each turn is written as a 'role: content' line and each answer "
                f"ends with the end-of-text token {eos}; give a model with a chat template to train in its format")

    def spans(self, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
        """The conversation's text and the character spans of its assistant turns (each with the template's
        end-of-turn marks, found as the difference between the text up to the turn and the text before it)."""
        render = self.tokenizer.apply_chat_template
        if not self.template:
            text, spans = "", []
            for m in messages:
                if m["role"] == "assistant":
                    text += "assistant: "
                    spans.append((len(text), len(text) + len(m["content"]) + len(self.tokenizer.eos_token or "")))
                    text += m["content"] + (self.tokenizer.eos_token or "") + "\n"
                else:
                    text += f"{m['role']}: {m['content']}\n"
            return text, spans
        text = render(messages, tokenize=False)
        spans = []
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = render(messages[:k], tokenize=False, add_generation_prompt=True) if k else ""
            upto = render(messages[:k + 1], tokenize=False)
            if upto.startswith(before) and text.startswith(upto):
                spans.append((len(before), len(upto)))
            else:  # a template that rewrites earlier turns: the answer's own text, found in order
                start = text.find(m["content"], spans[-1][1] if spans else 0)
                spans.append((start, start + len(m["content"])))
        return text, spans

    def prompt(self, messages: list[dict]) -> list[int]:
        """The token ids that ask for the next assistant turn after `messages`."""
        if self.template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        return list(self.tokenizer(text)["input_ids"])

    def tokens(self, messages: list[dict], train_on_prompt: bool = False) -> tuple[list[int], list[int]]:
        from tunelab.collate import IGNORE

        text, spans = self.spans(messages)
        encoded = self.tokenizer(text, add_special_tokens=not self.template, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        if train_on_prompt:
            return ids, list(ids)
        labels = [t if any(a <= start < b for a, b in spans) else IGNORE
                  for t, (start, _) in zip(ids, encoded["offset_mapping"])]
        return ids, labels


def answer(model, tokenizer, writer: ChatWriter, messages: list[dict], max_length: int) -> dict:
    """The model's greedy answer to a conversation's last prompt, with its reference and scores."""
    import torch

    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    reference = messages[last]["content"]
    prompt = writer.prompt(messages[:last])
    room = len(tokenizer(reference, add_special_tokens=False)["input_ids"]) + 16
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        ids = torch.tensor([prompt[-max_length:]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=room,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    model.train(was_training)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    return {"prompt": messages[last - 1]["content"] if last else "", "reference": reference, "answer": text,
            "exact_match": exact_match(text, reference), "token_f1": token_f1(text, reference)}


def exact_match(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def normalize(text: str) -> str:
    """Lowercase, punctuation off, spaces collapsed (SQuAD's answer normalization, without dropping articles)."""
    import re

    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def token_f1(answer: str, reference: str) -> float:
    """F1 of the words the answer shares with the reference (as counted multisets)."""
    from collections import Counter

    got, want = normalize(answer).split(), normalize(reference).split()
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want:
        return float(got == want)
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def cut_rows(ids: list[list[int]], labels: list[list[int]], max_length: int, where: str) -> "Encoded":
    """Rows cut to `max_length` tokens (counted and said), and rows left with no target token dropped (said)."""
    from tunelab.collate import IGNORE, Encoded

    long = [len(r) for r in ids if len(r) > max_length]
    if long:
        logger.warning("%s: %d of %d conversations are longer than --max-length %d tokens and were cut to it "
                       "(the longest has %d); raise --max-length to keep them whole", where, len(long), len(ids),
                       max_length, max(long))
    ids = [r[:max_length] for r in ids]
    labels = [r[:max_length] for r in labels]
    keep = [i for i, row in enumerate(labels) if any(t != IGNORE for t in row[1:])]
    if len(keep) < len(ids):
        if not keep:
            raise TunelabError(f"{where}: no conversation has an answer token within --max-length {max_length}; "
                               "raise --max-length")
        logger.warning("%s: dropped %d of %d conversations whose answer starts after --max-length %d tokens; raise "
                       "--max-length to keep them", where, len(ids) - len(keep), len(ids), max_length)
    ids, labels = [ids[i] for i in keep], [labels[i] for i in keep]
    return Encoded({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}, labels)
