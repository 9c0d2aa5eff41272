"""Stopping a run on Ctrl-C or SIGTERM without losing its work: the first signal asks the loop to stop after
the optimizer step under way (every process agreeing on the step), a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """While in its `with` block, the first SIGINT or SIGTERM is recorded instead of stopping the process."""

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for number in SIGNALS:
                self.previous[number] = signal.signal(number, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def handle(self, number: int, frame) -> None:
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: at once
        self.signal = self.signal or number

    def requested(self, accelerator) -> int | None:
        """The signal that asked to stop, as every process agrees (the highest of theirs), or None."""
        found = self.signal or 0
        if accelerator.num_processes > 1:
            import torch

            found = int(accelerator.reduce(torch.tensor([found], device=accelerator.device), reduction="max")[0])
        return found or None


def exit_code(number: int) -> int:
    """What a shell expects of a process a signal stopped: 128 + the signal's number (130, 143)."""
    return 128 + int(number)
