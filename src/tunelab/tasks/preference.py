"""Preference tuning of a causal language model: DPO (sigmoid loss) by default, SimPO and ORPO (reference-free)
behind --preference-loss.

Rows hold a prompt and two answers, the one preferred (`chosen`) and the one not (`rejected`): strings in
`prompt` / `chosen` / `rejected` columns, or TRL's conversational form (chosen and rejected conversations
that share every turn but the last assistant answer, or a `prompt` conversation and one-turn answers). Both
conversations are written with the chat template, and only the answers (with their end-of-turn tokens) are
scored, as in SFT. Each row is a pair of sequences: a batch is `batch x 2 x length`, run as one forward pass.

DPO compares the policy's log-probability of each answer with the reference model's: under --lora the
reference is the base model with the adapters switched off (no second copy), with full weights it is the
model before the first step. Either way it never changes, so its log-probabilities are computed once per row
before training and kept with the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError
from tunelab.options import Option
from tunelab.tasks.base import Scores, Settings, TaskData, list_cell, stacked
from tunelab.tasks.causal_lm import EVAL_GENERATE, PROMPT_COLUMN, ChatWriter, CausalLMTask, answer, check_messages
from tunelab.tasks.language import split_off_validation

if TYPE_CHECKING:
    import torch

    from tunelab.collate import Encoded
    from tunelab.data import DataSpec, Splits

logger = logging.getLogger(__name__)

LOSSES = ("dpo", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")
CHOSEN_COLUMN = Option("chosen_column", str, "chosen", "Preference: the column of preferred answers (text, or a "
                       "conversation ending with the answer).")
REJECTED_COLUMN = Option("rejected_column", str, "rejected", "Preference: the column of answers not preferred.")
PREFERENCE_LOSS = Option("preference_loss", str, "dpo", "Preference: dpo (against the reference model, the "
                         "default), simpo (length-normalized, reference-free) or orpo (SFT loss plus an odds "
                         "ratio, reference-free).", stored="info", choices=LOSSES, sweep="preference-losses")
BETA = Option("beta", float, None, "Preference: the loss's scale, how far from the reference the policy may move "
              "(default 0.1: DPO's beta, ORPO's lambda; 2 for SimPO, as its paper).", stored="info", sweep="betas")
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0, "orpo": 0.1}
SIMPO_GAMMA = Option("simpo_gamma", float, 0.5, "Preference, --preference-loss simpo: the reward margin the "
                     "chosen answer must win by, as a ratio of --beta.", stored="info")
METRICS = ("reward_accuracy", "reward_margin", "chosen_logp", "rejected_logp")


class PreferenceTask(CausalLMTask):
    name = "preference"
    summary = "preference tuning (DPO, SimPO, ORPO) on prompt / chosen / rejected rows"
    options = (PROMPT_COLUMN, CHOSEN_COLUMN, REJECTED_COLUMN, PREFERENCE_LOSS, BETA, SIMPO_GAMMA, EVAL_GENERATE)
    reads_plain_text = False
    packs = False  # each row is a pair run side by side
    batch_size = 8
    metrics = METRICS + ("exact_match", "token_f1")
    extra_keys = ("reference", "objective")
    learning_rate = 5e-6  # full weights: DPO moves a tuned model a little (TRL's default is 1e-6)
    # Adapters start at zero and need more. Measured on the DPO benchmark's validation pairs (320 training pairs of
    # the rotten-tomatoes questions, SmolLM2, one epoch): reward accuracy 0.52 at 5e-5, 0.58 at 2e-4, 0.86 at
    # 5e-4, 0.85 at 1e-3 (whose chosen answers already lose log-probability: the start of over-optimization).
    lora_learning_rate = 5e-4

    # ------------------------------------------------------------ data
    def claims(self, spec: "DataSpec", splits: "Splits") -> bool:
        columns = set(splits.train.columns)
        return {CHOSEN_COLUMN.value(spec.options), REJECTED_COLUMN.value(spec.options)} <= columns

    def option_problems(self, values: dict) -> list[str]:
        problems = super().option_problems(values)
        if BETA.value(values) is not None and BETA.value(values) <= 0:
            problems.append(f"--beta must be positive, got {BETA.value(values)}")
        return problems

    def source_reading(self, spec: "DataSpec") -> tuple[bool, bool]:
        return False, False

    def read(self, spec: "DataSpec", splits: "Splits") -> TaskData:
        normalize = lambda frame, where: pair_frame(frame, spec.options, where)  # noqa: E731
        train, validation = split_off_validation(splits.train, splits, spec, normalize)
        return TaskData(train, validation, self, splits.name, info={"format": "pairs"})

    def reported_metrics(self, data: TaskData) -> tuple[str, ...]:
        return self.metrics if data.info.get("eval_generate") else METRICS

    def default_metric(self, data: TaskData) -> str:
        return "loss"

    def check_options(self, data: TaskData) -> None:
        """Nothing beyond the option values: every row is a chat pair."""

    def sampled(self, model, tokenizer, data: TaskData, settings: Settings) -> tuple[dict, list[dict]]:
        """Greedy answers to the first --eval-generate validation prompts, scored against the chosen answers."""
        count = int(settings.info.get("eval_generate") or 0)
        if not count:
            return {}, []
        writer = ChatWriter(tokenizer)
        samples = [answer(model, tokenizer, writer, [*prompt, {"role": "assistant", "content": chosen}],
                          settings.max_length)
                   for prompt, chosen in zip(data.validation["prompt"].head(count), data.validation["chosen"])]
        return {"exact_match": float(np.mean([s["exact_match"] for s in samples])),
                "token_f1": float(np.mean([s["token_f1"] for s in samples]))}, samples

    # ------------------------------------------------------------ batches
    def encode(self, tokenizer, frame: pd.DataFrame, settings: Settings, training: bool) -> "Encoded":
        writer = ChatWriter(tokenizer)
        if not writer.template:
            logger.warning(writer.fallback_notice())
        pairs = []
        for prompt, chosen, rejected in zip(frame["prompt"], frame["chosen"], frame["rejected"]):
            pairs.append([writer.tokens([*prompt, {"role": "assistant", "content": text}])
                          for text in (chosen, rejected)])
        return cut_pairs(pairs, settings.max_length, "training" if training else "validation")

    def collator(self, tokenizer, settings: Settings):
        return PairCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                            Objective.of(settings.info))

    def describe_reading(self, settings: Settings) -> str:
        objective = Objective.of(settings.info)
        how, beta = objective.loss, objective.beta
        if how == "simpo":
            return f", SimPO (reference-free), beta {beta:g}, gamma {objective.gamma:g} x beta"
        if how == "orpo":
            return f", ORPO (reference-free), lambda {beta:g}"
        return f", DPO, beta {beta:g}"

    def eval_batch_size(self, model_config, max_length: int) -> int:
        return 16  # the vocabulary is projected at the answers' positions alone

    def before_training(self, model, encoded: list["Encoded"], collator, settings: Settings, accelerator) -> None:
        """The reference model's log-probability of every row's two answers, once, kept with the rows."""
        if Objective.of(settings.info).loss in REFERENCE_FREE:
            for rows in encoded:
                rows.features["reference"] = [[0.0, 0.0] for _ in range(len(rows))]
            return
        import time

        import torch

        total, started = sum(len(rows) for rows in encoded), time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), reference_model(model), accelerator.autocast():
                for rows in encoded:
                    # Rows of like length batched together, as training batches them: little padding computed.
                    order, values = sorted(range(len(rows)), key=rows.sizes.__getitem__), [None] * len(rows)
                    for start in range(0, len(rows), 16):
                        chunk = order[start:start + 16]
                        logps, _ = self.answer_logps(model, collator([rows[i] for i in chunk]))
                        for i, pair in zip(chunk, logps.double().cpu().tolist()):
                            values[i] = pair
                    rows.features["reference"] = values
        finally:
            model.train(was_training)
        logger.info("reference log-probabilities of %d pairs computed once (%s) in %.1f s", total,
                    "the base model without the adapters" if has_adapters(model) else "the starting weights",
                    time.perf_counter() - started)

    # ------------------------------------------------------------ loss
    def answer_logps(self, model, batch: dict) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Each row's summed log-probability of its chosen and rejected answers (batch x 2), and their token
        counts; the vocabulary projection runs at the answer positions alone."""
        import torch

        rows, pair, width = batch["input_ids"].shape
        flat = {"input_ids": batch["input_ids"].view(rows * pair, width),
                "attention_mask": batch["attention_mask"].view(rows * pair, width),
                "labels": batch["labels"].view(rows * pair, width)}
        logits, targets, owner = self.labeled_logits(model, flat)
        token_logps = -torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        sums = torch.zeros(rows * pair, dtype=torch.float32, device=token_logps.device).index_add(0, owner, token_logps)
        counts = torch.bincount(owner, minlength=rows * pair)
        return sums.view(rows, pair), counts.view(rows, pair)

    def pair_losses(self, logps, counts, reference, objective: "Objective") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Each row's loss, and its chosen and rejected rewards (batch x 2)."""
        import torch

        how, beta = objective.loss, objective.beta
        F = torch.nn.functional
        if how == "dpo":
            rewards = beta * (logps - reference.to(logps.dtype))
            return -F.logsigmoid(rewards[:, 0] - rewards[:, 1]), rewards.detach()
        mean = logps / counts.clamp(min=1)
        if how == "simpo":
            rewards = beta * mean
            gamma = beta * objective.gamma
            return -F.logsigmoid(rewards[:, 0] - rewards[:, 1] - gamma), rewards.detach()
        # ORPO: the chosen answer's SFT loss, plus beta x the log-odds ratio's logistic loss.
        log_odds = mean - torch.log1p(-torch.exp(mean).clamp(max=1 - 1e-6))
        ratio = F.logsigmoid(log_odds[:, 0] - log_odds[:, 1])
        return -mean[:, 0] - beta * ratio, (beta * mean).detach()

    def loss(self, model, batch: dict, label_smoothing: float = 0.0) -> "torch.Tensor":
        logps, counts = self.answer_logps(model, batch)
        losses, _ = self.pair_losses(logps, counts, batch["reference"], batch["objective"])
        return losses.mean()

    def evaluation_forward(self, model, batch: dict) -> dict:
        logps, counts = self.answer_logps(model, batch)
        losses, rewards = self.pair_losses(logps, counts, batch["reference"], batch["objective"])
        return {"loss": losses.mean(), "losses": losses, "rewards": rewards, "logps": logps, "counts": counts}

    def outputs(self, outputs, batch: dict) -> tuple:
        return outputs["losses"], outputs["rewards"], outputs["logps"], outputs["counts"]

    def score(self, rows: list[tuple], encoded, data: TaskData, decisions: dict | None = None) -> Scores:
        losses, rewards, logps, counts = (stacked(rows, k) for k in range(4))
        margins = rewards[:, 0] - rewards[:, 1]
        return Scores({"loss": float(losses.mean()), "reward_accuracy": float((margins > 0).mean()),
                       "reward_margin": float(margins.mean()), "chosen_logp": float(logps[:, 0].mean()),
                       "rejected_logp": float(logps[:, 1].mean())}, {"pairs": len(losses)})


