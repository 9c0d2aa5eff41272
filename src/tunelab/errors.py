"""The one exception type that carries a message meant for the user."""

from __future__ import annotations


class TunelabError(Exception):
    """Bad input or a state the user can fix.

    The message is one line that says what was found and what to do; the CLI
    prints it without a traceback and exits non-zero.
    """


def collect(problems: list[str]) -> None:
    """Raise one TunelabError that lists every problem found, if any."""
    if problems:
        raise TunelabError("; ".join(problems))
