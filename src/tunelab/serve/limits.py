"""What a request may hold: how many inputs, how many characters each text; and the answer for one that
holds more, or holds something else than the task reads."""

from __future__ import annotations

from dataclasses import dataclass


class RequestError(Exception):
    """A request the server refuses: its HTTP status and the one-line message it answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def strings(body: dict, key: str, single: bool = False):
    """`body[key]` as a string (`single`) or a list of strings; a RequestError naming the field otherwise."""
    value = body.get(key)
    if single:
        if not isinstance(value, str):
            raise RequestError(422, f"{key}: must be a string")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(422, f"{key}: must be a list of strings")
    return value


@dataclass
class Limits:
    """The bounds a request's inputs are held to (the texts of an input: `Task.item_texts`)."""

    max_items: int
    max_chars: int
    max_long_chars: int  # for a task's long text (a question-answering context)

    def check(self, task, items: list) -> None:
        if len(items) > self.max_items:
            raise RequestError(413, f"too many {task.item_noun}: {len(items)} in one request, the limit is "
                                    f"{self.max_items}; split the request")
        for number, item in enumerate(items, 1):
            for kind, text, long in task.item_texts(item):
                limit = self.max_long_chars if long else self.max_chars
                if len(text) > limit:
                    raise RequestError(422, f"{kind} {number} has {len(text)} characters, the limit is {limit}; "
                                            "shorten it")
                if not text.strip():
                    raise RequestError(422, f"{kind} {number} is empty; give non-empty {kind}s")