@dataclass(frozen=True)
class Objective:
    """The run's loss switches, carried by every batch to the loss (the task object is shared by runs)."""

    loss: str
    beta: float
    gamma: float

    @classmethod
    def of(cls, info: dict) -> "Objective":
        """From the run's stored options: --beta as given, else its default for the loss."""
        how, given = info.get("preference_loss") or PREFERENCE_LOSS.default, info.get("beta")
        gamma = info.get("simpo_gamma")
        return cls(how, float(given) if given is not None else DEFAULT_BETA[how],
                   float(gamma) if gamma is not None else SIMPO_GAMMA.default)


# ---------------------------------------------------------------- reading


def pair_frame(frame: pd.DataFrame, options: dict, where: str) -> pd.DataFrame:
    """row, prompt (turns), chosen, rejected (answer texts); a bad row is refused with its number."""
    prompt_column, chosen_column = PROMPT_COLUMN.value(options), CHOSEN_COLUMN.value(options)
    rejected_column = REJECTED_COLUMN.value(options)
    missing = [f"{flag} '{c}'" for flag, c in (("--chosen-column", chosen_column), ("--rejected-column",
                                                                                   rejected_column))
               if c not in frame.columns]
    if missing:
        raise TunelabError(f"{where} has no {' and no '.join(missing)} column (columns found: "
                           f"{', '.join(map(str, frame.columns[:10]))}); name them with --chosen-column and "
                           "--rejected-column")
    prompts = frame[prompt_column].tolist() if prompt_column in frame.columns else [None] * len(frame)
    out, first = [], None
    for number, (prompt, chosen, rejected) in enumerate(zip(prompts, frame[chosen_column], frame[rejected_column]), 1):
        at = f"{where}, row {number}"
        kind = "conversation" if list_cell(chosen) is not None or list_cell(prompt) is not None else "text"
        first = first or (kind, number)
        if kind != first[0]:
            raise TunelabError(f"{at}: the answers are {kind}s but row {first[1]}'s are {first[0]}s; use one "
                               "format in a file (text columns, or TRL's conversations)")
        if kind == "conversation":
            turns, good, bad = conversation_pair(prompt, chosen, rejected, where, number)
        else:
            turns, good, bad = text_pair(prompt, chosen, rejected, at)
        if not good.strip() or not bad.strip():
            raise TunelabError(f"{at}: the {'chosen' if not good.strip() else 'rejected'} answer is empty; give "
                               "both answers, or remove the row")
        if good.strip() == bad.strip():
            raise TunelabError(f"{at}: the chosen and rejected answers are the same text, so there is no "
                               "preference to learn; remove the row or fix one answer")
        out.append({"row": number, "prompt": turns, "chosen": good, "rejected": bad})
    return pd.DataFrame(out, columns=["row", "prompt", "chosen", "rejected"])


