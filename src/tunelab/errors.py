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


class Stopped(Exception):
    """A command stopped by a signal (Ctrl-C, SIGTERM) after putting its work in order: the message says what
    was kept and how to go on; the CLI prints it and exits with `exit_code` (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