def check_turns(prompt, where: str, number: int) -> list[dict]:
    """A conversational prompt's turns (none when the column is absent or empty)."""
    turns = list_cell(prompt)
    if not turns:
        return []
    return check_messages([*turns, {"role": "assistant", "content": ""}], where, number)[:-1]


def text_pair(prompt, chosen, rejected, at: str) -> tuple[list[dict], str, str]:
    if prompt is None or (isinstance(prompt, float) and np.isnan(prompt)) or not str(prompt).strip():
        raise TunelabError(f"{at}: the prompt is empty or missing; give the question the answers reply to "
                           "(--prompt-column)")
    return [{"role": "user", "content": str(prompt)}], text(chosen), text(rejected)


def text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def conversation_pair(prompt, chosen, rejected, where: str, number: int) -> tuple[list[dict], str, str]:
    """TRL's conversational rows: a prompt conversation and one-turn answers, or two whole conversations that
    differ only in their last assistant turn."""
    at = f"{where}, row {number}"
    sides = []
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        turns = list_cell(value)
        if not turns:
            raise TunelabError(f"{at}: the {name} side is empty or not a conversation (a list of {{role, content}} "
                               "turns ending with the assistant's answer)")
        sides.append(check_messages(turns, where, number))
    (good, bad), given = sides, check_turns(prompt, where, number)
    for name, turns in (("chosen", good), ("rejected", bad)):
        if turns[-1].get("role") != "assistant":
            raise TunelabError(f"{at}: the {name} conversation does not end with an assistant answer")
    if good[:-1] != bad[:-1]:
        raise TunelabError(f"{at}: the chosen and rejected conversations differ before their last answer; both "
                           "must share the prompt turns")
    turns = [{"role": t["role"], "content": t["content"]} for t in given] + good[:-1]
    if not turns:
        raise TunelabError(f"{at}: no prompt turn before the answers; give a prompt column or the user turns")
    return turns, good[-1]["content"], bad[-1]["content"]


# ---------------------------------------------------------------- tokens


def cut_pairs(pairs: list[list[tuple[list[int], list[int]]]], max_length: int, where: str) -> "Encoded":
    """Pairs of (ids, labels) cut to `max_length` from the end (the prompt stays, an answer's tail goes:
    counted and said), and pairs whose prompt leaves an answer no token dropped (counted and said)."""
    from tunelab.collate import IGNORE, Encoded

    kept, cut, dropped = [], 0, 0
    for pair in pairs:
        long = any(len(ids) > max_length for ids, _ in pair)
        pair = [(ids[:max_length], labels[:max_length]) for ids, labels in pair]
        if all(any(t != IGNORE for t in labels[1:]) for _, labels in pair):
            kept.append(pair)
            cut += long
        else:
            dropped += 1
    if cut:
        logger.warning("%s: %d of %d pairs have an answer that runs past --max-length %d tokens; its end was cut "
                       "(raise --max-length to keep it)", where, cut, len(pairs), max_length)
    if dropped:
        if not kept:
            raise TunelabError(f"{where}: every pair's prompt leaves no room for an answer within --max-length "
                               f"{max_length}; raise --max-length")
        logger.warning("%s: dropped %d of %d pairs whose prompt leaves no room for an answer within --max-length "
                       "%d tokens; raise --max-length to keep them", where, dropped, len(pairs), max_length)
    return Encoded({"input_ids": [[ids for ids, _ in p] for p in kept],
                    "attention_mask": [[[1] * len(ids) for ids, _ in p] for p in kept]},
                   [[labels for _, labels in p] for p in kept],
                   costs=[2 * max(len(ids) for ids, _ in p) for p in kept])


class PairCollator:
    """Pairs padded into `batch x 2 x length` (labels with -100); their reference log-probabilities stacked;
    the run's loss switches beside them."""

    def __init__(self, pad_token_id: int, objective: Objective):
        self.pad_token_id, self.objective = pad_token_id, objective

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        from tunelab.collate import IGNORE, ROW_INDEX

        width = max(len(ids) for r in rows for ids in r["input_ids"])
        batch = {}
        for name, fill in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("labels", IGNORE)):
            if name not in rows[0]:
                continue
            values = torch.full((len(rows), 2, width), fill, dtype=torch.long)
            for b, row in enumerate(rows):
                for side, ids in enumerate(row[name]):
                    values[b, side, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            batch[name] = values
        if "reference" in rows[0]:
            batch["reference"] = torch.tensor([r["reference"] for r in rows], dtype=torch.float64)
        batch[ROW_INDEX] = torch.tensor([r[ROW_INDEX] for r in rows], dtype=torch.long)
        batch["objective"] = self.objective
        return batch


# ---------------------------------------------------------------- the reference model


def has_adapters(model) -> bool:
    from accelerate.utils import extract_model_from_parallel

    return hasattr(extract_model_from_parallel(model), "disable_adapter")


def reference_model(model):
    """While open, the model computes as the reference: LoRA adapters switched off (peft's own switch), or,
    for full weights, the weights as they are before the first step (nothing to switch)."""
    import contextlib

    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    return inner.disable_adapter() if hasattr(inner, "disable_adapter") else contextlib.nullcontext()
